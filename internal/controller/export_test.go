package controller

// Test hooks for the external controller_test package: compiled only into the test binary.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// SecretWatch is the Secret watch a manager runs inside the User controller, exposed so a test can
// run one by itself and look at what it remembers.
type SecretWatch = secretWatch

// NewSecretWatch is the watch SetupWithManager starts: users must carry the field indexes of
// SetupIndexes.
func NewSecretWatch(c metadata.Interface, users client.Reader, namespaces []string) *SecretWatch {
	return newSecretWatch(c, users, namespaces)
}

// Remembered is how many Secrets the watch keeps a version of.
func (w *secretWatch) Remembered() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.versions)
}

// Queue is where the watch queues the Users of changed Secrets.
func (w *secretWatch) Queue() <-chan event.GenericEvent { return w.queue }

// SecretVersion is the version string the watch and the binding row use for a Secret.
func SecretVersion(s metav1.Object) string { return string(s.GetUID()) + "/" + s.GetResourceVersion() }

// Key names a Secret for SecretWatch.Version.
func Key(namespace, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: namespace, Name: name}
}

// HashProbe replaces the bcrypt call: it counts the hashes running at once, keeps the highest
// count, and holds every hash until Release.
type HashProbe struct {
	running, max, calls atomic.Int32
	gate                chan struct{}
	once                sync.Once
}

// HoldHashes installs a HashProbe; the returned function releases held hashes and restores the
// real bcrypt call.
func HoldHashes() (*HashProbe, func()) {
	p := &HashProbe{gate: make(chan struct{})}
	bcrypt := hashPassword
	hashPassword = func(cleartext string, cost int) (string, error) {
		p.calls.Add(1)
		n := p.running.Add(1)
		defer p.running.Add(-1)
		for {
			m := p.max.Load()
			if n <= m || p.max.CompareAndSwap(m, n) {
				break
			}
		}
		<-p.gate
		return bcrypt(cleartext, cost)
	}
	return p, func() {
		p.Release()
		hashPassword = bcrypt
	}
}

// Release lets every held hash, and every later one, run.
func (p *HashProbe) Release() { p.once.Do(func() { close(p.gate) }) }

// Running is how many hashes are in the bcrypt call now; Max the most there ever were at once;
// Calls how many started.
func (p *HashProbe) Running() int { return int(p.running.Load()) }

// Max is the most hashes that were in the bcrypt call at once.
func (p *HashProbe) Max() int { return int(p.max.Load()) }

// Calls is how many hashes started.
func (p *HashProbe) Calls() int { return int(p.calls.Load()) }

// WaitOn makes the watch wait for its reconnects on c; call it before Start.
func (w *secretWatch) WaitOn(c clock.Clock) { w.clock = c }

// FirstBackoff is how long the watch waits before its first reconnect after a failure; each
// further failure multiplies it by SecretWatchBackoffFactor, up to SecretWatchBackoffCap, plus up
// to SecretWatchJitter of it.
var (
	FirstBackoff             = secretWatchBackoff.Duration
	SecretWatchBackoffFactor = secretWatchBackoff.Factor
	SecretWatchBackoffCap    = secretWatchBackoff.Cap
	SecretWatchJitter        = secretWatchBackoff.Jitter
)

// WrapSecretWatchClient makes the managers set up from now on run their Secret watch through
// wrap, until restore.
func WrapSecretWatchClient(wrap func(metadata.Interface) metadata.Interface) (restore func()) {
	real := newMetadataClient
	newMetadataClient = func(cfg *rest.Config) (metadata.Interface, error) {
		c, err := real(cfg)
		if err != nil {
			return nil, err
		}
		return wrap(c), nil
	}
	return func() { newMetadataClient = real }
}

// FailLocate makes the lookup of a User's panel user fail with err, until restore. Set it only
// while no manager runs.
func FailLocate(err error) (restore func()) {
	real := locate
	locate = func(*panel.Store, context.Context, panel.Lookup) (panel.Located, error) { return panel.Located{}, err }
	return func() { locate = real }
}

// CutAfterTheFirstPanelWrite stops the first reconcile of a User that commits a panel write between
// the commit and the status write, until release; that reconcile then fails there, as a kill -9
// or a lost conflict at the worst moment would make it. Later reconciles pass. reached is closed
// when the cut is reached.
func CutAfterTheFirstPanelWrite() (reached <-chan struct{}, release, restore func()) {
	real := afterPanelWrite
	hit, gate := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	afterPanelWrite = func(ctx context.Context, _ *v1.User) error {
		if !first.CompareAndSwap(false, true) {
			return nil
		}
		close(hit)
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return errors.New("the reconcile was cut between the panel write and the status write (test)")
	}
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	return hit, release, func() { release(); afterPanelWrite = real }
}

// LoseMembershipStatusWrites makes every status write of the ClientMembership called name, while
// it is not being deleted, fail after the store has committed: the process "dies" between the
// commit and the status write. failed counts the writes lost. Set it only while no manager runs.
func LoseMembershipStatusWrites(name string) (failed func() int, restore func()) {
	var n atomic.Int32
	membershipStatusHook = func(m *v1.ClientMembership) error {
		if m.Name != name || !m.DeletionTimestamp.IsZero() {
			return nil
		}
		n.Add(1)
		return errors.New("test hook: the process died between the commit and the status write")
	}
	return func() int { return int(n.Load()) }, func() { membershipStatusHook = nil }
}
