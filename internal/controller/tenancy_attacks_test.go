package controller_test

// The tenant attack suite (issue 13): each test acts as a team would, holding only the shipped
// editor roles and a Secrets Role in its own namespace, and creates every object through its own
// client; the cluster admin writes the PanelAccessPolicies. Each attack is refused with
// NotPermitted (or its own reason) and the panel rows it aimed at stay byte for byte as they were.

import (
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/password"
)

// A team granted *@tenant-b.example asks, with adoption: IfExists, for the email of a panel user
// made in the panel UI (disabled and marked fraud by an admin, with an authenticator and
// activity): refused before any lookup, and not one column of the victim's rows changes, nor any
// row anywhere. With the email granted but adoption not, still refused, still untouched.
func TestTenantCannotTakeOverAPanelUserByAdoption(t *testing.T) {
	e := newEnv(t, asTenantNamespace)
	tn := e.tenantOf(e.ns)
	policy := e.grant(emailsFor([]string{e.ns}, "*@tenant-b.example"))
	v := e.insertVictim("vera@victim.example")
	before := e.panelBefore([]string{v.uuid}, nil)

	u := tn.user("takeover", v.email, adoptIfExists)
	tn.createUser(u)
	e.waitNotPermitted(u, "the email "+v.email)
	before.check("a tenant asked to adopt a panel user whose email no policy grants it")

	// The admin grants the victim's domain, but no adoption.
	update(e, policy, func(p *v1.PanelAccessPolicy) {
		p.Spec.Emails = append(p.Spec.Emails, "*@victim.example")
	})
	got := e.waitNotPermitted(u, "adopt the existing panel user")
	before.check("a tenant asked to adopt a panel user whose email its policy grants, without adoption")
	if got.Status.UUID != "" {
		t.Errorf("the refused User reports panel user %s in status", got.Status.UUID)
	}
}

// Whether the panel holds an email that no policy grants the namespace, the namespace cannot
// tell: the condition is the same word for word (but for the email itself), and names no panel
// user.
func TestDeniedEmailIsNoOracleForWhatThePanelHolds(t *testing.T) {
	e := newEnv(t, asTenantNamespace)
	tn := e.tenantOf(e.ns)
	e.grant(emailsFor([]string{e.ns}, "*@tenant-b.example"))
	v := e.insertVictim("vera@victim.example")
	before := e.panelBefore([]string{v.uuid}, nil)

	taken := tn.user("probe-taken", v.email)
	free := tn.user("probe-free", "nobody@victim.example")
	tn.createUser(taken)
	tn.createUser(free)
	onTaken := strings.ReplaceAll(e.readyMessage(taken, v1.ReasonNotPermitted), v.email, "EMAIL")
	onFree := strings.ReplaceAll(e.readyMessage(free, v1.ReasonNotPermitted), "nobody@victim.example", "EMAIL")
	if onTaken != onFree {
		t.Errorf("the denials tell a taken email from a free one:\ntaken: %s\nfree:  %s", onTaken, onFree)
	}
	if l := leaks(onTaken, v.uuid); len(l) > 0 {
		t.Errorf("the denial names the panel user %v: %s", l, onTaken)
	}
	before.check("a tenant probed emails no policy grants it")
}

// A passwordHash of cost 31 (every login attempt for the email would cost the panel 2^19 of its
// own checks) and one of cost 04 (cheap to crack, and past the password policy) are refused at
// the default range, and nothing is written.
func TestHashCostsOutsideTheRangeAreRefused(t *testing.T) {
	e := newEnv(t, asTenantNamespace, withHashCosts(password.DefaultCostRange))
	tn := e.tenantOf(e.ns)
	e.grant(emailsFor([]string{e.ns}, "*@tenant-b.example"))
	cheap, err := password.Hash(testPassword, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cheap, "$2y$04$") {
		t.Fatal("password.Hash at cost 4 did not return a $2y$04$ hash")
	}
	before := e.panelBefore(nil, nil)
	for name, hash := range map[string]string{"cost31": "$2y$31$" + cheap[7:], "cost04": cheap} {
		tn.secret(name+"-password", map[string]string{v1.PasswordKeyHash: hash})
		u := tn.user(name, name+"@tenant-b.example", func(u *v1.User) { u.Spec.PasswordSecretRef.Key = v1.PasswordKeyHash })
		tn.create(u)
		e.waitUser(u, v1.ReasonHashCostOutOfRange)
	}
	before.check("two Users brought hashes of costs outside the range")
	if n := e.count("SELECT COUNT(*) FROM users WHERE email LIKE '%@tenant-b.example'"); n != 0 {
		t.Errorf("%d panel users made with a hash of a refused cost", n)
	}
}

