package controller_test

// The way out when the panel database is gone for good: the abandon annotation on a User or a
// ClientMembership being deleted removes its finalizer without any database call, and a Warning
// event says the panel side was abandoned. On an object not being deleted it changes nothing.
// The manager reaches the database through a testdb.Proxy that the tests stall; the tests read
// the database directly, past the proxy.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// abandonDeadline is the store's operation deadline in these tests: short, so a reconcile against
// the stalled database fails fast and the per-object backoff grows to its cap quickly.
const abandonDeadline = 100 * time.Millisecond

// failuresAtBackoffCap is how many failed reconciles of one object make its next retry wait the
// capped backoff (5 ms * 2^11 > 10 s): after them, only a wake by the annotation can end the
// deletion within a few seconds.
const failuresAtBackoffCap = 12

// reconcileErrors is how many reconciles of the controller called name have returned an error.
func reconcileErrors(t *testing.T, name string) float64 {
	t.Helper()
	return metricValue(t, "controller_runtime_reconcile_errors_total", map[string]string{"controller": name})
}

// dbOperations counts the panel database operations the manager's store has started, by the
// operation's metric label ("" for all), whether they reached the server or not.
func dbOperations(t *testing.T, op string) float64 {
	t.Helper()
	labels := map[string]string{}
	if op != "" {
		labels["operation"] = op
	}
	return metricValue(t, "puq_user_operator_panel_db_operation_duration_seconds", labels)
}

// waitFailures waits until the controller called name has failed n more reconciles since from.
func (e *env) waitFailures(name string, from float64, n int) {
	e.t.Helper()
	e.eventually(60*time.Second, func() string {
		if got := reconcileErrors(e.t, name) - from; got < float64(n) {
			return fmt.Sprintf("%s controller: %v failed reconciles, want %d", name, got, n)
		}
		return ""
	})
}

// annotateAbandon sets the abandon annotation on obj.
func annotateAbandon[T client.Object](e *env, obj T) {
	e.t.Helper()
	update(e, obj, func(o T) {
		a := o.GetAnnotations()
		if a == nil {
			a = map[string]string{}
		}
		a[v1.AnnotationAbandon] = "true"
		o.SetAnnotations(a)
	})
}

// wantAbandonedEvent checks the Warning event that says the panel side was abandoned, and that
// the events name no panel secret.
func (e *env) wantAbandonedEvent(obj client.Object) {
	e.t.Helper()
	e.waitEvent(obj, v1.ReasonAbandoned)
	if text := e.allEventText(); strings.Contains(text, testPassword) || strings.Contains(text, "$2y$") {
		e.t.Errorf("an event carries a password or hash")
	}
}

// A User deleted while its panel database is unreachable waits with DatabaseUnavailable; once the
// abandon annotation is set it goes at once (its retry was 10 s away: the annotation woke it),
// and no statement reached the database: the panel user and its binding are left as they were.
func TestAbandonedUserGoesWithoutTouchingAnUnreachableDatabase(t *testing.T) {
	e, proxy := newProxiedEnv(t, abandonDeadline)
	u, id := e.readyUser("jane")
	writes, sums := e.writeStatements(), e.tableChecksums()
	proxy.Stall()
	t.Cleanup(proxy.Resume)
	failed := reconcileErrors(t, e.controller("user"))
	if err := k8s.Delete(e.ctx(), u); err != nil {
		t.Fatal(err)
	}
	e.waitFailures(e.controller("user"), failed, failuresAtBackoffCap)
	got := &v1.User{}
	if err := k8s.Get(e.ctx(), clientKey(u), got); err != nil {
		t.Fatalf("the User went while its database was unreachable and no annotation was set: %v", err)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReconciling); c == nil || c.Reason != v1.ReasonDatabaseUnavailable {
		t.Errorf("a User waiting for an unreachable database: Reconciling = %+v, want DatabaseUnavailable", c)
	}

	// Nothing else reaches the database meanwhile: the User's next retry is a capped backoff away.
	ops := dbOperations(t, "")
	annotateAbandon(e, u)
	e.waitGoneWithin(u, 3*time.Second)
	e.wantAbandonedEvent(u)
	if n := dbOperations(t, "") - ops; n != 0 {
		t.Errorf("%v panel database operations while the User was abandoned, want none", n)
	}
	if n := e.writeStatements() - writes; n != 0 {
		t.Errorf("%d data-changing statements reached the database while the User was abandoned", n)
	}
	proxy.Resume()
	if now := e.tableChecksums(); now != sums {
		t.Errorf("the panel tables changed: %s, were %s", now, sums)
	}
	if n := e.count("SELECT COUNT(*) FROM users WHERE uuid = ?", id); n != 1 {
		t.Errorf("the abandoned panel user: %d rows, want it left in place", n)
	}
}

