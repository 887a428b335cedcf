package controller_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
)

// A value the API server accepts but the panel's store refuses (a NUL character, which the panel's
// forms can never produce) stalls the User as PanelRefused, naming the field and writing nothing;
// fixing the value proceeds.
func TestValueThePanelCannotStoreIsPanelRefused(t *testing.T) {
	e := newEnv(t)
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane@example.com", func(u *v1.User) { u.Spec.LastName = "Doe\x00" })
	e.create(u)
	got := e.waitUser(u, v1.ReasonPanelRefused)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady); !strings.Contains(c.Message, "lastname holds a NUL") {
		t.Errorf("the PanelRefused message does not say which value: %q", c.Message)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionStalled); c == nil || c.Status != "True" {
		t.Errorf("Stalled = %+v, want True (a bad value waits for a change, no retries)", c)
	}
	if n := e.count("SELECT COUNT(*) FROM users"); n != 0 {
		t.Errorf("%d panel users written for a refused value", n)
	}
	update(e, u, func(u *v1.User) { u.Spec.LastName = "Doe" })
	id := e.waitUser(u, v1.ReasonReconciled).Status.UUID

	// The same on an update: the row stays as it was.
	sums := e.tableChecksums()
	update(e, u, func(u *v1.User) { u.Spec.AdminNotes = "ticket\x00OPS-1" })
	got = e.waitUser(u, v1.ReasonPanelRefused)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady); !strings.Contains(c.Message, "admin_notes holds a NUL") {
		t.Errorf("the PanelRefused message does not say which value: %q", c.Message)
	}
	if e.tableChecksums() != sums {
		t.Error("a refused update changed the panel rows")
	}
	if got.Status.UUID != id {
		t.Errorf("status.uuid = %q after a refused update, want %s", got.Status.UUID, id)
	}
}

