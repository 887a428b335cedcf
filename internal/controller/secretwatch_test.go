package controller_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// A password Secret deleted and created again under the same name (a new UID) is applied: while
// the manager runs (the watch sees the deletion, then the new Secret), and while it is down (the
// binding row's version no longer matches).
func TestSecretRecreatedUnderTheSameNameIsApplied(t *testing.T) {
	e := newEnv(t)
	u, id := e.readyUserWithPassword("jane", "jane@example.com", testPassword)
	for i, down := range []bool{false, true} {
		cleartext := fmt.Sprintf("recreated-Amber-fox-%d", i)
		if down {
			e.shutdown()
		}
		old := e.recreateSecret("jane-password", cleartext, func() {
			if !down {
				e.waitUser(u, v1.ReasonSecretNotFound)
			}
		})
		if down {
			e.start()
		}
		e.eventually(20*time.Second, func() string {
			if !password.Verify(e.passwordColumn(id), cleartext) {
				return fmt.Sprintf("the password of the recreated Secret is not in the panel (manager down: %v)", down)
			}
			return ""
		})
		now := &corev1.Secret{}
		if err := k8s.Get(e.ctx(), client.ObjectKey{Namespace: e.ns, Name: "jane-password"}, now); err != nil {
			t.Fatal(err)
		}
		if now.UID == old.UID {
			t.Fatal("the recreated Secret kept its UID: the test proves nothing")
		}
		// The panel row is written before the status patch, and while the manager was down the
		// status still says Reconciled with the old Secret: wait for the version, not the reason.
		e.eventually(20*time.Second, func() string {
			got := e.waitUser(u, v1.ReasonReconciled)
			if got.Status.PasswordSecretVersion != controller.SecretVersion(now) {
				return fmt.Sprintf("status.passwordSecretVersion = %q, want the recreated Secret's %q (manager down: %v)",
					got.Status.PasswordSecretVersion, controller.SecretVersion(now), down)
			}
			return ""
		})
	}
}

// recreateSecret deletes a password Secret, runs between, and creates it again with a new password.
// It returns the deleted Secret.
func (e *env) recreateSecret(name, cleartext string, between func()) *corev1.Secret {
	e.t.Helper()
	old := &corev1.Secret{}
	if err := k8s.Get(e.ctx(), client.ObjectKey{Namespace: e.ns, Name: name}, old); err != nil {
		e.t.Fatal(err)
	}
	if err := k8s.Delete(e.ctx(), old); err != nil {
		e.t.Fatal(err)
	}
	between()
	e.secret(name, map[string]string{"password": cleartext})
	return old
}

// The Secret watch keeps the version of the Secrets Users use and of nothing else, and forgets a
// used Secret once it is deleted, queueing its User.
func TestSecretWatchRemembersOnlyUsedSecretsAndForgetsDeletedOnes(t *testing.T) {
	ns := newNamespace(t, k8s)
	users := newUserCache(t, restConfig, ns)
	watchedUser(t, k8s, users, ns, "jane")
	for i := range 30 {
		createIn(t, k8s, plainSecret(ns, fmt.Sprintf("unrelated-%02d", i)))
	}
	janeSecret := plainSecret(ns, "jane-password")
	createIn(t, k8s, janeSecret)
	mc, err := metadata.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	w, q, _ := startSecretWatch(t, mc, users, ns)
	waitFor(t, "the watch remembers jane's Secret", func() bool {
		return w.Version(controller.Key(ns, "jane-password")) == controller.SecretVersion(janeSecret) && q.count("jane") == 1
	})
	if n := w.Remembered(); n != 1 {
		t.Errorf("after the first list the watch remembers %d Secrets, want 1 (jane's)", n)
	}

	// Unrelated Secrets created while it watches are not kept either: bob's, created after them,
	// is seen after them.
	for i := range 20 {
		createIn(t, k8s, plainSecret(ns, fmt.Sprintf("later-%02d", i)))
	}
	watchedUser(t, k8s, users, ns, "bob")
	bobSecret := plainSecret(ns, "bob-password")
	createIn(t, k8s, bobSecret)
	waitFor(t, "the watch remembers bob's Secret", func() bool {
		return w.Version(controller.Key(ns, "bob-password")) == controller.SecretVersion(bobSecret)
	})
	if n := w.Remembered(); n != 2 {
		t.Errorf("the watch remembers %d Secrets, want 2 (jane's and bob's)", n)
	}

	if err := k8s.Delete(context.Background(), janeSecret); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watch forgets jane's deleted Secret and queues jane", func() bool {
		return w.Version(controller.Key(ns, "jane-password")) == "" && q.count("jane") == 2
	})
	if n := w.Remembered(); n != 1 {
		t.Errorf("after jane's Secret was deleted the watch remembers %d Secrets, want 1 (bob's)", n)
	}
}

