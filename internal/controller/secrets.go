package controller

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// secretListPage is how many Secrets one list request returns.
const secretListPage = 500

// secretWatchBackoff spaces the watch's reconnects (lists and watches) after a failure, so a
// failing API server is not hammered: 1 s, doubling up to a minute, with jitter; it starts over
// from 1 s every secretWatchBackoffReset (wait.Backoff.DelayWithReset, as the reflector's own).
var secretWatchBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: time.Minute}

const secretWatchBackoffReset = 2 * time.Minute

var secretsResource = corev1.SchemeGroupVersion.WithResource("secrets")

// secretWatch follows the Secrets that Users use (password Secrets, and the TOTP Secrets Users
// own) and nothing else. An informer would cache the metadata of every Secret in the cluster; this
// runs client-go's Reflector (paging, relist on an expired version, backoff, bookmarks) over a
// metadata ListWatch, per followed namespace, into a store that keeps only the version
// (UID/resourceVersion) of the Secrets some User uses, and queues their Users when it changes.
// Memory is flat in the number of unrelated Secrets: the list drops them page by page, before the
// reflector gathers the pages, and the store drops them from the watch.
type secretWatch struct {
	client     metadata.Interface
	users      client.Reader
	namespaces []string // "" alone means all namespaces
	queue      chan event.GenericEvent

	mu       sync.RWMutex
	versions map[types.NamespacedName]string
	// healthy is, per followed namespace, whether a watch is open on a complete list: only then
	// are the versions current. A failed list or watch, or a watch ending in an error, clears it
	// until a watch opens.
	healthy    map[string]bool
	reflectors map[string]*cache.Reflector

	backoff wait.Backoff
	clock   clock.Clock
}

func newSecretWatch(c metadata.Interface, users client.Reader, namespaces []string) *secretWatch {
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	return &secretWatch{client: c, users: users, namespaces: namespaces, queue: make(chan event.GenericEvent, secretListPage),
		versions: map[types.NamespacedName]string{}, healthy: map[string]bool{}, reflectors: map[string]*cache.Reflector{},
		backoff: secretWatchBackoff, clock: clock.RealClock{}}
}

// Healthy reports whether the watch is following the namespace's Secrets right now (listed, and a
// watch open). While it is not, its versions may be stale and readers must ask the API server.
func (w *secretWatch) Healthy(namespace string) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if ok, known := w.healthy[namespace]; known {
		return ok
	}
	return w.healthy[metav1.NamespaceAll]
}

func (w *secretWatch) setHealthy(ns string, ok bool) {
	w.mu.Lock()
	w.healthy[ns] = ok
	w.mu.Unlock()
}

// Through is a resourceVersion that reads of Secrets in the namespace may ask for ("not older
// than"): everything up to it has been delivered to the watch, so the API server can answer from
// its watch cache instead of reading etcd, without going back before a change the watch reported.
// "" before the first list. The reflector moves it after its store took a list or an event.
func (w *secretWatch) Through(namespace string) string {
	w.mu.RLock()
	r, ok := w.reflectors[namespace]
	if !ok {
		r = w.reflectors[metav1.NamespaceAll]
	}
	w.mu.RUnlock()
	if r == nil {
		return ""
	}
	return r.LastSyncResourceVersion()
}

// Version is the version of a used Secret as last seen; "" when it is not known (not used yet,
// or not listed yet), and the caller reads the Secret itself.
func (w *secretWatch) Version(key types.NamespacedName) string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.versions[key]
}

// Saw records the version of a Secret a reconcile read, unless the watch already knows a version.
func (w *secretWatch) Saw(key types.NamespacedName, version string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.versions[key]; !ok {
		w.versions[key] = version
	}
}

// NeedLeaderElection makes the watch run on the leader only, like the controllers it feeds.
func (w *secretWatch) NeedLeaderElection() bool { return true }

// Start follows each namespace with a reflector until ctx ends.
func (w *secretWatch) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, ns := range w.namespaces {
		wg.Go(func() { w.follow(logf.IntoContext(ctx, logf.FromContext(ctx).WithValues("namespace", ns)), ns) })
	}
	wg.Wait()
	return nil
}

// follow runs a reflector over a namespace's Secrets: it lists them a page at a time, watches from
// the list's version, resumes a watch that ends and lists again when its version has expired. The
// loop around it is the reflector's Run, except that it waits on the watch's clock (Run waits on
// the real one) and sees the errors Run would pass to a WatchErrorHandler: every reconnect after a
// failed list or watch, or after a watch that ended in an error or at once, waits the backoff.
func (w *secretWatch) follow(ctx context.Context, ns string) {
	backoff := w.backoff
	lw := secretListWatch{w: w, ns: ns}
	r := cache.NewReflectorWithOptions(
		cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{ListWithContextFunc: lw.list, WatchFuncWithContext: lw.watch}, lw),
		&metav1.PartialObjectMetadata{}, &secretStore{w: w, ns: ns, ctx: ctx},
		cache.ReflectorOptions{Name: "secret-watch", TypeDescription: "Secret metadata", Clock: w.clock, Backoff: &backoff})
	// Paged lists, relists too: unpaged, the API server answers a relist with every Secret at once.
	r.WatchListPageSize = secretListPage
	w.mu.Lock()
	w.reflectors[ns] = r
	w.mu.Unlock()

	delay := backoff.DelayWithReset(w.clock, secretWatchBackoffReset)
	for ctx.Err() == nil {
		if err := r.ListAndWatchWithContext(ctx); err != nil {
			if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
				logf.FromContext(ctx).Error(err, "Watching Secrets failed; listing them again")
			}
		}
		select {
		case <-ctx.Done():
		case <-w.clock.After(delay()):
		}
	}
}

