package controller_test

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

const allPermissions = `["modify-master-profile","manage-users","manage-services","manage-domains","manage-invoices",` +
	`"manage-support-tickets","manage-affiliate","manage-orders"]`

// readyUser creates a User with its Secret and waits until it is Ready.
func (e *env) readyUser(name string) (*v1.User, string) {
	e.t.Helper()
	e.secret(name+"-password", map[string]string{"password": testPassword})
	u := e.newUser(name, name+"@example.com")
	e.create(u)
	return u, e.waitUser(u, v1.ReasonReconciled).Status.UUID
}

func (e *env) membership(name, user string, sel v1.ClientSelector, mutate ...func(*v1.ClientMembership)) *v1.ClientMembership {
	m := &v1.ClientMembership{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec:       v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: user}, Client: sel},
	}
	for _, f := range mutate {
		f(m)
	}
	return m
}

func perms(p ...v1.Permission) func(*v1.ClientMembership) {
	return func(m *v1.ClientMembership) { m.Spec.Permissions = p }
}

func owner(m *v1.ClientMembership) { m.Spec.Owner = true }

func (e *env) row(userUUID, clientUUID string) string {
	e.t.Helper()
	if e.count("SELECT COUNT(*) FROM client_x_user WHERE user_uuid = ? AND client_uuid = ?", userUUID, clientUUID) == 0 {
		return "absent"
	}
	return e.str("SELECT CONCAT(owner, ' ', permissions) FROM client_x_user WHERE user_uuid = ? AND client_uuid = ?", userUUID, clientUUID)
}

func (e *env) waitRow(userUUID, clientUUID, want string) {
	e.t.Helper()
	e.eventually(20*time.Second, func() string {
		if got := e.row(userUUID, clientUUID); got != want {
			return "client_x_user = " + got + ", want " + want
		}
		return ""
	})
}

func TestMembershipAssociatesAndChangesPermissions(t *testing.T) {
	e := newEnv(t)
	acme := e.insertClient("Acme Hosting Ltd")
	u, id := e.readyUser("jane")
	m := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageOrders, v1.PermissionManageUsers))
	e.create(m)
	got := e.waitMembership(m, v1.ReasonReconciled)
	e.waitRow(id, acme, `0 ["manage-users","manage-orders"]`)
	if got.Status.UserUUID != id || got.Status.ClientUUID != acme || got.Status.Client == nil ||
		got.Status.Client.CompanyName != "Acme Hosting Ltd" || got.Status.Client.Status != "ACTIVE" || got.Status.Client.Name != "Ann Smith" {
		t.Errorf("status = %+v client %+v", got.Status, got.Status.Client)
	}
	if len(got.OwnerReferences) != 1 || got.OwnerReferences[0].Name != "jane" || got.OwnerReferences[0].Kind != "User" {
		t.Errorf("ownerReferences = %+v", got.OwnerReferences)
	}
	update(e, m, func(m *v1.ClientMembership) { m.Spec.Permissions = []v1.Permission{v1.PermissionManageInvoices} })
	e.waitRow(id, acme, `0 ["manage-invoices"]`)
	// The User's status shows its clients, as the panel's User Clients view does.
	e.eventually(20*time.Second, func() string {
		got := e.waitUser(u, v1.ReasonReconciled)
		if got.Status.ClientCount != 1 || len(got.Status.Clients) != 1 || got.Status.Clients[0].UUID != acme ||
			got.Status.Clients[0].TaxID != "TAX-Acme Hosting Ltd" {
			return "User clients not updated"
		}
		return ""
	})
}