// The same for a ClientMembership: deleted while the database is unreachable it waits; the
// annotation lets it go with its association row left as it was.
func TestAbandonedMembershipGoesWithoutTouchingAnUnreachableDatabase(t *testing.T) {
	e, proxy := newProxiedEnv(t, abandonDeadline)
	acme := e.insertClient("Acme Hosting Ltd")
	_, id := e.readyUser("jane")
	m := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageOrders))
	e.create(m)
	e.waitMembership(m, v1.ReasonReconciled)
	e.waitRow(id, acme, `0 ["manage-orders"]`)
	writes, sums := e.writeStatements(), e.tableChecksums()
	proxy.Stall()
	t.Cleanup(proxy.Resume)
	failed := reconcileErrors(t, e.controller("clientmembership"))
	if err := k8s.Delete(e.ctx(), m); err != nil {
		t.Fatal(err)
	}
	e.waitFailures(e.controller("clientmembership"), failed, failuresAtBackoffCap)
	got := &v1.ClientMembership{}
	if err := k8s.Get(e.ctx(), clientKey(m), got); err != nil {
		t.Fatalf("the ClientMembership went while its database was unreachable and no annotation was set: %v", err)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReconciling); c == nil || c.Reason != v1.ReasonDatabaseUnavailable {
		t.Errorf("a ClientMembership waiting for an unreachable database: Reconciling = %+v, want DatabaseUnavailable", c)
	}

	// The User's controller, woken by the membership's changes, reads the database meanwhile:
	// count the first operation of a membership's deletion (reading what its resource made).
	const removal = "read_the_bound_associations"
	ops := dbOperations(t, removal)
	if ops == 0 {
		t.Fatalf("no %s operation counted before the annotation: the metric label changed?", removal)
	}
	annotateAbandon(e, m)
	e.waitGoneWithin(m, 3*time.Second)
	e.wantAbandonedEvent(m)
	if n := dbOperations(t, removal) - ops; n != 0 {
		t.Errorf("%v %s operations while the ClientMembership was abandoned, want none", n, removal)
	}
	if n := e.writeStatements() - writes; n != 0 {
		t.Errorf("%d data-changing statements reached the database while the ClientMembership was abandoned", n)
	}
	proxy.Resume()
	if now := e.tableChecksums(); now != sums {
		t.Errorf("the panel tables changed: %s, were %s", now, sums)
	}
	if row := e.row(id, acme); row != `0 ["manage-orders"]` {
		t.Errorf("the abandoned association: client_x_user = %s, want it left in place", row)
	}
}

// The annotation on a User and a ClientMembership that are not being deleted changes nothing:
// both stay Ready with their finalizers, and no statement changes the panel.
func TestAbandonAnnotationOnObjectsNotBeingDeletedChangesNothing(t *testing.T) {
	// The membership is reconciled again by its resync (an annotation of it or of its User is
	// not a change its plan reads, so no watch wakes it for one).
	e := newEnv(t, withResync(500*time.Millisecond))
	acme := e.insertClient("Acme Hosting Ltd")
	u, id := e.readyUser("jane")
	m := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageOrders))
	e.create(m)
	e.waitMembership(m, v1.ReasonReconciled)
	e.waitRow(id, acme, `0 ["manage-orders"]`)
	e.waitReconciles("user", 0)
	e.waitReconciles("clientmembership", 0)
	writes, sums := e.writeStatements(), e.tableChecksums()
	users, _ := reconciles(t, e.controller("user"))
	memberships, _ := reconciles(t, e.controller("clientmembership"))

	annotateAbandon(e, m)
	annotateAbandon(e, u) // wakes the User (annotation changes pass its predicate)
	e.eventually(30*time.Second, func() string {
		u, uIdle := reconciles(t, e.controller("user"))
		m, mIdle := reconciles(t, e.controller("clientmembership"))
		if u <= users || m <= memberships || !uIdle || !mIdle {
			return fmt.Sprintf("reconciles since the annotation: User %v (idle %v), ClientMembership %v (idle %v); want one each, then idle",
				u-users, uIdle, m-memberships, mIdle)
		}
		return ""
	})

	gotUser := e.waitUser(u, v1.ReasonReconciled)
	gotMembership := e.waitMembership(m, v1.ReasonReconciled)
	if !contains(gotUser.Finalizers, "panel.puqcloud.com/user") || !contains(gotMembership.Finalizers, "panel.puqcloud.com/clientmembership") {
		t.Errorf("finalizers: User %v, ClientMembership %v; want both kept", gotUser.Finalizers, gotMembership.Finalizers)
	}
	if n := e.writeStatements() - writes; n != 0 {
		t.Errorf("%d data-changing statements after annotating objects not being deleted", n)
	}
	if now := e.tableChecksums(); now != sums {
		t.Errorf("the panel tables changed: %s, were %s", now, sums)
	}
	if n := e.eventsEmitted(v1.ReasonAbandoned); n != 0 {
		t.Errorf("%d Abandoned events for objects not being deleted", n)
	}
}