// A password the person changes in the panel is kept through edits, resyncs, drift repairs and a
// manager restart, and replaced only when the Secret changes.
func TestPasswordChangedInThePanelIsKeptUntilTheSecretChanges(t *testing.T) {
	e := newEnv(t, withResync(300*time.Millisecond))
	u, id := e.readyUserWithPassword("jane", "jane@example.com", testPassword)
	// The person sets a new password in the panel, which stores Laravel's $2y$ hash.
	chosen := "person-Chosen-walnut-64"
	personHash, err := password.Hash(chosen, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(personHash, "$2y$10$") {
		t.Fatal("the panel's hash must be a $2y$ hash")
	}
	if _, err := e.db.Exec("UPDATE users SET password = ?, updated_at = NOW() WHERE uuid = ?", personHash, id); err != nil {
		t.Fatal(err)
	}
	hashes, reconciles := registryValue(t, metricHashes), registryValue(t, metricReconciles, "controller", e.controller("user"))
	compared := registryValue(t, metricResync)

	// An edit of the spec.
	update(e, u, func(u *v1.User) { u.Spec.AdminNotes = "after the person's change" })
	e.waitUser(u, v1.ReasonReconciled)
	// Resyncs compare the User with the panel.
	e.eventually(20*time.Second, func() string {
		if n := registryValue(t, metricResync) - compared; n < 3 {
			return fmt.Sprintf("the resync compared the User %v times, want 3", n)
		}
		return ""
	})
	// Drift the resync repairs, then drift a restarted manager repairs.
	e.driftFirstName(id, "Resync")
	e.waitFirstName(id, "Jane")
	e.shutdown()
	e.driftFirstName(id, "Restart")
	e.start()
	e.waitFirstName(id, "Jane")
	if n := registryValue(t, metricReconciles, "controller", e.controller("user")) - reconciles; n < 3 {
		t.Fatalf("only %v reconciles of the User: the test would prove nothing", n)
	}
	if e.passwordColumn(id) != personHash {
		t.Error("the password the person set in the panel was replaced while the Secret did not change")
	}
	if n := registryValue(t, metricHashes) - hashes; n != 0 {
		t.Errorf("%v bcrypt hashes while the Secret did not change, want 0", n)
	}

	// The Secret changes: its password replaces the person's.
	rotated := "second-Quartz-river-88"
	e.setPassword("jane-password", rotated)
	e.eventually(20*time.Second, func() string {
		if e.passwordColumn(id) == personHash {
			return "the Secret's new password is not in the panel yet"
		}
		return ""
	})
	if !e.phpVerifies(id, rotated) || e.phpVerifies(id, chosen) {
		t.Error("after the Secret changed, PHP must accept its password and refuse the person's")
	}
}

func (e *env) driftFirstName(userUUID, name string) {
	e.t.Helper()
	if _, err := e.db.Exec("UPDATE users SET firstname = ? WHERE uuid = ?", name, userUUID); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) waitFirstName(userUUID, name string) {
	e.t.Helper()
	e.eventually(20*time.Second, func() string {
		if got := e.str("SELECT firstname FROM users WHERE uuid = ?", userUUID); got != name {
			return fmt.Sprintf("firstname of %s is %q, want %q", userUUID, got, name)
		}
		return ""
	})
}

// Neither a manager restart nor a re-bind (status lost, the binding table found again) hashes a
// password again: every User is reconciled after each, and no bcrypt hash is computed and no
// password column changes.
func TestRestartAndRebindDoNotHashAgain(t *testing.T) {
	const n = 20
	e := newEnv(t)
	users := make([]*v1.User, n)
	ids := make([]string, n)
	for i := range users {
		name := fmt.Sprintf("user-%02d", i)
		e.secret(name+"-password", map[string]string{"password": testPassword})
		users[i] = e.newUser(name, name+"@example.com")
		e.create(users[i])
	}
	for i, u := range users {
		ids[i] = e.waitUser(u, v1.ReasonReconciled).Status.UUID
	}
	stored := map[string]string{}
	for _, id := range ids {
		stored[id] = e.passwordColumn(id)
	}
	hashes, reconciles := registryValue(t, metricHashes), registryValue(t, metricReconciles, "controller", e.controller("user"))
	noHashSince := func(what string) {
		t.Helper()
		if d := registryValue(t, metricReconciles, "controller", e.controller("user")) - reconciles; d < n {
			t.Fatalf("%v reconciles after %s, want at least %d", d, what, n)
		}
		if d := registryValue(t, metricHashes) - hashes; d != 0 {
			t.Errorf("%v bcrypt hashes after %s, want 0", d, what)
		}
		changed := 0
		for _, id := range ids {
			if e.passwordColumn(id) != stored[id] {
				changed++
			}
		}
		if changed > 0 {
			t.Errorf("%d of %d password columns changed after %s, want 0", changed, n, what)
		}
		hashes, reconciles = registryValue(t, metricHashes), registryValue(t, metricReconciles, "controller", e.controller("user"))
	}

	// Restart: every panel user drifted while the manager was down, so each User's reconcile
	// after the restart is seen in its row.
	e.shutdown()
	if _, err := e.db.Exec("UPDATE users SET firstname = 'Drifted'"); err != nil {
		t.Fatal(err)
	}
	e.start()
	e.eventually(60*time.Second, func() string {
		if d := e.count("SELECT COUNT(*) FROM users WHERE firstname = 'Drifted'"); d > 0 {
			return fmt.Sprintf("%d of %d Users not reconciled since the restart", d, n)
		}
		return ""
	})
	noHashSince("a restart")

	// Re-bind: the status of every User is lost while the manager is down (a restore that drops
	// status); each finds its panel user through the binding table again.
	e.shutdown()
	for _, u := range users {
		e.clearStatus(u)
	}
	e.start()
	e.eventually(60*time.Second, func() string {
		for i, u := range users {
			got := &v1.User{}
			if err := k8s.Get(e.ctx(), client.ObjectKeyFromObject(u), got); err != nil {
				return err.Error()
			}
			c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
			if got.Status.UUID != ids[i] || c == nil || c.Reason != v1.ReasonReconciled {
				return fmt.Sprintf("User %s not re-bound yet (uuid %q, Ready %+v)", u.Name, got.Status.UUID, c)
			}
		}
		return ""
	})
	noHashSince("a re-bind")
}

// clearStatus empties a User's status, as a restore without status does.
func (e *env) clearStatus(u *v1.User) {
	e.t.Helper()
	got := &v1.User{}
	if err := k8s.Get(e.ctx(), client.ObjectKeyFromObject(u), got); err != nil {
		e.t.Fatal(err)
	}
	got.Status = v1.UserStatus{}
	if err := k8s.Status().Update(e.ctx(), got); err != nil {
		e.t.Fatal(err)
	}
}

// Taking ownership away from the only owner without making someone else the owner is refused
// as OwnerConflict, leaving the row as it was; once another membership takes ownership, the first
// proceeds.
func TestDroppingTheOnlyOwnerWithoutATransferIsOwnerConflict(t *testing.T) {
	e := newEnv(t)
	acme := e.insertClient("Acme Hosting Ltd")
	_, janeID := e.readyUserWithPassword("jane", "jane@example.com", testPassword)
	_, bobID := e.readyUserWithPassword("bob", "bob@example.com", "Granite-owl-5-kettle")
	ownerRow := func(userUUID string) string {
		return e.str("SELECT CONCAT(owner, ' ', permissions) FROM client_x_user WHERE client_uuid = ? AND user_uuid = ?",
			acme, userUUID)
	}
	jane := e.ownerMembership("jane-acme", "jane", acme, true)
	e.waitMembership(jane, v1.ReasonReconciled)
	keys, err := json.Marshal(panel.PermissionKeys)
	if err != nil {
		t.Fatal(err)
	}
	allKeys := "1 " + string(keys)
	if got := ownerRow(janeID); got != allKeys {
		t.Fatalf("jane's row = %s, want owner with every key", got)
	}

	update(e, jane, func(m *v1.ClientMembership) {
		m.Spec.Owner = false
		m.Spec.Permissions = []v1.Permission{"manage-orders"}
	})
	got := e.waitMembership(jane, v1.ReasonOwnerConflict)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionStalled); c == nil || c.Status != "True" {
		t.Errorf("Stalled = %+v, want True", c)
	}
	if got := ownerRow(janeID); got != allKeys {
		t.Errorf("jane's row = %s after a refused drop of ownership, want it unchanged", got)
	}

	bob := e.ownerMembership("bob-acme", "bob", acme, true)
	e.waitMembership(bob, v1.ReasonReconciled)
	e.waitMembership(jane, v1.ReasonReconciled)
	if got := ownerRow(bobID); got != allKeys {
		t.Errorf("bob's row = %s, want owner with every key", got)
	}
	if got := ownerRow(janeID); got != `0 ["manage-orders"]` {
		t.Errorf("jane's row = %s after the transfer, want not owner with manage-orders", got)
	}
}

func (e *env) ownerMembership(name, user, clientUUID string, owner bool) *v1.ClientMembership {
	e.t.Helper()
	m := &v1.ClientMembership{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec: v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: user},
			Client: v1.ClientSelector{UUID: clientUUID}, Owner: owner},
	}
	e.create(m)
	return m
}