func TestMembershipFindsClientByCompanyNameOnceCreated(t *testing.T) {
	e := newEnv(t, withResync(time.Second))
	_, id := e.readyUser("jane")
	m := e.membership("jane-later", "jane", v1.ClientSelector{CompanyName: "Later Ltd"}, perms(v1.PermissionManageServices))
	e.create(m)
	got := e.waitMembership(m, v1.ReasonClientNotFound)
	if msg := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady).Message; !strings.Contains(msg, `"Later Ltd"`) {
		t.Errorf("message = %s", msg)
	}
	later := e.insertClient("Later Ltd")
	e.waitMembership(m, v1.ReasonReconciled)
	e.waitRow(id, later, `0 ["manage-services"]`)
}

func TestMembershipWaitsForItsUser(t *testing.T) {
	e := newEnv(t)
	acme := e.insertClient("Acme Hosting Ltd")
	m := e.membership("early", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageUsers))
	e.create(m)
	e.waitMembership(m, v1.ReasonUserNotFound)
	u := e.newUser("jane", "jane@example.com")
	e.create(u)
	e.waitMembership(m, v1.ReasonUserNotReady)
	e.secret("jane-password", map[string]string{"password": testPassword})
	id := e.waitUser(u, v1.ReasonReconciled).Status.UUID
	e.waitMembership(m, v1.ReasonReconciled)
	e.waitRow(id, acme, `0 ["manage-users"]`)
}

func TestOwnerTransferBetweenMemberships(t *testing.T) {
	e := newEnv(t)
	acme := e.insertClient("Acme Hosting Ltd")
	_, alice := e.readyUser("alice")
	_, bob := e.readyUser("bob")
	// Alice's permissions are ignored while she owns the client, and apply once she does not.
	ma := e.membership("alice-acme", "alice", v1.ClientSelector{UUID: acme}, owner, perms(v1.PermissionManageUsers))
	e.create(ma)
	e.waitMembership(ma, v1.ReasonReconciled)
	e.waitRow(alice, acme, "1 "+allPermissions)
	mb := e.membership("bob-acme", "bob", v1.ClientSelector{CompanyName: "Acme Hosting Ltd"}, perms(v1.PermissionManageOrders))
	e.create(mb)
	e.waitRow(bob, acme, `0 ["manage-orders"]`)
	// Ownership moves to Bob: Alice gives up the claim, Bob takes it.
	update(e, ma, func(m *v1.ClientMembership) { m.Spec.Owner = false })
	update(e, mb, func(m *v1.ClientMembership) { m.Spec.Owner = true })
	e.waitRow(bob, acme, "1 "+allPermissions)
	e.waitRow(alice, acme, `0 ["manage-users"]`)
	e.waitMembership(ma, v1.ReasonReconciled)
	if n := e.count("SELECT COUNT(*) FROM client_x_user WHERE client_uuid = ? AND owner = 1", acme); n != 1 {
		t.Errorf("%d owners", n)
	}
}

func TestOwnerConflictAndDuplicateMembership(t *testing.T) {
	e := newEnv(t)
	acme := e.insertClient("Acme Hosting Ltd")
	_, alice := e.readyUser("alice")
	e.readyUser("bob")
	first := e.membership("alice-owner", "alice", v1.ClientSelector{UUID: acme}, owner)
	e.create(first)
	e.waitMembership(first, v1.ReasonReconciled)
	// The older membership wins, by creationTimestamp and then by namespace/name (OlderThan, see
	// TestEmailHolderIsTheOldestThenByName). Timestamps have one-second resolution, so the later
	// ones may tie with first; their names sort after first's, so the tie-break agrees.
	claim := e.membership("bob-owner", "bob", v1.ClientSelector{UUID: acme}, owner)
	e.create(claim)
	got := e.waitMembership(claim, v1.ReasonOwnerConflict)
	if msg := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady).Message; !strings.Contains(msg, "alice-owner") {
		t.Errorf("message does not name the older claim: %s", msg)
	}
	dup := e.membership("alice-second", "alice", v1.ClientSelector{CompanyName: "Acme Hosting Ltd"}, perms(v1.PermissionManageUsers))
	e.create(dup)
	e.waitMembership(dup, v1.ReasonDuplicateMembership)
	e.waitRow(alice, acme, "1 "+allPermissions)
	// Deleting the duplicate leaves the winner's row alone.
	if err := k8s.Delete(e.ctx(), dup); err != nil {
		t.Fatal(err)
	}
	e.waitGone(dup)
	if got := e.row(alice, acme); got != "1 "+allPermissions {
		t.Errorf("deleting the duplicate touched the row: %s", got)
	}
}

