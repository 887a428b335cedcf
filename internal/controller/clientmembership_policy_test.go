package controller_test

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// asTenant labels the test's namespace with testenv.TenantLabel before the manager starts: the
// suite's allow-all policy no longer selects it, and it may do only what the test's own policies
// (env.policy) grant.
func asTenant() envOption {
	return func(e *env) {
		update(e, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, func(ns *corev1.Namespace) {
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			ns.Labels[testenv.TenantLabel] = "true"
		})
	}
}

// policy creates a PanelAccessPolicy (named after the test's namespace) that selects the test's
// namespace by name unless spec says otherwise; it is deleted when the test ends.
func (e *env) policy(name string, spec v1.PanelAccessPolicySpec) *v1.PanelAccessPolicy {
	e.t.Helper()
	if len(spec.Namespaces.Names) == 0 && spec.Namespaces.Selector == nil {
		spec.Namespaces.Names = []string{e.ns}
	}
	p := &v1.PanelAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-" + name}, Spec: spec}
	e.create(p)
	e.t.Cleanup(func() { _ = k8s.Delete(e.ctx(), p) })
	return p
}

// examples are the emails the tests' Users have (readyUser).
var examples = []v1.EmailPattern{"*@example.com"}

// insertPanelUser makes a panel user as the panel UI would, managed by no User.
func (e *env) insertPanelUser(email string) string {
	e.t.Helper()
	id := newUUID()
	if _, err := e.db.Exec("INSERT INTO users (uuid, email, password, firstname, status, created_at, updated_at) "+
		"VALUES (?, ?, 'not-a-hash', 'Victor', 'active', '2026-01-01 00:00:00', '2026-01-01 00:00:00')", id, email); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// ownedInThePanel makes a client owned by a panel user made in the panel UI; it returns both.
func (e *env) ownedInThePanel(company string) (clientUUID, ownerUUID string) {
	e.t.Helper()
	clientUUID, ownerUUID = e.insertClient(company), e.insertPanelUser(strings.ToLower(strings.Fields(company)[0])+"@panel.test")
	if _, err := e.db.Exec("INSERT INTO client_x_user (client_uuid, user_uuid, owner, permissions, created_at, updated_at) "+
		"VALUES (?, ?, 1, ?, '2026-01-01 00:00:00', '2026-01-01 00:00:00')", clientUUID, ownerUUID, allPermissions); err != nil {
		e.t.Fatal(err)
	}
	return clientUUID, ownerUUID
}

// clientRows renders every column of the client's client_x_user rows, and the number of
// activity_logs rows: what a refused membership must leave exactly as it was.
func (e *env) clientRows(clientUUID string) string {
	e.t.Helper()
	rows, err := e.db.Query("SELECT client_uuid, user_uuid, owner, permissions, notifications, created_at, updated_at "+
		"FROM client_x_user WHERE client_uuid = ? ORDER BY user_uuid", clientUUID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	var b strings.Builder
	for rows.Next() {
		var cols [7]any
		ptrs := make([]any, len(cols))
		for i := range cols {
			ptrs[i] = &cols[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			e.t.Fatal(err)
		}
		for _, c := range cols {
			fmt.Fprintf(&b, "%s|", c)
		}
		b.WriteString("\n")
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	fmt.Fprintf(&b, "activity_logs %d", e.count("SELECT COUNT(*) FROM activity_logs"))
	return b.String()
}

// panelOperations counts the panel database operations of the kind done so far (ObserveDatabase).
func panelOperations(t *testing.T, op string) float64 {
	t.Helper()
	return metricValue(t, "puq_user_operator_panel_db_operation_duration_seconds",
		map[string]string{"operation": strings.NewReplacer(" ", "_", "'", "").Replace(op)})
}

func readyMessage(m *v1.ClientMembership) string {
	return meta.FindStatusCondition(m.Status.Conditions, v1.ConditionReady).Message
}

// A tenant granted one client cannot join, own or even see another one: by UUID or by company
// name, the answer is NotPermitted and the client's rows are left exactly as they were.
func TestMembershipOfAClientNotGrantedIsRefusedAndWritesNothing(t *testing.T) {
	e := newEnv(t, asTenant())
	granted := e.insertClient("Granted Ltd")
	victim, _ := e.ownedInThePanel("Victim Ltd")
	e.policy("granted", v1.PanelAccessPolicySpec{Emails: examples, Clients: &v1.ClientGrant{UUIDs: []string{granted},
		Ownership: v1.OwnershipAllowed}, MaxPermissions: v1.AllPermissions})
	_, mallory := e.readyUser("mallory")
	before := e.clientRows(victim)
	// The panel is asked nothing about a client named by uuid before it is granted.
	lookups := func() float64 {
		return panelOperations(t, "find the panel client") + panelOperations(t, "read the association") +
			panelOperations(t, "read the binding of the client's owner")
	}
	lookupsBefore := lookups()

	join := e.membership("join", "mallory", v1.ClientSelector{UUID: victim}, perms(v1.PermissionManageUsers))
	takeover := e.membership("takeover", "mallory", v1.ClientSelector{UUID: victim}, owner)
	byName := e.membership("by-name", "mallory", v1.ClientSelector{CompanyName: "Victim Ltd"}, owner)
	ghost := e.membership("ghost", "mallory", v1.ClientSelector{CompanyName: "Ghost Ltd"}, owner)
	for _, m := range []*v1.ClientMembership{join, takeover, byName, ghost} {
		e.create(m)
	}
	got := map[string]*v1.ClientMembership{}
	for _, m := range []*v1.ClientMembership{join, takeover, byName, ghost} {
		got[m.Name] = e.waitMembership(m, v1.ReasonNotPermitted)
		if s := got[m.Name].Status; s.ClientUUID != "" || s.Client != nil {
			t.Errorf("%s shows the client it is refused: %q %+v", m.Name, s.ClientUUID, s.Client)
		}
	}
	if n := lookups() - lookupsBefore; n != 0 {
		t.Errorf("%v panel lookups of a client not granted", n)
	}
	// A name that matches no client and one that matches a client not granted answer alike.
	exists := strings.ReplaceAll(readyMessage(got["by-name"]), `"Victim Ltd"`, `"NAME"`)
	missing := strings.ReplaceAll(readyMessage(got["ghost"]), `"Ghost Ltd"`, `"NAME"`)
	if exists != missing {
		t.Errorf("the refusals tell an existing client from a missing one:\n%s\n%s", exists, missing)
	}
	if after := e.clientRows(victim); after != before {
		t.Errorf("the client's rows changed:\nbefore %s\nafter  %s", before, after)
	}
	if n := e.count("SELECT COUNT(*) FROM client_x_user WHERE user_uuid = ?", mallory); n != 0 {
		t.Errorf("mallory has %d associations", n)
	}
	text := e.allEventText()
	for _, m := range got {
		text += readyMessage(m) + "\n"
	}
	for _, field := range []string{"TAX-Victim Ltd", "Ann Smith"} {
		if strings.Contains(text, field) {
			t.Errorf("a refusal or event shows the client's %q:\n%s", field, text)
		}
	}
	if msg := readyMessage(got["by-name"]); strings.Contains(msg, victim) {
		t.Errorf("the refusal of a company name shows the UUID it stands for: %s", msg)
	}
}

// owner: true takes a granted client's ownership only where a policy says ownership: Allowed;
// until then the real owner stays the owner, and the denial clears when the policy changes.
func TestOwnershipOnlyWhereAPolicyAllowsIt(t *testing.T) {
	e := newEnv(t, asTenant())
	acme, realOwner := e.ownedInThePanel("Acme Hosting Ltd")
	p := e.policy("acme", v1.PanelAccessPolicySpec{Emails: examples, Clients: &v1.ClientGrant{UUIDs: []string{acme}}})
	_, mallory := e.readyUser("mallory")
	before := e.clientRows(acme)
	m := e.membership("takeover", "mallory", v1.ClientSelector{UUID: acme}, owner)
	e.create(m)
	if msg := readyMessage(e.waitMembership(m, v1.ReasonNotPermitted)); !strings.Contains(msg, "take ownership of client "+acme) {
		t.Errorf("message = %s", msg)
	}
	if after := e.clientRows(acme); after != before {
		t.Errorf("the client's rows changed:\nbefore %s\nafter  %s", before, after)
	}
	update(e, p, func(p *v1.PanelAccessPolicy) { p.Spec.Clients.Ownership = v1.OwnershipAllowed })
	e.waitMembership(m, v1.ReasonReconciled)
	e.waitRow(mallory, acme, "1 "+allPermissions)
	if got := e.row(realOwner, acme); got != "0 "+allPermissions {
		t.Errorf("the previous owner's row = %s, want the panel's transfer", got)
	}
}

// maxPermissions bounds what a membership grants; a refusal names what is missing.
func TestMembershipPermissionsBeyondMaxPermissionsAreRefused(t *testing.T) {
	e := newEnv(t, asTenant())
	acme := e.insertClient("Acme Hosting Ltd")
	e.policy("acme", v1.PanelAccessPolicySpec{Emails: examples, Clients: &v1.ClientGrant{UUIDs: []string{acme}},
		MaxPermissions: []v1.Permission{v1.PermissionManageUsers}})
	_, id := e.readyUser("jane")
	m := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageUsers, v1.PermissionManageOrders))
	e.create(m)
	if msg := readyMessage(e.waitMembership(m, v1.ReasonNotPermitted)); !strings.Contains(msg, "the permissions manage-orders on") {
		t.Errorf("message = %s", msg)
	}
	if got := e.row(id, acme); got != "absent" {
		t.Errorf("client_x_user = %s", got)
	}
	update(e, m, func(m *v1.ClientMembership) { m.Spec.Permissions = []v1.Permission{v1.PermissionManageUsers} })
	e.waitMembership(m, v1.ReasonReconciled)
	e.waitRow(id, acme, `0 ["manage-users"]`)
}

// A denial is looked at again when a policy comes that grants it, and when the namespace gets the
// labels a policy selects.
func TestMembershipDenialClearsWhenAPolicyGrantsIt(t *testing.T) {
	e := newEnv(t, asTenant())
	acme, beta := e.insertClient("Acme Hosting Ltd"), e.insertClient("Beta Ltd")
	e.policy("people", v1.PanelAccessPolicySpec{Emails: examples})
	e.policy("beta", v1.PanelAccessPolicySpec{Clients: &v1.ClientGrant{UUIDs: []string{beta}}, Emails: examples,
		Namespaces: v1.PolicyNamespaces{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"clients": "beta"}}}})
	_, id := e.readyUser("jane")
	ma := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme})
	mb := e.membership("jane-beta", "jane", v1.ClientSelector{CompanyName: "Beta Ltd"})
	e.create(ma)
	e.create(mb)
	e.waitMembership(ma, v1.ReasonNotPermitted)
	e.waitMembership(mb, v1.ReasonNotPermitted)
	e.policy("acme", v1.PanelAccessPolicySpec{Emails: examples, Clients: &v1.ClientGrant{UUIDs: []string{acme}}})
	e.waitMembership(ma, v1.ReasonReconciled)
	e.waitRow(id, acme, "0 []")
	update(e, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, func(ns *corev1.Namespace) {
		ns.Labels["clients"] = "beta"
	})
	e.waitMembership(mb, v1.ReasonReconciled)
	e.waitRow(id, beta, "0 []")
}