// The watch reads Secrets a page at a time, on its first list and on a relist alike, and what a
// page hands on to the reflector is only the Secrets Users use: the unrelated Secrets are never
// all held at once, not even while a list is gathered.
func TestSecretWatchListsAPageAtATimeAndHandsOnOnlyUsedSecrets(t *testing.T) {
	ns := newNamespace(t, k8s)
	users := newUserCache(t, restConfig, ns)
	watchedUser(t, k8s, users, ns, "jane")
	janeSecret := plainSecret(ns, "jane-password")
	createIn(t, k8s, janeSecret)
	mc, err := metadata.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	// The first watch lists while the namespace is small, so its list is not paged by the reflector's
	// own choice; the Secrets created after it reach it as watch events.
	f := &failingMetadata{Interface: mc}
	early := &cuttableMetadata{Interface: f}
	w, _, _ := startSecretWatch(t, early, users, ns)
	waitFor(t, "the first watch remembers jane's Secret", func() bool {
		return w.Version(controller.Key(ns, "jane-password")) == controller.SecretVersion(janeSecret)
	})
	createSecrets(t, ns, "unrelated", controller.SecretListPage+1)

	late := &cuttableMetadata{Interface: mc}
	w2, _, _ := startSecretWatch(t, late, users, ns)
	waitFor(t, "the second watch remembers jane's Secret", func() bool {
		return w2.Version(controller.Key(ns, "jane-password")) == controller.SecretVersion(janeSecret)
	})
	if n := late.largestList(); n > controller.SecretListPage {
		t.Errorf("the first list of a namespace of %d Secrets got %d in one response, want at most a page of %d",
			controller.SecretListPage+2, n, controller.SecretListPage)
	}

	lists := early.lists.Load()
	f.failWith(watchGone) // the first watch's next watch is refused: it lists again
	waitFor(t, "the first watch lists again", func() bool { return early.lists.Load() > lists })
	f.failWith(passThrough)
	if n := early.largestList(); n > controller.SecretListPage {
		t.Errorf("a relist of a namespace of %d Secrets got %d in one response, want at most a page of %d",
			controller.SecretListPage+2, n, controller.SecretListPage)
	}

	page, err := w2.ListPage(context.Background(), ns, metav1.ListOptions{Limit: controller.SecretListPage})
	if err != nil {
		t.Fatal(err)
	}
	if page.Continue == "" {
		t.Fatal("the first page is the whole namespace: the test proves nothing")
	}
	var unrelated []string
	for _, s := range page.Items {
		if s.Name != "jane-password" {
			unrelated = append(unrelated, s.Name)
		}
	}
	if len(unrelated) > 0 {
		t.Errorf("a page handed the reflector %d unrelated Secrets (the first: %s), want only jane's", len(unrelated), unrelated[0])
	}
	for _, w := range []*controller.SecretWatch{w, w2} {
		if n := w.Remembered(); n != 1 {
			t.Errorf("a watch remembers %d Secrets, want 1 (jane's)", n)
		}
	}
}

