package controller_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
)

// Issue 12's windows, each forced rather than hoped for: the panel and the cluster agree whatever
// is lost between them.

// A User whose status write was lost after its panel user was committed (a kill -9, a conflict
// with the deletion) and that is then deleted must not leave a working login behind: deletion
// releases what the binding table says the User holds, not what status says.
func TestUserDeletedAfterALostStatusWriteLeavesNoPanelUser(t *testing.T) {
	e := newEnv(t)
	reached, release, restore := controller.CutAfterTheFirstPanelWrite()
	defer restore()
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane@example.com")
	e.create(u)
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("no reconcile committed jane's panel user within 30s")
	}
	if n := e.count("SELECT COUNT(*) FROM users WHERE email = ?", "jane@example.com"); n != 1 {
		t.Fatalf("%d panel users with jane's email at the cut, want the one just committed", n)
	}
	if err := k8s.Delete(e.ctx(), u); err != nil {
		t.Fatal(err)
	}
	got := &v1.User{}
	if err := k8s.Get(e.ctx(), client.ObjectKeyFromObject(u), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.UUID != "" || got.DeletionTimestamp.IsZero() {
		t.Fatalf("status.uuid = %q, deleting = %v: want no status and a deletion under way, or the test proves nothing",
			got.Status.UUID, !got.DeletionTimestamp.IsZero())
	}
	release()
	e.waitGone(u)
	if n := e.count("SELECT COUNT(*) FROM users WHERE email = ?", "jane@example.com"); n != 0 {
		t.Errorf("%d panel users with jane's email after her User was deleted, want 0: a login with no resource behind it", n)
	}
	if n := e.count("SELECT COUNT(*) FROM puq_operator_bindings WHERE name = ?", "jane"); n != 0 {
		t.Errorf("%d bindings of the deleted User left", n)
	}
}

// A change of fields and password together is one transaction: one UPDATE, one activity row, the
// binding's Secret version with it. Three transactions (the columns, the hash, the binding) could
// be cut between them.
func TestFieldsAndPasswordChangedTogetherAreOneActivityRow(t *testing.T) {
	e := newEnv(t)
	u, id := e.readyUserWithPassword("jane", "jane@example.com", testPassword)
	e.shutdown()
	const newPassword = "quiet-Meadow-4-compass"
	update(e, u, func(u *v1.User) { u.Spec.FirstName = "Janet" })
	e.setPassword("jane-password", newPassword)
	activity := func() int { return e.count("SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ?", id) }
	before := activity()
	e.start()
	e.eventually(30*time.Second, func() string {
		if res := e.login("jane@example.com", newPassword, ""); loggedIn(res) != "" {
			return "the new password does not log in yet"
		}
		if e.str("SELECT firstname FROM users WHERE uuid = ?", id) != "Janet" {
			return "the new first name is not in the panel yet"
		}
		return ""
	})
	// The status patch follows the panel write, and the status of before the restart is Ready too:
	// wait for it to name the Secret version the binding now holds.
	version := ""
	e.eventually(20*time.Second, func() string {
		got := e.waitUser(u, v1.ReasonReconciled)
		version = e.str("SELECT secret_version FROM puq_operator_bindings WHERE user_uuid = ?", id)
		if version == "" || version != got.Status.PasswordSecretVersion {
			return fmt.Sprintf("the binding records Secret version %q, status %q: the version was not written with the password",
				version, got.Status.PasswordSecretVersion)
		}
		return ""
	})
	if n := activity() - before; n != 1 {
		t.Errorf("%d activity rows for one change of the first name and the password, want 1", n)
	}
	if n := e.count("SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ? AND action = 'update'", id); n != 1 {
		t.Fatalf("%d update activity rows, want 1", n)
	}
	row := e.str("SELECT model_new_data FROM activity_logs WHERE model_uuid = ? AND action = 'update'", id)
	if !strings.Contains(row, `"firstname":"Janet"`) || strings.Contains(row, "$2y$") {
		t.Errorf("the activity row is %s: want the new first name and no password hash", row)
	}
}

// A status naming a panel user that is not bound to the User (copied from another cluster's
// backup, or left by a released User) does not let the User take that panel user over: only
// adoption does.
func TestStatusNamingAnUnboundPanelUserDoesNotTakeItOver(t *testing.T) {
	e := newEnv(t)
	other, otherID := e.readyUserWithPassword("other", "other@example.com", testPassword)
	update(e, other, func(u *v1.User) { u.Spec.DeletionPolicy = v1.UserDeletionRetain })
	if err := k8s.Delete(e.ctx(), other); err != nil {
		t.Fatal(err)
	}
	e.waitGone(other)
	e.shutdown()
	e.secret("mallory-password", map[string]string{"password": testPassword})
	m := e.newUser("mallory", "mallory@example.com")
	e.create(m)
	got := &v1.User{}
	if err := k8s.Get(e.ctx(), client.ObjectKeyFromObject(m), got); err != nil {
		t.Fatal(err)
	}
	got.Status.UUID = otherID
	if err := k8s.Status().Update(e.ctx(), got); err != nil {
		t.Fatal(err)
	}
	checksum := e.tableChecksums()
	e.start()
	got = e.waitUser(m, v1.ReasonEmailTakenInPanel)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady); !strings.Contains(c.Message, "status.uuid") {
		t.Errorf("Ready says %q; want it to say status.uuid names a panel user not bound to this User", c.Message)
	}
	if e.tableChecksums() != checksum {
		t.Error("the panel changed: the User took over a panel user its status named without adopting it")
	}
	if e.str("SELECT email FROM users WHERE uuid = ?", otherID) != "other@example.com" {
		t.Error("the other panel user's email changed")
	}
}