// secretListWatch lists and watches one namespace's Secrets as metadata. It drops the unused
// Secrets from each page as it arrives, counts what it lists, and tells the watch whether it is
// following the namespace.
type secretListWatch struct {
	w  *secretWatch
	ns string
}

func (lw secretListWatch) list(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	if opts.ResourceVersion == "0" {
		// The reflector's first list asks for any version, which the API server answers from its
		// watch cache in one response whatever the limit: every Secret at once. The latest
		// version is paged, and is newer than any.
		opts.ResourceVersion = ""
	}
	page, err := lw.w.client.Resource(secretsResource).Namespace(lw.ns).List(ctx, opts)
	if err != nil {
		lw.w.setHealthy(lw.ns, false)
		return nil, err
	}
	secretsListed.Add(float64(len(page.Items)))
	used := make([]metav1.PartialObjectMetadata, 0, 1)
	for i := range page.Items {
		if len(lw.w.usersOf(ctx, &page.Items[i])) > 0 {
			used = append(used, page.Items[i])
		}
	}
	page.Items = used
	return page, nil
}

func (lw secretListWatch) watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	wi, err := lw.w.client.Resource(secretsResource).Namespace(lw.ns).Watch(ctx, opts)
	if err != nil {
		lw.w.setHealthy(lw.ns, false)
		return nil, err
	}
	lw.w.setHealthy(lw.ns, true)
	return watch.Filter(wi, func(ev watch.Event) (watch.Event, bool) {
		if ev.Type == watch.Error {
			lw.w.setHealthy(lw.ns, false)
		}
		return ev, true
	}), nil
}

// IsWatchListSemanticsUnSupported keeps the reflector on paged lists: a streaming list (WatchList)
// gathers every Secret of the namespace in a temporary store before the store sees any.
func (secretListWatch) IsWatchListSemanticsUnSupported() bool { return true }

// secretStore is the reflector's store for one namespace: it keeps only what observe remembers.
type secretStore struct {
	w   *secretWatch
	ns  string
	ctx context.Context // the watch's, for reading Users and queueing them
}

func (s *secretStore) Add(obj any) error    { return s.observe(obj, false) }
func (s *secretStore) Update(obj any) error { return s.observe(obj, false) }
func (s *secretStore) Delete(obj any) error { return s.observe(obj, true) }
func (s *secretStore) Resync() error        { return nil }

func (s *secretStore) observe(obj any, deleted bool) error {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return fmt.Errorf("unexpected %T in the Secret watch", obj)
	}
	s.w.observe(s.ctx, m, deleted)
	return nil
}

// Replace takes a complete list (of used Secrets only: the list dropped the others) and forgets
// the used Secrets of the namespace it no longer has.
func (s *secretStore) Replace(list []any, _ string) error {
	seen := map[types.NamespacedName]bool{}
	for _, obj := range list {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return fmt.Errorf("unexpected %T in the Secret watch", obj)
		}
		if s.w.observe(s.ctx, m, false) {
			seen[types.NamespacedName{Namespace: m.Namespace, Name: m.Name}] = true
		}
	}
	s.w.forgetUnseen(s.ctx, s.ns, seen)
	secretLists.Inc()
	return nil
}

// observe records a Secret's version when Users use it, and queues them when it changed. It
// reports whether the Secret is now remembered.
func (w *secretWatch) observe(ctx context.Context, s *metav1.PartialObjectMetadata, deleted bool) bool {
	key := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
	users := w.usersOf(ctx, s)
	w.mu.Lock()
	old, known := w.versions[key]
	version := string(s.UID) + "/" + s.ResourceVersion
	remember := !deleted && len(users) > 0
	if remember {
		w.versions[key] = version
	} else {
		delete(w.versions, key)
	}
	w.mu.Unlock()
	if !known || old != version || deleted {
		for _, u := range users {
			w.enqueue(ctx, u)
		}
	}
	return remember
}

// forgetUnseen drops the used Secrets of a namespace that a full list no longer has (deleted
// while no watch was open), and queues their Users.
func (w *secretWatch) forgetUnseen(ctx context.Context, ns string, seen map[types.NamespacedName]bool) {
	var gone []types.NamespacedName
	w.mu.Lock()
	for key := range w.versions {
		if (ns == metav1.NamespaceAll || key.Namespace == ns) && !seen[key] {
			gone = append(gone, key)
			delete(w.versions, key)
		}
	}
	w.mu.Unlock()
	for _, key := range gone {
		s := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		for _, u := range w.usersOf(ctx, s) {
			w.enqueue(ctx, u)
		}
	}
}

// usersOf names the Users that use a Secret: those whose password it holds, and the User that
// owns it (a TOTP Secret).
func (w *secretWatch) usersOf(ctx context.Context, s *metav1.PartialObjectMetadata) []types.NamespacedName {
	var users v1.UserList
	var out []types.NamespacedName
	if err := w.users.List(ctx, &users, client.InNamespace(s.Namespace), client.MatchingFields{indexUserSecret: s.Name},
		client.UnsafeDisableDeepCopy); err == nil {
		for i := range users.Items {
			out = append(out, types.NamespacedName{Namespace: users.Items[i].Namespace, Name: users.Items[i].Name})
		}
	}
	if ref := metav1.GetControllerOf(s); ref != nil && ref.Kind == "User" && ref.APIVersion == v1.GroupVersion.String() {
		owner := types.NamespacedName{Namespace: s.Namespace, Name: ref.Name}
		if err := w.users.Get(ctx, owner, &v1.User{}); err == nil {
			out = append(out, owner)
		}
	}
	return out
}

func (w *secretWatch) enqueue(ctx context.Context, key types.NamespacedName) {
	u := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	select {
	case w.queue <- event.GenericEvent{Object: u}:
	case <-ctx.Done():
	}
}