// createSecrets creates n Secrets named prefix-<i> in ns, a few at a time.
func createSecrets(t *testing.T, ns, prefix string, n int) {
	t.Helper()
	var next atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := k8s.Create(context.Background(), plainSecret(ns, fmt.Sprintf("%s-%04d", prefix, i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// The watch is healthy (its versions current) only while a watch is open on a complete list: a
// watch that ends in an error, a refused watch and a refused list each make it unhealthy at
// once, before it waits to reconnect, and the next watch that opens makes it healthy again. The
// reconnects wait on a fake clock, so each state is read while the watch waits, after a counted
// number of calls.
func TestSecretWatchIsUnhealthyFromTheFailedCallUntilAWatchOpens(t *testing.T) {
	ns := newNamespace(t, k8s)
	users := newUserCache(t, restConfig, ns)
	mc, err := metadata.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	f := &failingMetadata{Interface: mc, fail: watchCloses}
	clock := clocktesting.NewFakeClock(time.Now())
	w := controller.NewSecretWatch(f, users, []string{ns})
	w.WaitOn(clock)
	runSecretWatch(t, w)
	delay := controller.FirstBackoff
	for i, step := range []struct {
		fail    failure
		calls   int32 // in the attempt
		healthy bool
		what    string
	}{
		{watchCloses, 2, true, "listed, and a watch opened (it closed without an error)"},
		{watchFails, 2, false, "a watch ended in an error"},
		{watchCloses, 2, true, "a watch opened again"},
		{watchGone, 2, false, "a watch was refused"},
		{watchCloses, 2, true, "a watch opened again"},
		{everythingDown, 1, false, "a list was refused"},
	} {
		calls := f.calls.Load()
		if i > 0 {
			f.failWith(step.fail)
			clock.Step(time.Duration(float64(delay)*(1+controller.SecretWatchJitter)) + time.Millisecond)
			delay = min(time.Duration(float64(delay)*controller.SecretWatchBackoffFactor), controller.SecretWatchBackoffCap)
		}
		waitFor(t, "the watch waits after: "+step.what, func() bool {
			return f.calls.Load()-calls >= step.calls && clock.HasWaiters()
		})
		if w.Healthy(ns) != step.healthy {
			t.Errorf("after %s the watch says healthy=%v, want %v", step.what, w.Healthy(ns), step.healthy)
		}
	}
}

// Through is a resourceVersion the watch has delivered everything up to: at least the version of
// the used Secret it remembers, and it moves on with the events of unrelated Secrets too, though
// it keeps nothing of them; for a watch of one namespace and of all alike. (resourceVersions are
// etcd revisions here: the test compares them as numbers, which clients otherwise must not.)
func TestSecretWatchIsThroughEveryChangeItDelivered(t *testing.T) {
	ns := newNamespace(t, k8s)
	users := newUserCache(t, restConfig, ns)
	watchedUser(t, k8s, users, ns, "jane")
	janeSecret := plainSecret(ns, "jane-password")
	createIn(t, k8s, janeSecret)
	mc, err := metadata.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	w, _, _ := startSecretWatch(t, mc, users, ns)
	all, _, _ := startSecretWatch(t, mc, users, metav1.NamespaceAll) // every namespace, as deployed by default
	if rv := w.Through("not-" + ns); rv != "" {
		t.Errorf("Through of a namespace the watch does not follow = %q, want \"\"", rv)
	}
	unrelated := plainSecret(ns, "unrelated")
	for i, w := range []*controller.SecretWatch{w, all} {
		waitFor(t, "the watch remembers jane's Secret", func() bool {
			return w.Version(controller.Key(ns, "jane-password")) == controller.SecretVersion(janeSecret)
		})
		if rv := w.Through(ns); revision(t, rv) < revision(t, janeSecret.ResourceVersion) {
			t.Errorf("watch %d: Through = %q, before jane's Secret %q, which the watch remembers", i, rv, janeSecret.ResourceVersion)
		}
		if i == 0 {
			createIn(t, k8s, unrelated)
		}
		waitFor(t, "Through reaches the unrelated Secret's creation", func() bool {
			return revision(t, w.Through(ns)) >= revision(t, unrelated.ResourceVersion)
		})
		if !w.Healthy(ns) {
			t.Errorf("watch %d is not healthy in %s, which it follows, with a watch open", i, ns)
		}
		if n := w.Remembered(); n != 1 {
			t.Errorf("watch %d remembers %d Secrets, want 1 (jane's)", i, n)
		}
	}
}

// revision reads a resourceVersion as the etcd revision it is; "" is 0.
func revision(t *testing.T, rv string) int64 {
	t.Helper()
	if rv == "" {
		return 0
	}
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q is not a number: %v", rv, err)
	}
	return n
}

// When the watch's resourceVersion has expired (the API server answers 410 Gone), the watch lists
// again, and the list delivers what changed while no watch was open: a rotated Secret queues its
// User, a deleted one is forgotten.
//
// The API server is a dedicated one without a watch cache and compacting etcd every second, so a
// watch resumed from an old resourceVersion gets a real 410 from etcd's compaction. The test cuts
// the open watch (as a dropped connection or the API server's watch timeout does) and holds the
// reconnect until that resourceVersion is compacted; the 410 and the relist are the API server's
// and the watch's own.
func TestSecretWatchRelistsAfterItsVersionExpiresAndDeliversTheRotation(t *testing.T) {
	cfg := startCompactingControlPlane(t)
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, c)
	users := newUserCache(t, cfg, ns)
	watchedUser(t, c, users, ns, "jane")
	watchedUser(t, c, users, ns, "bob")
	janeSecret, bobSecret := plainSecret(ns, "jane-password"), plainSecret(ns, "bob-password")
	createIn(t, c, janeSecret)
	createIn(t, c, bobSecret)
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cw := &cuttableMetadata{Interface: mc}
	w, q, logs := startSecretWatch(t, cw, users, ns)
	waitFor(t, "the watch remembers both Secrets", func() bool {
		return w.Version(controller.Key(ns, "jane-password")) == controller.SecretVersion(janeSecret) &&
			w.Version(controller.Key(ns, "bob-password")) == controller.SecretVersion(bobSecret) &&
			q.count("jane") == 1 && q.count("bob") == 1
	})

	cw.cut()
	var from string
	waitFor(t, "the watch reconnects", func() bool { from = cw.heldFrom(); return from != "" })
	// Counted from the held reconnect: a cut watch that delivered nothing within a second is listed
	// again before it reconnects (the reflector's very short watch), which is not what this counts.
	lists := cw.lists.Load()
	janeSecret.StringData = map[string]string{"password": "rotated-Birch-lamp-72"}
	if err := c.Update(context.Background(), janeSecret); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(context.Background(), bobSecret); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the API server answers 410 Gone for resourceVersion "+from, func() bool { return expired(t, mc, ns, from) })
	cw.release()

	waitFor(t, "the rotation reaches the watch through a relist", func() bool {
		return w.Version(controller.Key(ns, "jane-password")) == controller.SecretVersion(janeSecret) && q.count("jane") == 2
	})
	waitFor(t, "the deleted Secret is forgotten and its User queued", func() bool {
		return w.Version(controller.Key(ns, "bob-password")) == "" && q.count("bob") == 2
	})
	if n := cw.expired.Load(); n < 1 {
		t.Errorf("the watch never got a 410 from the API server; the test proves nothing")
	}
	// One relist per 410: with etcd compacting every second, a relist whose version is compacted
	// (the reflector relists from its last version first) or whose version is compacted before
	// its watch opens gets a 410 of its own, and rightly lists again.
	if n, gone := cw.lists.Load()-lists, cw.expired.Load(); n < 1 || n > gone {
		t.Errorf("%d lists after %d answers of 410 Gone, want one list per 410", n, gone)
	}
	if w.Remembered() != 1 {
		t.Errorf("the watch remembers %d Secrets, want 1 (jane's)", w.Remembered())
	}
	if strings.Contains(logs.String(), "Watching Secrets failed") {
		t.Errorf("an expired resourceVersion was logged as a failure:\n%s", logs.String())
	}
}

// startCompactingControlPlane starts a kube-apiserver without a watch cache whose etcd is compacted
// every second, so an old resourceVersion expires within seconds.
func startCompactingControlPlane(t *testing.T) *rest.Config {
	t.Helper()
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	env.ControlPlane.GetAPIServer().Configure().Set("watch-cache", "false").Set("etcd-compaction-interval", "1s")
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("cannot start the dedicated kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return cfg
}

// expired reports whether the API server refuses a Secret watch from rv as too old (410).
func expired(t *testing.T, mc metadata.Interface, ns, rv string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wi, err := mc.Resource(secretsResource).Namespace(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		return isExpired(err)
	}
	defer wi.Stop()
	select {
	case ev := <-wi.ResultChan():
		return ev.Type == watch.Error && isExpired(apierrors.FromObject(ev.Object))
	case <-ctx.Done():
		return false
	}
}

func isExpired(err error) bool { return apierrors.IsResourceExpired(err) || apierrors.IsGone(err) }

var secretsResource = corev1.SchemeGroupVersion.WithResource("secrets")

// cuttableMetadata passes the Secret watch's requests to the API server. The test can cut the open
// watch and hold the next one until it releases it; it counts lists and the 410s the API server
// answered to lists and watches, and keeps the size of the largest list response.
type cuttableMetadata struct {
	metadata.Interface
	lists, expired atomic.Int32

	mu      sync.Mutex
	current watch.Interface
	held    chan struct{} // nil when watches pass
	from    string        // the resourceVersion of the watch being held
	largest int           // the most Secrets one list response held
}

func (c *cuttableMetadata) Resource(gvr schema.GroupVersionResource) metadata.Getter {
	return cuttableGetter{Getter: c.Interface.Resource(gvr), c: c}
}

// cut ends the open watch, as the API server ends one (a watch timeout, a restart), and holds
// the next one.
func (c *cuttableMetadata) cut() {
	c.mu.Lock()
	c.held, c.from = make(chan struct{}), ""
	open := c.current
	c.mu.Unlock()
	if open != nil {
		open.Stop()
	}
}

func (c *cuttableMetadata) release() {
	c.mu.Lock()
	close(c.held)
	c.held = nil
	c.mu.Unlock()
}

// largestList is the most Secrets one list response held.
func (c *cuttableMetadata) largestList() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.largest
}

// heldFrom is the resourceVersion the held watch asks to start from; "" while none is held.
func (c *cuttableMetadata) heldFrom() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.from
}

type cuttableGetter struct {
	metadata.Getter
	c *cuttableMetadata
}

func (g cuttableGetter) Namespace(ns string) metadata.ResourceInterface {
	return cuttableResource{ResourceInterface: g.Getter.Namespace(ns), c: g.c}
}

type cuttableResource struct {
	metadata.ResourceInterface
	c *cuttableMetadata
}

func (r cuttableResource) List(ctx context.Context, opts metav1.ListOptions) (*metav1.PartialObjectMetadataList, error) {
	if opts.Continue == "" {
		r.c.lists.Add(1)
	}
	l, err := r.ResourceInterface.List(ctx, opts)
	if l != nil {
		r.c.mu.Lock()
		r.c.largest = max(r.c.largest, len(l.Items))
		r.c.mu.Unlock()
	}
	if isExpired(err) {
		r.c.expired.Add(1) // a relist from the expired version, before the reflector lists the latest
	}
	return l, err
}

func (r cuttableResource) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	r.c.mu.Lock()
	held := r.c.held
	if held != nil {
		r.c.from = opts.ResourceVersion
	}
	r.c.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	wi, err := r.ResourceInterface.Watch(ctx, opts)
	if err != nil {
		if isExpired(err) {
			r.c.expired.Add(1)
		}
		return nil, err
	}
	ended := &endableWatch{in: wi, out: make(chan watch.Event), done: make(chan struct{}), c: r.c}
	go ended.run()
	r.c.mu.Lock()
	r.c.current = ended
	r.c.mu.Unlock()
	return ended, nil
}