// Tenant A holds jane@shared.example; tenant B, whose policy grants the same domain, asks for it:
// B is told the email is taken, in its condition and its events, without A's namespace, A's
// User or the panel user. B's weak password is refused without its length.
func TestMessagesToOneTenantNameNothingOfAnother(t *testing.T) {
	nsB := newTenantNamespace(t)
	e := newEnv(t, asTenantNamespace, alsoWatching(nsB))
	a, b := e.tenantOf(e.ns), e.tenantOf(nsB)
	e.grant(emailsFor([]string{a.ns}, "*@shared.example"))
	e.grant(emailsFor([]string{b.ns}, "*@shared.example"))
	holder := a.user("alpha-holder", "jane@shared.example")
	a.createUser(holder)
	id := e.waitUser(holder, v1.ReasonReconciled).Status.UUID

	dup := b.user("jane", "Jane@Shared.example")
	b.createUser(dup)
	msg := e.readyMessage(dup, v1.ReasonDuplicateEmail)
	if l := leaks(msg, a.ns, holder.Name, id); len(l) > 0 {
		t.Errorf("tenant B's condition names %v of tenant A: %s", l, msg)
	}
	b.waitEvent(dup, v1.ReasonDuplicateEmail)
	for _, ev := range b.events() {
		if l := leaks(ev.Note+" "+ev.Reason+" "+ev.Regarding.Name+" "+ev.Regarding.Namespace, a.ns, holder.Name, id); len(l) > 0 {
			t.Errorf("an Event in tenant B's namespace names %v of tenant A: %s %s", l, ev.Reason, ev.Note)
		}
	}

	// Seven characters, under the minimum of 12.
	b.secret("weak-password", map[string]string{"password": "Ab3$xyz"})
	weak := b.user("weak", "weak@shared.example")
	b.create(weak)
	msg = strings.ReplaceAll(e.readyMessage(weak, v1.ReasonWeakPassword), b.ns, "NS")
	if regexp.MustCompile(`\b7\b|\bseven\b`).MatchString(msg) {
		t.Errorf("the WeakPassword message says the password's length: %s", msg)
	}
}

// What a policy grants still works: a namespace granted an email with adoption: IfEmailAllowed
// adopts the unmanaged panel user with that email.
func TestGrantedNamespaceAdoptsAGrantedEmail(t *testing.T) {
	e := newEnv(t, asTenantNamespace)
	tn := e.tenantOf(e.ns)
	spec := emailsFor([]string{e.ns}, "*@tenant-b.example")
	spec.Adoption = &v1.AdoptionGrant{Mode: v1.AdoptionModeIfEmailAllowed}
	e.grant(spec)
	v := e.insertVictim("ours@tenant-b.example")

	u := tn.user("ours", v.email, adoptIfExists)
	tn.createUser(u)
	if got := e.waitUser(u, v1.ReasonReconciled); got.Status.UUID != v.uuid {
		t.Errorf("the User manages panel user %q, want the adopted %s", got.Status.UUID, v.uuid)
	}
	tn.waitEvent(u, "Adopted")
	if bd, err := e.store.GetBinding(e.ctx(), v.uuid); err != nil || bd.Namespace != e.ns || bd.Name != "ours" {
		t.Errorf("binding of the adopted panel user = %+v, %v; want %s/ours", bd, err, e.ns)
	}
}

