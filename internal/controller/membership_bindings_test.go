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