// endableWatch passes on a watch's events, counting the 410s, until the stream ends or it is
// stopped; stopped, it closes its channel without an error, as when the API server ends a watch.
type endableWatch struct {
	in   watch.Interface
	out  chan watch.Event
	done chan struct{}
	once sync.Once
	c    *cuttableMetadata
}

func (w *endableWatch) run() {
	defer close(w.out)
	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-w.in.ResultChan():
			if !ok {
				return
			}
			select {
			case <-w.done: // what the stopped stream says after Stop is not the server's
				return
			default:
			}
			if ev.Type == watch.Error && isExpired(apierrors.FromObject(ev.Object)) {
				w.c.expired.Add(1)
			}
			select {
			case w.out <- ev:
			case <-w.done:
				return
			}
		}
	}
}

func (w *endableWatch) Stop() {
	w.once.Do(func() {
		close(w.done)
		w.in.Stop()
	})
}

func (w *endableWatch) ResultChan() <-chan watch.Event { return w.out }

// queued counts, per User name, how often the Secret watch queued the User.
type queued struct {
	mu sync.Mutex
	n  map[string]int
}

func (q *queued) count(name string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n[name]
}

// startSecretWatch runs a Secret watch for one namespace until the test ends, counting what it
// queues and keeping its log.
func startSecretWatch(t *testing.T, mc metadata.Interface, users cache.Cache, ns string) (
	*controller.SecretWatch, *queued, *testenv.Output) {
	t.Helper()
	logs := &testenv.Output{}
	ctx, cancel := context.WithCancel(logf.IntoContext(context.Background(), zap.New(zap.WriteTo(logs), zap.UseDevMode(true))))
	w := controller.NewSecretWatch(mc, users, []string{ns})
	q := &queued{n: map[string]int{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Start(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("the Secret watch stopped: %v", err)
		}
	})
	wg.Go(func() {
		for {
			select {
			case ev := <-w.Queue():
				q.mu.Lock()
				q.n[ev.Object.GetName()]++
				q.mu.Unlock()
			case <-ctx.Done():
				return
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return w, q, logs
}

func newNamespace(t *testing.T, c client.Client) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "watch-"}}
	createIn(t, c, ns)
	return ns.Name
}

func plainSecret(ns, name string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		StringData: map[string]string{"password": "unused-Slate-heron-19"}}
}

// watchedUser creates a User whose password Secret is <name>-password (no manager runs: only the
// watch looks at it) and waits until the cache has it.
func watchedUser(t *testing.T, c client.Client, users cache.Cache, ns, name string) {
	t.Helper()
	u := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.UserSpec{
		Email: name + "@example.com", PasswordSecretRef: v1.SecretKeyReference{Name: name + "-password"},
		FirstName: "Jane", LastName: "Doe"}}
	createIn(t, c, u)
	waitFor(t, "the cache has User "+name, func() bool {
		return users.Get(context.Background(), client.ObjectKeyFromObject(u), &v1.User{}) == nil
	})
}

// waitFor polls cond until it holds, failing the test after 30 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newUserCache is a cache of Users and ClientMemberships in one namespace, with the controllers'
// field indexes, as a Secret watch run by itself needs; it runs until the test ends.
func newUserCache(t *testing.T, cfg *rest.Config, ns string) cache.Cache {
	t.Helper()
	c, err := cache.New(cfg, cache.Options{Scheme: k8s.Scheme(), DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := controller.SetupIndexes(ctx, c); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("the User cache did not sync")
	}
	return c
}

// createIn creates an object with a client, failing the test on error.
func createIn(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}
