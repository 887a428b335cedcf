package controller_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
)

// adoptIfExists asks to take over a panel user that already has the email: even so, a panel user
// bound to another resource is not taken.
func adoptIfExists(u *v1.User) { u.Spec.Adoption = v1.AdoptionIfExists }

// waitBoundElsewhere waits for BoundToAnotherResource and checks the condition names the holder.
func (e *env) waitBoundElsewhere(u *v1.User, holder string) *v1.User {
	e.t.Helper()
	got := e.waitUser(u, v1.ReasonBoundElsewhere)
	ready := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
	if !strings.Contains(ready.Message, holder) {
		e.t.Errorf("User %s/%s: the BoundToAnotherResource message does not name the holder %s: %q",
			u.Namespace, u.Name, holder, ready.Message)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionStalled); c == nil || c.Status != "True" {
		e.t.Errorf("User %s/%s: Stalled = %+v, want True (it waits for a change, no retries)", u.Namespace, u.Name, c)
	}
	return got
}

// Two managers with the same instance ID, each for its own namespace, on one panel (per-namespace
// installs): a User in the second namespace with the email of the first's panel user is told the
// panel user is another resource's, without which one or where (another tenant's names are not
// its business), and neither manager writes a row.
func TestPanelUserOfAUserInAnotherNamespaceIsBoundToAnotherResourceNamedNowhere(t *testing.T) {
	po, root := newSharedPanel(t)
	a := startEnv(t, po, root)
	b := startEnv(t, po, root)
	ua, id := a.readyUserWithPassword("jane", "jane@example.com", testPassword)
	hash, sums, writes := a.passwordColumn(id), a.tableChecksums(), a.writeStatements()

	b.secret("jane-password", map[string]string{"password": "another-Copper-kettle-31"})
	ub := b.newUser("jane", "Jane@Example.com", adoptIfExists)
	b.create(ub)
	got := b.waitBoundElsewhere(ub, "a User in another namespace")
	if msg := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady).Message; strings.Contains(msg, a.ns) ||
		strings.Contains(msg, id) {
		t.Errorf("the condition of a User in namespace %s names the other namespace's resource or panel user: %q", b.ns, msg)
	}
	if got.Status.UUID != "" {
		t.Errorf("the User bound elsewhere reports panel user %s in status", got.Status.UUID)
	}
	if n := a.writeStatements() - writes; n != 0 {
		t.Errorf("%d INSERT/UPDATE/DELETE statements while a User was refused another's panel user, want 0", n)
	}
	if a.tableChecksums() != sums || a.passwordColumn(id) != hash {
		t.Error("the panel rows changed while a User was refused another's panel user")
	}
	// The holder is untouched and still Ready.
	a.waitUser(ua, v1.ReasonReconciled)
	if bd, err := a.store.GetBinding(a.ctx(), id); err != nil || bd.Namespace != a.ns || bd.Name != "jane" {
		t.Errorf("binding of the panel user = %+v, %v; want %s/jane", bd, err, a.ns)
	}
}

// anotherOperator is what a User is told of a panel user bound by another operator instance or
// cluster: nothing of whose it is.
const anotherOperator = "managed by another operator instance or cluster"

// Two operators with different --instance-id on one panel never take each other's panel users:
// not by email (even with adoption: IfExists), not by a User of the same namespace and name (a
// manager restarted with another instance ID), and deleting such a User leaves the other's panel
// user alone.
func TestInstanceIDsKeepTwoOperatorsOffEachOthersUsers(t *testing.T) {
	po, root := newSharedPanel(t)
	blue := startEnv(t, po, root, withInstanceID("blue"))
	green := startEnv(t, po, root, withInstanceID("green"))
	jane, janeID := blue.readyUserWithPassword("jane", "jane@example.com", testPassword)
	_, bobID := green.readyUserWithPassword("bob", "bob@example.com", "Granite-owl-5-kettle")
	sums, writes := blue.tableChecksums(), blue.writeStatements()

	blue.secret("bob-password", map[string]string{"password": "another-Copper-kettle-31"})
	blueBob := blue.newUser("bob", "bob@example.com", adoptIfExists)
	blue.create(blueBob)
	blue.waitBoundElsewhere(blueBob, anotherOperator)
	green.secret("jane-password", map[string]string{"password": "another-Copper-kettle-31"})
	greenJane := green.newUser("jane", "jane@example.com", adoptIfExists)
	green.create(greenJane)
	green.waitBoundElsewhere(greenJane, anotherOperator)
	if n := blue.writeStatements() - writes; n != 0 {
		t.Errorf("%d INSERT/UPDATE/DELETE statements while each operator was refused the other's user, want 0", n)
	}
	if blue.tableChecksums() != sums {
		t.Error("the panel rows changed while each operator was refused the other's user")
	}

	// Blue's manager comes back as instance green: its User (status naming blue's panel user)
	// is bound elsewhere, and deleting it releases nothing of blue's.
	blue.shutdown()
	blue.opts.InstanceID = "green"
	blue.start()
	blue.waitBoundElsewhere(jane, anotherOperator)
	if err := k8s.Delete(blue.ctx(), jane); err != nil {
		t.Fatal(err)
	}
	blue.waitGone(jane)
	if n := blue.writeStatements() - writes; n != 0 {
		t.Errorf("%d INSERT/UPDATE/DELETE statements after another instance deleted a User bound to blue, want 0", n)
	}
	if blue.tableChecksums() != sums {
		t.Error("deleting, in another instance, a User bound to blue changed the panel rows")
	}
	for id, instance := range map[string]string{janeID: "blue", bobID: "green"} {
		if bd, err := blue.store.GetBinding(blue.ctx(), id); err != nil || bd.InstanceID != instance {
			t.Errorf("binding of panel user %s = %+v, %v; want instance %s", id, bd, err, instance)
		}
	}
}

// A User whose status names a panel user that no binding gives it (a status restored or copied
// from elsewhere) releases nothing when it is deleted: the binding table, not status, says what
// the operator made. The panel user made in the panel UI keeps every row.
func TestDeletingAUserReleasesNothingItsBindingDoesNotName(t *testing.T) {
	e := newEnv(t)
	e.shutdown()
	hash, err := password.Hash("panel-made-Password-1", 4)
	if err != nil {
		t.Fatal(err)
	}
	made, err := e.store.CreateUser(e.ctx(), panel.DesiredUser{Email: "victim@example.com", FirstName: "Made", LastName: "InPanel"}, hash, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane@example.com", func(u *v1.User) { u.Finalizers = []string{controller.UserFinalizer} })
	e.create(u)
	u.Status.UUID = made.UUID
	if err := k8s.Status().Update(e.ctx(), u); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(e.ctx(), u); err != nil {
		t.Fatal(err)
	}
	sums, writes := e.tableChecksums(), e.writeStatements()
	e.start()
	e.waitGone(u)
	if n := e.writeStatements() - writes; n != 0 {
		t.Errorf("%d INSERT/UPDATE/DELETE statements when a User named an unbound panel user in status, want 0", n)
	}
	if e.tableChecksums() != sums || e.count("SELECT COUNT(*) FROM users WHERE uuid = ?", made.UUID) != 1 {
		t.Error("deleting a User released a panel user its binding does not name")
	}
}