// A membership whose namespace loses the client writes nothing more (no drift repaired, no
// status refreshed), and its deletion still removes the association it made.
func TestMembershipThatLostItsGrantWritesNothingButItsDeletionRemovesIt(t *testing.T) {
	e := newEnv(t, asTenant())
	acme := e.insertClient("Acme Hosting Ltd")
	p := e.policy("acme", v1.PanelAccessPolicySpec{Emails: examples, Clients: &v1.ClientGrant{UUIDs: []string{acme}},
		MaxPermissions: v1.AllPermissions})
	_, id := e.readyUser("jane")
	m := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageUsers))
	e.create(m)
	ready := e.waitMembership(m, v1.ReasonReconciled)
	e.waitRow(id, acme, `0 ["manage-users"]`)
	update(e, p, func(p *v1.PanelAccessPolicy) { p.Spec.Clients.UUIDs = []string{newUUID()} })
	e.waitMembership(m, v1.ReasonNotPermitted)
	if _, err := e.db.Exec("UPDATE client_x_user SET permissions = '[\"manage-orders\"]' WHERE user_uuid = ?", id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec("UPDATE clients SET company_name = 'Renamed Ltd' WHERE uuid = ?", acme); err != nil {
		t.Fatal(err)
	}
	// A spec change makes it reconcile; it is judged at the new generation and writes nothing.
	update(e, m, func(m *v1.ClientMembership) { m.Spec.Permissions = []v1.Permission{v1.PermissionManageInvoices} })
	got := e.waitMembership(m, v1.ReasonNotPermitted)
	if row := e.row(id, acme); row != `0 ["manage-orders"]` {
		t.Errorf("client_x_user = %s, want the panel's change left alone", row)
	}
	if got.Status.Client == nil || *got.Status.Client != *ready.Status.Client {
		t.Errorf("status.client = %+v, want it as it was (%+v)", got.Status.Client, ready.Status.Client)
	}
	if err := k8s.Delete(e.ctx(), m); err != nil {
		t.Fatal(err)
	}
	e.waitGone(m)
	if row := e.row(id, acme); row != "absent" {
		t.Errorf("client_x_user = %s after the deletion, want it removed", row)
	}
}

