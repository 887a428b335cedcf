package controller_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
)

// failure is how failingMetadata answers the Secret watch.
type failure int

const (
	passThrough    failure = iota
	watchCloses            // every watch opens and ends at once, delivering nothing
	watchGone              // every watch is refused with 410 Gone
	watchFails             // every watch opens and ends at once with an error
	everythingDown         // every list and watch is refused with 503
)

// failingMetadata passes the Secret watch's lists and watches to the API server until told to
// fail; it counts the calls and the refusals.
type failingMetadata struct {
	metadata.Interface
	calls, refused atomic.Int32

	mu      sync.Mutex
	fail    failure
	current watch.Interface
}

// failWith makes every later call fail the given way, and ends the open watch.
func (f *failingMetadata) failWith(how failure) {
	f.mu.Lock()
	f.fail = how
	open := f.current
	f.mu.Unlock()
	if open != nil {
		open.Stop()
	}
}

func (f *failingMetadata) failing() failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail
}

func (f *failingMetadata) Resource(gvr schema.GroupVersionResource) metadata.Getter {
	return failingGetter{Getter: f.Interface.Resource(gvr), f: f}
}

type failingGetter struct {
	metadata.Getter
	f *failingMetadata
}

func (g failingGetter) Namespace(ns string) metadata.ResourceInterface {
	return failingResource{ResourceInterface: g.Getter.Namespace(ns), f: g.f}
}

type failingResource struct {
	metadata.ResourceInterface
	f *failingMetadata
}

var errDown = apierrors.NewServiceUnavailable("the test took the API server down")

func (r failingResource) List(ctx context.Context, opts metav1.ListOptions) (*metav1.PartialObjectMetadataList, error) {
	r.f.calls.Add(1)
	if r.f.failing() == everythingDown {
		r.f.refused.Add(1)
		return nil, errDown
	}
	return r.ResourceInterface.List(ctx, opts)
}

func (r failingResource) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	r.f.calls.Add(1)
	switch r.f.failing() {
	case watchCloses:
		return watch.NewEmptyWatch(), nil
	case watchFails:
		events := make(chan watch.Event, 1)
		events <- watch.Event{Type: watch.Error, Object: &errDown.ErrStatus}
		close(events)
		return watch.NewProxyWatcher(events), nil
	case watchGone:
		r.f.refused.Add(1)
		return nil, apierrors.NewResourceExpired("too old resource version: " + opts.ResourceVersion)
	case everythingDown:
		r.f.refused.Add(1)
		return nil, errDown
	}
	wi, err := r.ResourceInterface.Watch(ctx, opts)
	if err == nil {
		r.f.mu.Lock()
		r.f.current = wi
		r.f.mu.Unlock()
	}
	return wi, err
}

// A Secret watch whose API server keeps failing waits before every reconnect, longer each time:
// a watch that closes at once is not reopened at once, a 410 is not relisted at once, a failed
// list is not retried at once. The waits run on a fake clock, so the test counts the calls made
// in each wait and steps the clock to just before and just past each delay, through the doubling
// up to the cap (seven waits: the backoff starts over two minutes after it started).
func TestSecretWatchBacksOffWhileTheAPIServerFails(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fail       failure
		perAttempt int32 // calls in one reconnect
	}{
		{"a watch that closes at once is listed and reopened after a wait", watchCloses, 2},
		{"a watch answered 410 Gone lists again after a wait", watchGone, 2},
		{"a failing list is retried after a wait", everythingDown, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t, k8s)
			users := newUserCache(t, restConfig, ns)
			mc, err := metadata.NewForConfig(restConfig)
			if err != nil {
				t.Fatal(err)
			}
			f := &failingMetadata{Interface: mc, fail: tc.fail}
			clock := clocktesting.NewFakeClock(time.Now())
			w := controller.NewSecretWatch(f, users, []string{ns})
			w.WaitOn(clock)
			runSecretWatch(t, w)

			delay, before := controller.FirstBackoff, int32(-1)
			for attempt := range 7 {
				waitFor(t, "the watch waits before reconnecting", func() bool {
					if n := f.calls.Load(); n > 50 {
						t.Fatalf("%d calls to the API server without a wait between them", n)
					}
					return clock.HasWaiters()
				})
				calls := f.calls.Load()
				if before >= 0 && calls-before != tc.perAttempt {
					t.Fatalf("attempt %d made %d calls before waiting, want %d", attempt, calls-before, tc.perAttempt)
				}
				before = calls
				clock.Step(delay - time.Millisecond)
				if !clock.HasWaiters() || f.calls.Load() != calls {
					t.Fatalf("attempt %d reconnected before its %s delay", attempt, delay)
				}
				clock.Step(time.Duration(float64(delay)*controller.SecretWatchJitter) + 2*time.Millisecond)
				delay = min(time.Duration(float64(delay)*controller.SecretWatchBackoffFactor), controller.SecretWatchBackoffCap)
			}
			if w.Healthy(ns) && tc.fail != watchCloses {
				t.Errorf("the watch says it is healthy while every call is refused")
			}
		})
	}
}