// Removing a person from git ends their access even when the panel keeps their panel user (it
// belongs to a client made in the panel UI): the default policy deletes where the panel allows
// and otherwise disables the login and releases it, so the User goes and the login is refused.
func TestDeletingAUserThePanelKeepsDisablesItsLoginAndReleasesIt(t *testing.T) {
	e := newEnv(t)
	u, id := e.readyUser("jane")
	clientUUID := e.insertClient("Made In Panel Ltd")
	if _, err := e.db.Exec("INSERT INTO client_x_user (client_uuid, user_uuid, owner, permissions) VALUES (?, ?, 0, '[]')",
		clientUUID, id); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(e.ctx(), u); err != nil {
		t.Fatal(err)
	}
	e.waitGone(u)
	if got := e.str("SELECT CONCAT(status, '/', `disable`) FROM users WHERE uuid = ?", id); got != "inactive/1" {
		t.Errorf("the kept panel user is %q, want inactive/1", got)
	}
	if res := e.login("jane@example.com", testPassword, ""); res.OK || res.Message != "Your account is disabled" {
		t.Errorf("jane's login after her User was deleted: %s; want \"Your account is disabled\"", loginOutcome(res))
	}
	if n := e.count("SELECT COUNT(*) FROM puq_operator_bindings WHERE user_uuid = ?", id); n != 0 {
		t.Error("the kept panel user is still bound to the deleted User")
	}
	if n := e.count("SELECT COUNT(*) FROM client_x_user WHERE user_uuid = ?", id); n != 1 {
		t.Error("the client made in the panel lost its user")
	}
	if !strings.Contains(e.allEventText(), "Made In Panel Ltd") {
		t.Error("no event names the client that kept the panel user")
	}
}

// While a deletion waits for the User's ClientMemberships, the login is already disabled.
func TestLoginDisabledWhileTheDeletionWaitsForMemberships(t *testing.T) {
	e := newEnv(t)
	u, id := e.readyUser("jane")
	acme := e.insertClient("Acme")
	m := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme})
	m.Finalizers = []string{"test.puqcloud.com/hold"}
	e.create(m)
	e.waitMembership(m, v1.ReasonReconciled)
	if err := k8s.Delete(e.ctx(), u); err != nil {
		t.Fatal(err)
	}
	e.eventually(30*time.Second, func() string {
		if got := e.str("SELECT CONCAT(status, '/', `disable`) FROM users WHERE uuid = ?", id); got != "inactive/1" {
			return "the panel user is " + got + " while its User's deletion waits, want inactive/1"
		}
		return ""
	})
	got := e.waitUser(u, v1.ReasonDeletionBlocked)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady); !strings.Contains(c.Message, "disabled") {
		t.Errorf("Ready says %q; want it to say the login is disabled meanwhile", c.Message)
	}
	if res := e.login("jane@example.com", testPassword, ""); res.OK {
		t.Error("jane still logs in while her User is being deleted")
	}
	update(e, m, func(m *v1.ClientMembership) {
		m.Finalizers = slices.DeleteFunc(m.Finalizers, func(f string) bool { return f == "test.puqcloud.com/hold" })
	})
	e.waitGone(u)
	if n := e.count("SELECT COUNT(*) FROM users WHERE uuid = ?", id); n != 0 {
		t.Error("the panel user is still there after its memberships went")
	}
}

// A User of a rebuilt cluster claims the previous cluster's binding of its name
// (--previous-cluster-id); deleted before its first write (its Secret had not arrived), it still
// releases that panel user: deletion matches bindings as the reconcile claims them. A User
// re-created under the name of one whose panel side was abandoned in this cluster claims nothing,
// and its deletion releases nothing (TestRecreatedUserUnderAnOldNameInheritsNothing).
func TestUserDeletedBeforeItsFirstWriteReleasesThePreviousClustersBindingItClaimed(t *testing.T) {
	e := newEnv(t, withCluster("cluster-a"))
	u, id := e.readyUser("jane")
	update(e, u, func(u *v1.User) {
		if u.Annotations == nil {
			u.Annotations = map[string]string{}
		}
		u.Annotations[v1.AnnotationAbandon] = "true"
	})
	if err := k8s.Delete(e.ctx(), u); err != nil {
		t.Fatal(err)
	}
	e.waitGone(u)
	if n := e.count("SELECT COUNT(*) FROM puq_operator_bindings WHERE user_uuid = ?", id); n != 1 {
		t.Fatalf("%d bindings of the abandoned panel user, want 1", n)
	}
	e.shutdown()
	e.opts.ClusterID, e.opts.PreviousClusterID = "cluster-b", "cluster-a"
	e.start()
	again := e.newUser("jane", "jane@example.com", func(u *v1.User) { u.Spec.PasswordSecretRef.Name = "not-there-yet" })
	e.create(again)
	e.waitUser(again, v1.ReasonSecretNotFound)
	if err := k8s.Delete(e.ctx(), again); err != nil {
		t.Fatal(err)
	}
	e.waitGone(again)
	if n := e.count("SELECT COUNT(*) FROM users WHERE uuid = ?", id); n != 0 {
		t.Error("the panel user the restored User claimed by name outlived it: a login with no resource behind it")
	}
}
