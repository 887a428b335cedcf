package controller_test

// A panel database that stops answering (a hung server, a network that drops packets): reconciles
// fail within their deadline with DatabaseUnavailable instead of hanging, and converge promptly
// once it answers again. The manager reaches the database through a testdb.Proxy that the tests
// stall; the tests read and check the database directly.

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
)

// newProxiedEnv starts a manager whose store reaches a fresh MariaDB panel database through a
// proxy, with the store's operation deadline opTimeout (0: the production default).
func newProxiedEnv(t *testing.T, opTimeout time.Duration, options ...envOption) (*env, *testdb.Proxy) {
	t.Helper()
	p, proxy := mariadb.ProxiedPanel(t)
	e := startEnv(t, panel.Options{DSN: proxy.DSN(p.DSN), PasswordFile: p.PasswordFile, OperationTimeout: opTimeout},
		p.Root, options...)
	return e, proxy
}

// readyUsers creates n Users and waits until each is Ready; it returns them and their panel UUIDs.
func (e *env) readyUsers(n int) ([]*v1.User, []string) {
	e.t.Helper()
	users, ids := make([]*v1.User, n), make([]string, n)
	for i := range n {
		users[i], ids[i] = e.readyUser(fmt.Sprintf("user-%d", i))
	}
	return users, ids
}

// unavailableNow is "" when every User reports Reconciling=DatabaseUnavailable for its current
// generation: a reconcile of the edited spec ended, and said why.
func (e *env) unavailableNow(users []*v1.User) string {
	got := &v1.User{}
	for _, u := range users {
		if err := k8s.Get(e.ctx(), clientKey(u), got); err != nil {
			return err.Error()
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReconciling)
		if c == nil || c.Reason != v1.ReasonDatabaseUnavailable || c.ObservedGeneration != got.Generation {
			return fmt.Sprintf("User %s Reconciling = %+v, want DatabaseUnavailable at generation %d", u.Name, c, got.Generation)
		}
	}
	return ""
}

// convergedNow is "" when every User is Ready for its current generation and its panel row has
// the first name it was edited to.
func (e *env) convergedNow(users []*v1.User, ids []string, firstName string) string {
	got := &v1.User{}
	for i, u := range users {
		if err := k8s.Get(e.ctx(), clientKey(u), got); err != nil {
			return err.Error()
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
		if c == nil || c.Reason != v1.ReasonReconciled || c.ObservedGeneration != got.Generation {
			return fmt.Sprintf("User %s Ready = %+v, want Reconciled at generation %d", u.Name, c, got.Generation)
		}
		if name := e.str("SELECT firstname FROM users WHERE uuid = ?", ids[i]); name != firstName {
			return fmt.Sprintf("User %s: the panel row's firstname is %q, want %q", u.Name, name, firstName)
		}
	}
	return ""
}

func unavailableOutcomes(t *testing.T) float64 {
	t.Helper()
	return metricValue(t, "puq_user_operator_reconcile_outcomes_total",
		map[string]string{"kind": "User", "reason": v1.ReasonDatabaseUnavailable})
}

// With the database silent, Users edited meanwhile, more than there are workers, each report
// DatabaseUnavailable within the operation deadline of its turn: no worker hangs on the database.
func TestReconcilesAgainstASilentDatabaseEndWithDatabaseUnavailable(t *testing.T) {
	const workers = 2
	e, proxy := newProxiedEnv(t, 0, withReconcileWorkers(workers))
	users, ids := e.readyUsers(workers + 1)
	before := unavailableOutcomes(t)
	proxy.Stall()
	t.Cleanup(proxy.Resume)
	for _, u := range users {
		update(e, u, func(u *v1.User) { u.Spec.FirstName = "During-Stall" })
	}
	// Each worker's reconcile ends at the deadline; the User after them waits for one to end.
	bound := 2*panel.DefaultOperationTimeout + 5*time.Second
	e.eventually(bound, func() string { return e.unavailableNow(users) })
	if n := unavailableOutcomes(t) - before; n < float64(len(users)) {
		t.Errorf("%v reconciles ended DatabaseUnavailable, want at least one per User (%d)", n, len(users))
	}
	if proxy.Held() == 0 {
		t.Error("the proxy held nothing back: the manager did not reach the database through it")
	}
	proxy.Resume()
	e.eventually(30*time.Second, func() string { return e.convergedNow(users, ids, "During-Stall") })
}

// failuresBeyondDefaultBackoff is how many failed reconciles of one object make controller-runtime's
// default backoff (5 ms doubled per failure) wait more than 30 s: 5 ms * 2^13 = 41 s.
const failuresBeyondDefaultBackoff = 14

// After an outage long enough for every User to fail often enough that the default per-object
// backoff would wait 41 s, every User converges (Ready, row updated) within 30 s of the database
// answering again. The store's deadline is short here, so failures come as fast as from a server
// that refuses connections and the backoff grows as far as an outage can make it.
func TestUsersConvergeWithin30sOfTheDatabaseAnsweringAgain(t *testing.T) {
	e, proxy := newProxiedEnv(t, 100*time.Millisecond, withReconcileWorkers(2))
	users, ids := e.readyUsers(3)
	before := unavailableOutcomes(t)
	proxy.Stall()
	t.Cleanup(proxy.Resume)
	for _, u := range users {
		update(e, u, func(u *v1.User) { u.Spec.FirstName = "After-Outage" })
	}
	want := float64(failuresBeyondDefaultBackoff * len(users))
	e.eventually(60*time.Second, func() string {
		if n := unavailableOutcomes(t) - before; n < want {
			return fmt.Sprintf("%v reconciles ended DatabaseUnavailable, waiting for %v", n, want)
		}
		return ""
	})
	proxy.Resume()
	e.eventually(30*time.Second, func() string { return e.convergedNow(users, ids, "After-Outage") })
}
