package controller_test

import (
	"testing"
	"time"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
)

// The window of issue 12: the association commits, then the status write that would record it is
// lost (kill -9, a conflict), then the ClientMembership is deleted. Its deletion must still remove
// the association it made: the binding table, not status, says what it made.
func TestAssociationWhoseStatusWriteWasLostIsRemovedOnDeletion(t *testing.T) {
	lost, restore := controller.LoseMembershipStatusWrites("jane-acme")
	t.Cleanup(restore) // registered first, so it runs after the manager has stopped
	e := newEnv(t)
	acme := e.insertClient("Acme Hosting Ltd")
	_, id := e.readyUser("jane")
	m := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageOrders))
	e.create(m)
	e.waitRow(id, acme, `0 ["manage-orders"]`)
	e.eventually(20*time.Second, func() string {
		if lost() == 0 {
			return "no status write lost after the commit yet"
		}
		return ""
	})
	got := &v1.ClientMembership{}
	if err := k8s.Get(e.ctx(), clientKey(m), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.UserUUID != "" || got.Status.ClientUUID != "" || len(got.Status.Conditions) != 0 {
		t.Fatalf("a status was written despite the hook: %+v", got.Status)
	}
	if err := k8s.Delete(e.ctx(), m); err != nil {
		t.Fatal(err)
	}
	e.waitGone(m)
	if row := e.row(id, acme); row != "absent" {
		t.Errorf("the association committed before the lost status write outlived its ClientMembership: client_x_user = %s", row)
	}
}

// membershipBinding is the puq_operator_membership_bindings row of a user and client: the
// resource UID holding it, or "absent".
func (e *env) membershipBinding(userUUID, clientUUID string) string {
	e.t.Helper()
	if e.count("SELECT COUNT(*) FROM puq_operator_membership_bindings WHERE user_uuid = ? AND client_uuid = ?",
		userUUID, clientUUID) == 0 {
		return "absent"
	}
	return e.str("SELECT resource_uid FROM puq_operator_membership_bindings WHERE user_uuid = ? AND client_uuid = ?",
		userUUID, clientUUID)
}

// An association held by another resource (the same user and client, another UID: here a
// membership of another operator instance) is never removed by a deletion, though the deleted
// membership's status names it and says Ready.
func TestDeletionLeavesAnAssociationBoundToAnotherResource(t *testing.T) {
	e := newEnv(t)
	acme := e.insertClient("Acme Hosting Ltd")
	_, id := e.readyUser("jane")
	m := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageOrders))
	e.create(m)
	got := e.waitMembership(m, v1.ReasonReconciled)
	if b := e.membershipBinding(id, acme); b != string(got.UID) {
		t.Fatalf("binding = %s, want the membership's UID %s", b, got.UID)
	}
	const other = "0f0f0f0f-0f0f-4f0f-8f0f-0f0f0f0f0f0f"
	if _, err := e.db.Exec("UPDATE puq_operator_membership_bindings SET resource_uid = ?, instance_id = 'another-operator' "+
		"WHERE user_uuid = ? AND client_uuid = ?", other, id, acme); err != nil {
		t.Fatal(err)
	}
	if got.Status.UserUUID != id || got.Status.ClientUUID != acme {
		t.Fatalf("status = %+v, want it to name the association", got.Status)
	}
	if err := k8s.Delete(e.ctx(), m); err != nil {
		t.Fatal(err)
	}
	e.waitGone(m)
	if row := e.row(id, acme); row != `0 ["manage-orders"]` {
		t.Errorf("deleting a membership removed an association another resource holds: client_x_user = %s", row)
	}
	if b := e.membershipBinding(id, acme); b != other {
		t.Errorf("the other resource's binding = %s, want %s", b, other)
	}
}

// Deleting a User deletes its memberships first; the panel never removes a client's owner, so the
// owner's membership releases its association instead of blocking the User's deletion forever.
func TestOwnerAssociationIsReleasedWhenItsUserIsDeleted(t *testing.T) {
	e := newEnv(t)
	acme := e.insertClient("Acme Hosting Ltd")
	other := e.insertClient("Other Ltd")
	u, id := e.readyUser("jane")
	owns := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, owner)
	member := e.membership("jane-other", "jane", v1.ClientSelector{UUID: other}, perms(v1.PermissionManageUsers))
	e.create(owns)
	e.create(member)
	e.waitMembership(owns, v1.ReasonReconciled)
	e.waitMembership(member, v1.ReasonReconciled)
	e.waitRow(id, acme, "1 "+allPermissions)
	if err := k8s.Delete(e.ctx(), u); err != nil {
		t.Fatal(err)
	}
	e.waitGone(owns)
	e.waitGone(member)
	e.waitEvent(owns, controller.ReasonReleased)
	if row := e.row(id, acme); row != "1 "+allPermissions {
		t.Errorf("the released owner's association: client_x_user = %s, want it kept", row)
	}
	if b := e.membershipBinding(id, acme); b != "absent" {
		t.Errorf("the released association is still bound to %s", b)
	}
	if row := e.row(id, other); row != "absent" {
		t.Errorf("the member's association: client_x_user = %s, want it removed", row)
	}
	if contains(e.eventReasons(owns), v1.ReasonOwnerRemovalBlocked) {
		t.Error("the owner's membership reported OwnerRemovalBlocked although its User is being deleted")
	}
}

// A Ready membership whose association and binding match takes no transaction on a resync: no
// BEGIN, no data-changing statement, no API write; only the reads that found nothing to do.
func TestReadyMembershipResyncWritesNothing(t *testing.T) {
	e := newEnv(t, withResync(500*time.Millisecond))
	acme := e.insertClient("Acme Hosting Ltd")
	e.readyUser("jane")
	m := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageOrders))
	e.create(m)
	e.waitMembership(m, v1.ReasonReconciled)
	e.waitReconciles("clientmembership", 2)
	statements, api, reads := e.dbStatements(), apiRequests(t), dbOperations(t, "read_the_association")
	e.waitReconciles("clientmembership", 3)
	// One reconcile of the object may have been under way when the counts were taken (its read
	// before, its end after): 3 finished reconciles read at least twice.
	if n := dbOperations(t, "read_the_association") - reads; n < 2 {
		t.Fatalf("%v association reads during 3 resyncs: the counts below would prove nothing", n)
	}
	after := e.dbStatements()
	for _, c := range dbWriteCounters {
		if n := after[c] - statements[c]; n != 0 {
			t.Errorf("%s moved by %d during resyncs of a Ready membership", c, n)
		}
	}
	now := apiRequests(t)
	for _, method := range apiWriteMethods {
		if n := now[method] - api[method]; n != 0 {
			t.Errorf("the manager sent %v %s requests during resyncs of a Ready membership", n, method)
		}
	}
}