// ownedFromNamespace grants the clients a User of the namespace owns, and not a client owned by a
// panel user made in the panel UI: that one is refused as one that does not exist.
func TestMembershipOfAClientOwnedFromTheNamespace(t *testing.T) {
	e := newEnv(t, asTenant())
	acme := e.insertClient("Acme Hosting Ltd")
	victim, _ := e.ownedInThePanel("Victim Ltd")
	e.policy("own", v1.PanelAccessPolicySpec{Emails: examples, Clients: &v1.ClientGrant{UUIDs: []string{acme},
		Ownership: v1.OwnershipAllowed}})
	e.policy("team", v1.PanelAccessPolicySpec{Emails: examples, Clients: &v1.ClientGrant{OwnedFromNamespace: true},
		MaxPermissions: []v1.Permission{v1.PermissionManageOrders}})
	_, alice := e.readyUser("alice")
	_, bob := e.readyUser("bob")
	owns := e.membership("alice-acme", "alice", v1.ClientSelector{UUID: acme}, owner)
	e.create(owns)
	e.waitRow(alice, acme, "1 "+allPermissions)
	joins := e.membership("bob-acme", "bob", v1.ClientSelector{CompanyName: "Acme Hosting Ltd"}, perms(v1.PermissionManageOrders))
	e.create(joins)
	e.waitMembership(joins, v1.ReasonReconciled)
	e.waitRow(bob, acme, `0 ["manage-orders"]`)
	refused := e.membership("bob-victim", "bob", v1.ClientSelector{UUID: victim}, perms(v1.PermissionManageOrders))
	ghost := e.membership("bob-ghost", "bob", v1.ClientSelector{UUID: newUUID()}, perms(v1.PermissionManageOrders))
	e.create(refused)
	e.create(ghost)
	a := readyMessage(e.waitMembership(refused, v1.ReasonNotPermitted))
	b := readyMessage(e.waitMembership(ghost, v1.ReasonNotPermitted))
	if strings.ReplaceAll(a, victim, "ID") != strings.ReplaceAll(b, ghost.Spec.Client.UUID, "ID") {
		t.Errorf("the refusals tell a client owned elsewhere from a missing one:\n%s\n%s", a, b)
	}
	if got := e.row(bob, victim); got != "absent" {
		t.Errorf("client_x_user = %s", got)
	}
}