func TestDeletingMemberships(t *testing.T) {
	e := newEnv(t)
	acme := e.insertClient("Acme Hosting Ltd")
	_, alice := e.readyUser("alice")
	_, bob := e.readyUser("bob")
	ma := e.membership("alice-acme", "alice", v1.ClientSelector{UUID: acme}, owner)
	mb := e.membership("bob-acme", "bob", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageUsers))
	e.create(ma)
	e.create(mb)
	e.waitRow(alice, acme, "1 "+allPermissions)
	e.waitRow(bob, acme, `0 ["manage-users"]`)
	if err := k8s.Delete(e.ctx(), mb); err != nil {
		t.Fatal(err)
	}
	e.waitGone(mb)
	e.waitRow(bob, acme, "absent")
	// The client's only owner is not removed...
	if err := k8s.Delete(e.ctx(), ma); err != nil {
		t.Fatal(err)
	}
	got := e.waitRemovalBlocked(ma)
	if msg := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady).Message; !strings.Contains(msg, "Retain") {
		t.Errorf("the message does not say how to unblock: %s", msg)
	}
	// ...until ownership moves to another user.
	mb2 := e.membership("bob-owner", "bob", v1.ClientSelector{UUID: acme}, owner)
	e.create(mb2)
	e.waitRow(bob, acme, "1 "+allPermissions)
	e.waitGone(ma)
	e.waitRow(alice, acme, "absent")
	// Retain leaves the row; a row already gone never blocks.
	mr := e.membership("bob-retain", "alice", v1.ClientSelector{UUID: e.insertClient("Retained Ltd")},
		perms(v1.PermissionManageDomains), func(m *v1.ClientMembership) { m.Spec.DeletionPolicy = v1.MembershipDeletionRetain })
	e.create(mr)
	r := e.waitMembership(mr, v1.ReasonReconciled)
	if err := k8s.Delete(e.ctx(), mr); err != nil {
		t.Fatal(err)
	}
	e.waitGone(mr)
	if e.row(alice, r.Status.ClientUUID) == "absent" {
		t.Error("Retain removed the row")
	}
}

func TestDeletingAUserRemovesItsMembershipsThenTheUser(t *testing.T) {
	e := newEnv(t)
	acme := e.insertClient("Acme Hosting Ltd")
	other := e.insertClient("Other Ltd")
	u, id := e.readyUser("jane")
	m1 := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageUsers))
	m2 := e.membership("jane-other", "jane", v1.ClientSelector{UUID: other}, perms(v1.PermissionManageOrders))
	e.create(m1)
	e.create(m2)
	e.waitRow(id, acme, `0 ["manage-users"]`)
	e.waitRow(id, other, `0 ["manage-orders"]`)
	if err := k8s.Delete(e.ctx(), u); err != nil {
		t.Fatal(err)
	}
	e.waitGone(m1)
	e.waitGone(m2)
	e.waitGone(u)
	if e.count("SELECT COUNT(*) FROM users WHERE uuid = ?", id) != 0 {
		t.Error("the panel user is still there")
	}
}

