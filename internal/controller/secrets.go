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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// secretListPage is how many Secrets one list request returns.
const secretListPage = 500

// secretWatchBackoff spaces the watch's reconnects (lists and watches) after a failure or a watch
// that ended without delivering anything, so a failing API server is not hammered: 1 s, doubling
// up to a minute, with jitter; it starts again from 1 s once a watch delivers.
var secretWatchBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: time.Minute}

// secretWatch follows the Secrets that Users use (password Secrets, and the TOTP Secrets Users
// own) and nothing else. An informer would cache the metadata of every Secret in the cluster and
// decode them all at once on every relist; this lists Secrets as metadata a page at a time, then
// watches them, and keeps only the version (UID/resourceVersion) of the Secrets some User uses.
// A change to one of those queues its Users. Memory is flat in the number of unrelated Secrets.
type secretWatch struct {
	client     metadata.Interface
	users      client.Reader
	namespaces []string // "" alone means all namespaces
	queue      chan event.GenericEvent

	mu       sync.RWMutex
	versions map[types.NamespacedName]string
	// through is, per followed namespace ("" for all), the resourceVersion the watch has
	// delivered everything up to.
	through map[string]string
	// healthy is, per followed namespace, whether a watch is open on a complete list: only then
	// are the versions current. A failed list or watch clears it until a watch opens again.
	healthy map[string]bool

	backoff wait.Backoff
	clock   clock.Clock
}

func newSecretWatch(c metadata.Interface, users client.Reader, namespaces []string) *secretWatch {
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	return &secretWatch{client: c, users: users, namespaces: namespaces, queue: make(chan event.GenericEvent, secretListPage),
		versions: map[types.NamespacedName]string{}, through: map[string]string{}, healthy: map[string]bool{},
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
// "" before the first list.
func (w *secretWatch) Through(namespace string) string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if rv, ok := w.through[namespace]; ok {
		return rv
	}
	return w.through[metav1.NamespaceAll]
}

func (w *secretWatch) advance(ns, rv string) {
	w.mu.Lock()
	w.through[ns] = rv
	w.mu.Unlock()
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

// Start lists and watches each namespace until ctx ends.
func (w *secretWatch) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, ns := range w.namespaces {
		wg.Go(func() { w.follow(ctx, ns) })
	}
	wg.Wait()
	return nil
}

// follow lists a namespace's Secrets, then watches from the list's version; a watch that ends is
// resumed from the last version seen, and one that is too old for the API server lists again.
// Every reconnect after a failure, or after a watch that delivered nothing, waits the backoff
// first; the backoff starts over once a watch delivers.
func (w *secretWatch) follow(ctx context.Context, ns string) {
	log := logf.FromContext(ctx).WithValues("namespace", ns)
	backoff := w.backoff
	rv := "" // "" lists first
	for ctx.Err() == nil {
		var err error
		delivered := false
		listed := rv == ""
		if listed {
			rv, err = w.list(ctx, ns)
		} else {
			rv, delivered, err = w.watch(ctx, ns, rv)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.setHealthy(ns, false)
		}
		if delivered {
			backoff = w.backoff
		}
		switch {
		case err == nil && (listed || delivered):
			continue // watch from the list's version, or resume a watch that was working, at once
		case err == nil:
		case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
			rv = ""
		default:
			log.Error(err, "Watching Secrets failed; listing them again")
			rv = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-w.clock.After(backoff.Step()):
		}
	}
}

// list goes through the namespace's Secrets a page at a time, and forgets the used Secrets that
// are gone. It returns the list's resourceVersion.
func (w *secretWatch) list(ctx context.Context, ns string) (string, error) {
	seen := map[types.NamespacedName]bool{}
	opts := metav1.ListOptions{Limit: secretListPage}
	for {
		page, err := w.client.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(ns).List(ctx, opts)
		if err != nil {
			return "", err
		}
		secretsListed.Add(float64(len(page.Items)))
		for i := range page.Items {
			s := &page.Items[i]
			if w.observe(ctx, s, false) {
				seen[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = true // only the used Secrets
			}
		}
		if page.Continue == "" {
			w.forgetUnseen(ctx, ns, seen)
			w.advance(ns, page.ResourceVersion)
			secretLists.Inc()
			return page.ResourceVersion, nil
		}
		opts.Continue = page.Continue
	}
}

// watch follows changes from rv until the watch ends; it returns the last version seen and
// whether the watch delivered anything.
func (w *secretWatch) watch(ctx context.Context, ns, rv string) (string, bool, error) {
	wi, err := w.client.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(ns).Watch(ctx,
		metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
	if err != nil {
		return rv, false, err
	}
	defer wi.Stop()
	w.setHealthy(ns, true)
	delivered := false
	for ev := range wi.ResultChan() {
		if ev.Type == watch.Error {
			return rv, delivered, apierrors.FromObject(ev.Object)
		}
		s, ok := ev.Object.(*metav1.PartialObjectMetadata)
		if !ok {
			return rv, delivered, fmt.Errorf("unexpected %T in the Secret watch", ev.Object)
		}
		rv, delivered = s.ResourceVersion, true
		if ev.Type != watch.Bookmark {
			w.observe(ctx, s, ev.Type == watch.Deleted)
		}
		w.advance(ns, rv)
	}
	if ctx.Err() != nil {
		return rv, delivered, ctx.Err()
	}
	return rv, delivered, nil
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