// Denials follow the grants: a refused User proceeds once the admin writes a policy for its
// namespace, or labels the namespace so that a policy's selector selects it; a Ready User whose
// namespace loses its grant is refused with nothing written to its panel user, and its deletion
// still deletes that panel user (deletionPolicy Delete).
func TestDenialsFollowPoliciesAndNamespaceLabels(t *testing.T) {
	e := newEnv(t, asTenantNamespace)
	tn := e.tenantOf(e.ns)
	team := "team-" + e.ns
	e.grant(v1.PanelAccessPolicySpec{Namespaces: v1.PolicyNamespaces{Selector: &metav1.LabelSelector{
		MatchLabels: map[string]string{"test.puqcloud.com/team": team}}}, Emails: []v1.EmailPattern{"*@by-label.example"}})
	byPolicy := tn.user("by-policy", "jane@by-policy.example")
	byLabel := tn.user("by-label", "jane@by-label.example")
	tn.createUser(byPolicy)
	tn.createUser(byLabel)
	e.waitNotPermitted(byPolicy, "no PanelAccessPolicy selects namespace "+e.ns)
	e.waitNotPermitted(byLabel, "no PanelAccessPolicy selects namespace "+e.ns)

	granted := e.grant(emailsFor([]string{e.ns}, "*@by-policy.example"))
	id := e.waitUser(byPolicy, v1.ReasonReconciled).Status.UUID
	e.labelNamespace(e.ns, "test.puqcloud.com/team", team)
	e.waitUser(byLabel, v1.ReasonReconciled)

	before := e.panelBefore([]string{id}, nil)
	if err := k8s.Delete(e.ctx(), granted); err != nil {
		t.Fatal(err)
	}
	e.waitUser(byPolicy, v1.ReasonNotPermitted)
	before.check("a bound User's namespace lost its grant")

	tn.delete(byPolicy)
	e.waitGone(byPolicy)
	if n := e.count("SELECT COUNT(*) FROM users WHERE uuid = ?", id); n != 0 {
		t.Errorf("the panel user of a deleted User whose grant was withdrawn is still there (%d rows)", n)
	}
}

// A team granted emails but no clients asks to join a client made in the panel UI, by UUID: refused,
// and neither the client nor its real owner's association changes.
func TestTenantCannotJoinAClientNotGrantedToIt(t *testing.T) {
	e := newEnv(t, asTenantNamespace)
	tn := e.tenantOf(e.ns)
	e.grant(emailsFor([]string{e.ns}, "*@tenant-b.example"))
	realOwner, acme := e.victimClient("Victim Hosting Ltd")
	u := tn.user("mallory", "mallory@tenant-b.example")
	tn.createUser(u)
	e.waitUser(u, v1.ReasonReconciled)
	before := e.panelBefore([]string{realOwner}, []string{acme})

	m := e.membership("join", "mallory", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageUsers))
	tn.create(m)
	got := e.waitMembership(m, v1.ReasonNotPermitted)
	before.check("a tenant asked to join a client no policy grants it")
	if got.Status.Client != nil {
		t.Errorf("the refused membership shows the client: %+v", *got.Status.Client)
	}
}

// A team granted a client, but not its ownership, asks for owner: true: refused, and the owner
// made in the panel UI keeps the flag and every permission.
func TestTenantCannotDemoteTheRealOwnerOfAClient(t *testing.T) {
	e := newEnv(t, asTenantNamespace)
	tn := e.tenantOf(e.ns)
	realOwner, acme := e.victimClient("Victim Hosting Ltd")
	spec := emailsFor([]string{e.ns}, "*@tenant-b.example")
	spec.Clients = &v1.ClientGrant{UUIDs: []string{acme}}
	spec.MaxPermissions = []v1.Permission{v1.PermissionManageUsers}
	e.grant(spec)
	u := tn.user("mallory", "mallory@tenant-b.example")
	tn.createUser(u)
	e.waitUser(u, v1.ReasonReconciled)
	before := e.panelBefore([]string{realOwner}, []string{acme})

	m := e.membership("takeover", "mallory", v1.ClientSelector{UUID: acme}, owner)
	tn.create(m)
	e.waitMembership(m, v1.ReasonNotPermitted)
	before.check("a tenant asked to own a client whose ownership no policy grants it")
	if got := e.row(realOwner, acme); got != "1 "+allPermissions {
		t.Errorf("the real owner's association is %s, want 1 with every permission", got)
	}
}

// A team guessing company names learns nothing of the clients it is not granted: a membership
// naming an existing company and one naming no company get the same denial (but for the name),
// and neither shows the client's UUID, tax ID or any other field.
func TestMembershipByGuessedCompanyNameShowsNothingOfTheClient(t *testing.T) {
	e := newEnv(t, asTenantNamespace)
	tn := e.tenantOf(e.ns)
	e.grant(emailsFor([]string{e.ns}, "*@tenant-b.example"))
	_, acme := e.victimClient("Victim Hosting Ltd")
	u := tn.user("mallory", "mallory@tenant-b.example")
	tn.createUser(u)
	e.waitUser(u, v1.ReasonReconciled)

	guessed := e.membership("guessed", "mallory", v1.ClientSelector{CompanyName: "Victim Hosting Ltd"})
	missing := e.membership("missing", "mallory", v1.ClientSelector{CompanyName: "Nobody Hosting Ltd"})
	tn.create(guessed)
	tn.create(missing)
	onGuessed := e.waitMembership(guessed, v1.ReasonNotPermitted)
	onMissing := e.waitMembership(missing, v1.ReasonNotPermitted)
	a := strings.ReplaceAll(meta.FindStatusCondition(onGuessed.Status.Conditions, v1.ConditionReady).Message, "Victim", "NAME")
	b := strings.ReplaceAll(meta.FindStatusCondition(onMissing.Status.Conditions, v1.ConditionReady).Message, "Nobody", "NAME")
	if a != b {
		t.Errorf("the denials tell an existing company from a missing one:\nexisting: %s\nmissing:  %s", a, b)
	}
	if onGuessed.Status.Client != nil || onGuessed.Status.ClientUUID != "" {
		t.Errorf("the refused membership shows the client: uuid %q, %+v", onGuessed.Status.ClientUUID, onGuessed.Status.Client)
	}
	for _, ev := range tn.events() {
		a += " " + ev.Note
	}
	if l := leaks(a, acme, "TAX-Victim", "Ann", "Smith"); len(l) > 0 {
		t.Errorf("the tenant's conditions or events show the guessed client's %v: %s", l, a)
	}
}