// runSecretWatch runs a Secret watch until the test ends, draining what it queues.
func runSecretWatch(t *testing.T, w *controller.SecretWatch) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Start(ctx) })
	wg.Go(func() {
		for {
			select {
			case <-w.Queue():
			case <-ctx.Done():
				return
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// A password rotated while the Secret watch is down is applied at the next reconcile: the
// operator does not trust the versions a failing watch remembers, it reads the Secret.
func TestRotationWhileTheSecretWatchFailsIsApplied(t *testing.T) {
	f := &failingMetadata{}
	restore := controller.WrapSecretWatchClient(func(mc metadata.Interface) metadata.Interface {
		f.Interface = mc
		return f
	})
	e := newEnv(t)
	restore() // the manager holds its client already
	u, id := e.readyUserWithPassword("jane", "jane@example.com", testPassword)

	f.failWith(everythingDown)
	// The second refusal comes after the watch handled the first.
	waitFor(t, "the Secret watch fails twice", func() bool { return f.refused.Load() >= 2 })
	const rotated = "rotated-Cedar-kite-48"
	e.setPassword("jane-password", rotated)
	update(e, u, func(u *v1.User) { u.Spec.FirstName = "Janet" })
	e.waitUser(u, v1.ReasonReconciled)

	if !password.Verify(e.passwordColumn(id), rotated) {
		t.Errorf("the password rotated while the Secret watch failed is not in the panel, yet the User is Ready")
	}
	e.wantLogsIn("jane with the rotated password", e.login("jane@example.com", rotated, ""))
}

// Switching spec.passwordSecretRef.key from password to passwordHash, on a Secret that holds
// both from the start and does not change, puts the hash in the panel.
func TestSwitchingTheSecretKeyToPasswordHashIsApplied(t *testing.T) {
	e := newEnv(t)
	const hashed = "hashed-Willow-drum-63"
	h, err := password.Hash(hashed, 4)
	if err != nil {
		t.Fatal(err)
	}
	e.secret("jane-password", map[string]string{v1.PasswordKeyCleartext: testPassword, v1.PasswordKeyHash: h})
	u := e.newUser("jane", "jane@example.com")
	e.create(u)
	e.waitUser(u, v1.ReasonReconciled)
	e.wantLogsIn("jane with the cleartext key", e.login("jane@example.com", testPassword, ""))

	update(e, u, func(u *v1.User) { u.Spec.PasswordSecretRef.Key = v1.PasswordKeyHash })
	e.waitUser(u, v1.ReasonReconciled)
	e.wantLogsIn("jane after the switch to the passwordHash key", e.login("jane@example.com", hashed, ""))

	update(e, u, func(u *v1.User) { u.Spec.PasswordSecretRef.Key = v1.PasswordKeyCleartext })
	e.waitUser(u, v1.ReasonReconciled)
	e.wantLogsIn("jane after switching back to the password key", e.login("jane@example.com", testPassword, ""))
}

// A cleartext password saved with the file's line ending (kubectl create secret --from-file keeps
// it) logs the person in with the password as typed, for "\n" and "\r\n" alike.
func TestPasswordFromAFileWithALineEndingLogsInWithoutIt(t *testing.T) {
	e := newEnv(t)
	for i, ending := range []string{"\n", "\r\n"} {
		name, email := fmt.Sprintf("file%d", i), fmt.Sprintf("file%d@example.com", i)
		e.secret(name+"-password", map[string]string{"password": testPassword + ending})
		u := e.newUser(name, email)
		e.create(u)
		e.waitUser(u, v1.ReasonReconciled)
		e.wantLogsIn(fmt.Sprintf("the password typed without its %q", ending), e.login(email, testPassword, ""))
	}
}

// When the check that the bound panel user exists fails, the User says DatabaseUnavailable and
// nothing is created or adopted; once the check works, the same panel user is kept.
func TestFailedBoundUserCheckIsDatabaseUnavailable(t *testing.T) {
	e := newEnv(t)
	u, id := e.readyUserWithPassword("jane", "jane@example.com", testPassword)
	e.shutdown()
	// A User whose status is gone (restored from a backup) is found through its binding.
	got := &v1.User{}
	if err := k8s.Get(e.ctx(), client.ObjectKeyFromObject(u), got); err != nil {
		t.Fatal(err)
	}
	got.Status = v1.UserStatus{}
	if err := k8s.Status().Update(e.ctx(), got); err != nil {
		t.Fatal(err)
	}
	restore := controller.FailLocate(fmt.Errorf("cannot check the panel user: %w", panel.ErrUnavailable))
	e.start()
	e.waitUser(u, v1.ReasonDatabaseUnavailable)
	e.shutdown()
	restore()
	if n := e.count("SELECT COUNT(*) FROM users WHERE email = ?", "jane@example.com"); n != 1 {
		t.Errorf("%d panel users with jane's email, want 1", n)
	}

	e.start()
	if got := e.waitUser(u, v1.ReasonReconciled); got.Status.UUID != id {
		t.Errorf("status.uuid = %q after the check worked again, want the bound user %q", got.Status.UUID, id)
	}
}