// Re-asserting the owner the panel already has needs no ownership grant (issue 15): in a
// namespace granted the client but not its ownership, an owner membership of the user the panel
// has as the client's owner (as kubectl puq import writes it) is Ready with no change to the
// client's rows, while one that would make someone else owner is still refused.
func TestExistingOwnerReassertedWithoutOwnershipGrant(t *testing.T) {
	e := newEnv(t, asTenant())
	acme, ownerUUID := e.ownedInThePanel("Acme Hosting Ltd")
	e.policy("acme", v1.PanelAccessPolicySpec{Emails: []v1.EmailPattern{"*@example.com", "*@panel.test"},
		Adoption: &v1.AdoptionGrant{Mode: v1.AdoptionModeIfEmailAllowed}, Clients: &v1.ClientGrant{UUIDs: []string{acme}}})
	e.secret("acme-owner-password", map[string]string{"password": testPassword})
	ownerUser := e.newUser("acme-owner", "acme@panel.test", adoptIfExists)
	e.create(ownerUser)
	if got := e.waitUser(ownerUser, v1.ReasonReconciled).Status.UUID; got != ownerUUID {
		t.Fatalf("the User manages panel user %s, want the owner %s", got, ownerUUID)
	}
	e.readyUser("mallory")
	before := e.clientRows(acme)

	kept := e.membership("acme-owner-acme", "acme-owner", v1.ClientSelector{UUID: acme}, owner)
	e.create(kept)
	e.waitMembership(kept, v1.ReasonReconciled)
	takeover := e.membership("takeover", "mallory", v1.ClientSelector{UUID: acme}, owner)
	e.create(takeover)
	if msg := readyMessage(e.waitMembership(takeover, v1.ReasonNotPermitted)); !strings.Contains(msg, "take ownership of client "+acme) {
		t.Errorf("the takeover's message = %s", msg)
	}
	if after := e.clientRows(acme); after != before {
		t.Errorf("the client's rows changed:\nbefore %s\nafter  %s", before, after)
	}
	if b, err := e.store.MembershipState(e.ctx(), ownerUUID, acme); err != nil || b.Binding == nil || b.Binding.Name != kept.Name {
		t.Errorf("the owner's association is not bound to %s: %+v, %v", kept.Name, b.Binding, err)
	}
}