func TestUserClientsIncludeAssociationsMadeInThePanel(t *testing.T) {
	e := newEnv(t, withResync(time.Second))
	acme := e.insertClient("Acme Hosting Ltd")
	panelMade := e.insertClient("Panel Made Ltd")
	u, id := e.readyUser("jane")
	e.create(e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageUsers)))
	e.waitRow(id, acme, `0 ["manage-users"]`)
	if _, err := e.db.Exec("INSERT INTO client_x_user (client_uuid, user_uuid, owner, permissions) VALUES (?, ?, 1, ?)",
		panelMade, id, allPermissions); err != nil {
		t.Fatal(err)
	}
	e.eventually(20*time.Second, func() string {
		got := e.waitUser(u, v1.ReasonReconciled)
		if got.Status.ClientCount != 2 || len(got.Status.Clients) != 2 || got.Status.Clients[0].UUID != panelMade ||
			!got.Status.Clients[0].Owner || got.Status.Clients[1].UUID != acme {
			return "status.clients does not match the panel"
		}
		return ""
	})
}

func TestPermissionDriftIsRepairedOnResync(t *testing.T) {
	e := newEnv(t, withResync(time.Second))
	acme := e.insertClient("Acme Hosting Ltd")
	_, id := e.readyUser("jane")
	m := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageUsers))
	e.create(m)
	e.waitRow(id, acme, `0 ["manage-users"]`)
	e.waitMembership(m, v1.ReasonReconciled)
	if _, err := e.db.Exec("UPDATE client_x_user SET permissions = '[\"manage-orders\"]' WHERE user_uuid = ?", id); err != nil {
		t.Fatal(err)
	}
	e.waitRow(id, acme, `0 ["manage-users"]`)
	e.eventually(10*time.Second, func() string {
		if !contains(e.eventReasons(m), "DriftCorrected") {
			return "no DriftCorrected event"
		}
		return ""
	})
}

func isReason(conds []metav1.Condition, reason string) bool {
	c := meta.FindStatusCondition(conds, v1.ConditionReady)
	return c != nil && c.Reason == reason
}

// waitRemovalBlocked waits until the deleted membership says the panel refuses to remove its owner.
func (e *env) waitRemovalBlocked(m *v1.ClientMembership) *v1.ClientMembership {
	e.t.Helper()
	got := &v1.ClientMembership{}
	e.eventually(20*time.Second, func() string {
		if err := k8s.Get(e.ctx(), clientKey(m), got); err != nil {
			return err.Error()
		}
		if !isReason(got.Status.Conditions, v1.ReasonOwnerRemovalBlocked) {
			return "no OwnerRemovalBlocked condition"
		}
		return ""
	})
	return got
}

// The panel refuses to remove a client's owner; once ownership is transferred in the panel UI,
// which no watch sees, the membership's deletion proceeds by itself.
func TestOwnerRemovalBlockedProceedsAfterATransferInThePanel(t *testing.T) {
	e := newEnv(t)
	acme := e.insertClient("Acme Hosting Ltd")
	_, alice := e.readyUser("alice")
	_, bob := e.readyUser("bob")
	m := e.membership("alice-acme", "alice", v1.ClientSelector{UUID: acme}, owner)
	e.create(m)
	e.waitRow(alice, acme, "1 "+allPermissions)
	if err := k8s.Delete(e.ctx(), m); err != nil {
		t.Fatal(err)
	}
	e.waitRemovalBlocked(m)
	// The panel's transfer (app/Models/Client.php updateOwner): the new owner gets the flag and
	// every permission, the previous owner keeps every permission and loses the flag.
	tx, err := e.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO client_x_user (client_uuid, user_uuid, owner, permissions) VALUES (?, ?, 1, ?)", []any{acme, bob, allPermissions}},
		{"UPDATE client_x_user SET owner = 0 WHERE client_uuid = ? AND user_uuid = ?", []any{acme, alice}},
	} {
		if _, err := tx.Exec(q.sql, q.args...); err != nil {
			_ = tx.Rollback()
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	e.waitGoneWithin(m, blockedLookAgainWithin)
	e.waitRow(alice, acme, "absent")
	if got := e.row(bob, acme); got != "1 "+allPermissions {
		t.Errorf("the new owner's row changed: %s", got)
	}
}