// victimClient is a client made in the panel UI and its owner, a panel user no resource manages.
func (e *env) victimClient(company string) (ownerUUID, clientUUID string) {
	e.t.Helper()
	v := e.insertVictim("owner@" + strings.ToLower(strings.Fields(company)[0]) + ".example")
	clientUUID = e.insertClient(company)
	if _, err := e.db.Exec("INSERT INTO client_x_user (client_uuid, user_uuid, owner, permissions, notifications, created_at, "+
		"updated_at) VALUES (?, ?, 1, ?, '[]', '2026-01-02 03:04:05', '2026-01-02 03:04:05')", clientUUID, v.uuid,
		allPermissions); err != nil {
		e.t.Fatal(err)
	}
	return v.uuid, clientUUID
}

// A namespace no policy grants an email cannot keep it from one that is granted it: its User,
// created first and refused, holds nothing; the granted namespace's User, created later, goes
// Ready with its own panel user.
func TestUngrantedUserCreatedFirstDoesNotHoldTheEmail(t *testing.T) {
	nsB := newTenantNamespace(t)
	e := newEnv(t, asTenantNamespace, alsoWatching(nsB))
	a, squatter := e.tenantOf(e.ns), e.tenantOf(nsB)
	e.grant(emailsFor([]string{a.ns}, "*@acme.example"))

	first := squatter.user("ops", "ops@acme.example")
	squatter.createUser(first)
	e.waitNotPermitted(first, "ops@acme.example")
	later := a.user("ops", "OPS@acme.example")
	a.createUser(later)
	if got := e.waitUser(later, v1.ReasonReconciled); got.Status.UUID == "" {
		t.Error("the granted namespace's User is Ready without a panel user")
	}
	e.waitNotPermitted(first, "ops@acme.example")
}

// A namespace that lost the grant of its panel user's email cannot keep that login by moving it
// to an email it is still granted: the email change is refused and the panel user's rows are
// unchanged; granted both, the change goes ahead.
func TestEmailChangeNeedsTheOldEmailGrantedToo(t *testing.T) {
	e := newEnv(t, asTenantNamespace)
	tn := e.tenantOf(e.ns)
	old := e.grant(emailsFor([]string{e.ns}, "*@acme.example"))
	u := tn.user("jane", "jane@acme.example")
	tn.createUser(u)
	id := e.waitUser(u, v1.ReasonReconciled).Status.UUID

	e.grant(emailsFor([]string{e.ns}, "*@a-team.example"))
	if err := k8s.Delete(e.ctx(), old); err != nil {
		t.Fatal(err)
	}
	e.waitNotPermitted(u, "jane@acme.example")
	before := e.panelBefore([]string{id}, nil)
	got := &v1.User{}
	if err := tn.c.Get(e.ctx(), types.NamespacedName{Namespace: u.Namespace, Name: u.Name}, got); err != nil {
		t.Fatal(err)
	}
	got.Spec.Email = "jane@a-team.example"
	if err := tn.c.Update(e.ctx(), got); err != nil {
		t.Fatal(err)
	}
	e.waitNotPermitted(got, "an email change needs both the old and the new email granted")
	before.check("after an email change away from an email the namespace lost")

	e.grant(emailsFor([]string{e.ns}, "*@acme.example"))
	if r := e.waitUser(got, v1.ReasonReconciled); r.Status.UUID != id {
		t.Errorf("after the change the User manages %q, want its panel user %s", r.Status.UUID, id)
	}
}
