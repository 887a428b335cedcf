package v1alpha1_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

const (
	clientA = "0b8f2a4e-3c1d-4e5f-8a9b-0c1d2e3f4a5b"
	clientB = "1c9f3b5f-4d2e-4f60-9bac-1d2e3f4a5b6c"
)

func byUUID(uuid string) v1.ClientSelector { return v1.ClientSelector{UUID: uuid} }

// clientGrant grants the namespaces client uuid with the permissions, and ownership when owner.
func clientGrant(uuid string, owner bool, perms ...v1.Permission) v1.PanelAccessPolicySpec {
	g := &v1.ClientGrant{UUIDs: []string{uuid}, Ownership: v1.OwnershipNever}
	if owner {
		g.Ownership = v1.OwnershipAllowed
	}
	return v1.PanelAccessPolicySpec{Clients: g, MaxPermissions: perms}
}

func mustContain(t *testing.T, msg string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("the refusal lacks %q: %s", w, msg)
		}
	}
}

func TestMembershipWithinItsGrantIsAccepted(t *testing.T) {
	ns := namespace(t)
	policy(t, clientGrant(clientA, true, v1.PermissionManageServices), ns)
	m := membership(ns, "jane-a", "jane", byUUID(clientA))
	m.Spec.Permissions = []v1.Permission{v1.PermissionManageServices}
	mustCreate(t, m)
	owner := membership(ns, "john-a", "john", byUUID(clientA))
	owner.Spec.Owner = true
	mustCreate(t, owner)
}

func TestMembershipOfAClientNotGrantedIsRefused(t *testing.T) {
	ns := namespace(t)
	policy(t, clientGrant(clientA, false), ns)
	msg := refused(t, create(t, membership(ns, "jane-b", "jane", byUUID(clientB))), membershipWebhook)
	mustContain(t, msg, "NotPermitted", "the client "+clientB)
}

func TestMembershipByCompanyNameWhereNoClientIsGrantedIsRefused(t *testing.T) {
	ns := namespace(t)
	policy(t, emailsAt("no-clients.example"), ns)
	msg := refused(t, create(t, membership(ns, "jane-acme", "jane", v1.ClientSelector{CompanyName: "Acme Hosting Ltd"})),
		membershipWebhook)
	mustContain(t, msg, "NotPermitted", `the client "Acme Hosting Ltd"`)
}

// An owner claim where the client is granted but not its ownership is left to the controller:
// it may re-assert the owner the panel already has (as kubectl puq import writes it), which needs
// no grant, and only the panel knows whether it does; the controller refuses it otherwise. An
// owner claim of a client not granted at all is refused here.
func TestOwnerClaimOfAGrantedClientWithoutOwnershipIsLeftToTheController(t *testing.T) {
	ns := namespace(t)
	policy(t, clientGrant(clientA, false), ns)
	m := membership(ns, "jane-a", "jane", byUUID(clientA))
	m.Spec.Owner = true
	mustCreate(t, m)
	b := membership(ns, "jane-b", "jane", byUUID(clientB))
	b.Spec.Owner = true
	msg := refused(t, create(t, b), membershipWebhook)
	mustContain(t, msg, "NotPermitted", "the client "+clientB)
}

func TestMembershipAskingMoreThanMaxPermissionsIsRefused(t *testing.T) {
	ns := namespace(t)
	policy(t, clientGrant(clientA, false, v1.PermissionManageServices), ns)
	m := membership(ns, "jane-a", "jane", byUUID(clientA))
	m.Spec.Permissions = []v1.Permission{v1.PermissionManageServices, v1.PermissionManageInvoices}
	msg := refused(t, create(t, m), membershipWebhook)
	mustContain(t, msg, "NotPermitted", "the permissions manage-invoices on client "+clientA)
	if strings.Contains(msg, "manage-services,") {
		t.Errorf("the refusal names a permission that is granted: %s", msg)
	}

	// Raising the permissions of an accepted membership is judged too.
	m.Spec.Permissions = []v1.Permission{v1.PermissionManageServices}
	mustCreate(t, m)
	m.Spec.Permissions = append(m.Spec.Permissions, v1.PermissionManageOrders)
	mustContain(t, refused(t, k8s.Update(t.Context(), m), membershipWebhook), "NotPermitted", "manage-orders")
}

func TestSecondMembershipOfOneUserToOneClientIsRefused(t *testing.T) {
	ns := namespace(t)
	policy(t, clientGrant(clientA, false), ns)
	mustCreate(t, membership(ns, "jane-a", "jane", byUUID(clientA)))
	msg := refused(t, create(t, membership(ns, "jane-a-again", "jane", byUUID(clientA))), membershipWebhook)
	mustContain(t, msg, "DuplicateMembership", "ClientMembership "+ns+"/jane-a already associates User jane")
	// Another user of the same client is no duplicate.
	mustCreate(t, membership(ns, "john-a", "john", byUUID(clientA)))
}

func TestSecondOwnerOfAClientIsRefusedNamingTheFirstOnlyInItsNamespace(t *testing.T) {
	ownerNS, otherNS := namespace(t), namespace(t)
	policy(t, clientGrant(clientB, true), ownerNS, otherNS)
	first := membership(ownerNS, "jane-b", "jane", byUUID(clientB))
	first.Spec.Owner = true
	mustCreate(t, first)

	same := membership(ownerNS, "john-b", "john", byUUID(clientB))
	same.Spec.Owner = true
	mustContain(t, refused(t, create(t, same), membershipWebhook), "OwnerConflict", "ClientMembership "+ownerNS+"/jane-b")

	other := membership(otherNS, "john-b", "john", byUUID(clientB))
	other.Spec.Owner = true
	msg := refused(t, create(t, other), membershipWebhook)
	mustContain(t, msg, "OwnerConflict", "a ClientMembership in another namespace")
	if strings.Contains(msg, ownerNS) || strings.Contains(msg, "jane-b") {
		t.Errorf("the refusal names the other namespace's membership: %s", msg)
	}
}

func TestMembershipOfAClientNotGrantedLearnsNothingOfItsOwner(t *testing.T) {
	ownerNS, ns := namespace(t), namespace(t)
	policy(t, clientGrant(clientA, true), ownerNS)
	policy(t, clientGrant(clientB, true), ns)
	first := membership(ownerNS, "jane-a", "jane", byUUID(clientA))
	first.Spec.Owner = true
	mustCreate(t, first)

	probe := func(uuid string) string {
		m := membership(ns, "probe", "john", byUUID(uuid))
		m.Spec.Owner = true
		return refused(t, create(t, m), membershipWebhook)
	}
	owned, unowned := probe(clientA), probe("2d0a4c6a-5e3f-4071-8cbd-2e3f4a5b6c7d")
	mustContain(t, owned, "NotPermitted")
	if strings.ReplaceAll(owned, clientA, "2d0a4c6a-5e3f-4071-8cbd-2e3f4a5b6c7d") != unowned {
		t.Errorf("an owned client is refused differently from an unowned one:\n owned: %s\n unowned: %s", owned, unowned)
	}
}

// clientC is a client no test's membership owns.
const clientC = "2d0a4c6a-5e3f-4071-8cbd-2e3f4a5b6c7d"

// byOwner grants the namespaces the clients their Users own, with ownership: a grant the
// webhook can only assume in the request's favour (only the panel knows a client's owner).
func byOwner() v1.PanelAccessPolicySpec {
	return v1.PanelAccessPolicySpec{Clients: &v1.ClientGrant{OwnedFromNamespace: true, Ownership: v1.OwnershipAllowed}}
}

func allowAll() v1.PanelAccessPolicySpec { return v1.PanelAccessPolicySpec{AllowAll: true} }

func byCompany(name string) v1.ClientSelector { return v1.ClientSelector{CompanyName: name} }

func owner(namespace, name, userName string, sel v1.ClientSelector) *v1.ClientMembership {
	m := membership(namespace, name, userName, sel)
	m.Spec.Owner = true
	return m
}

// answer is the webhook's answer to a create: "accepted", or its refusal's message.
func answer(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return "accepted"
	}
	return refused(t, err, membershipWebhook)
}

// An owner membership of a client the namespace is granted only by what the webhook assumes
// (any client, for a company name; its own, for ownedFromNamespace) must not tell it whether
// another namespace owns that client: that would enumerate other tenants' customers.
func TestOwnerProbeOfAClientNotGrantedByItsSpecAnswersAlikeWhetherAnotherNamespaceOwnsIt(t *testing.T) {
	for _, tc := range []struct {
		name             string
		holderGrant      v1.PanelAccessPolicySpec
		probeGrant       v1.PanelAccessPolicySpec
		held, free       v1.ClientSelector
		heldStr, freeStr string
	}{
		{name: "by company name", holderGrant: allowAll(), probeGrant: clientGrant(clientB, true),
			held: byCompany("Victim Corp"), free: byCompany("Nobody Corp"), heldStr: "Victim Corp", freeStr: "Nobody Corp"},
		{name: "by uuid granted ownedFromNamespace", holderGrant: clientGrant(clientA, true), probeGrant: byOwner(),
			held: byUUID(clientA), free: byUUID(clientC), heldStr: clientA, freeStr: clientC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			holderNS, ns := namespace(t), namespace(t)
			policy(t, tc.holderGrant, holderNS)
			policy(t, tc.probeGrant, ns)
			mustCreate(t, owner(holderNS, "victim", "jane", tc.held))

			held := answer(t, create(t, owner(ns, "probe-held", "john", tc.held)))
			free := answer(t, create(t, owner(ns, "probe-free", "john", tc.free)))
			if strings.ReplaceAll(held, tc.heldStr, tc.freeStr) != free {
				t.Errorf("a client another namespace owns is answered differently from one nobody owns, which tells the "+
					"namespace who holds it:\n held: %s\n free: %s", held, free)
			}
		})
	}
}

// A namespace granted a client only by what the webhook assumes cannot squat it: its owner
// membership, made first, does not keep the namespace granted the client from owning it.
func TestOwnerSquattingInAnotherNamespaceDoesNotBlockTheRightfulOwner(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		squatterGrant, ownerGrant v1.PanelAccessPolicySpec
		client                    v1.ClientSelector
	}{
		{name: "by uuid granted ownedFromNamespace", squatterGrant: byOwner(), ownerGrant: clientGrant(clientA, true),
			client: byUUID(clientA)},
		{name: "by company name", squatterGrant: clientGrant(clientB, true), ownerGrant: allowAll(),
			client: byCompany("Victim Corp")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			squatterNS, ownerNS := namespace(t), namespace(t)
			policy(t, tc.squatterGrant, squatterNS)
			policy(t, tc.ownerGrant, ownerNS)
			mustCreate(t, owner(squatterNS, "squatter", "mallory", tc.client))
			mustCreate(t, owner(ownerNS, "rightful", "jane", tc.client))
		})
	}
}

// An owner the controller has accepted (Ready, Reconciled) holds the client whatever grant it
// came by: a second owner granted the client is refused.
func TestOwnerAcceptedByTheControllerInAnotherNamespaceBlocksASecondOwner(t *testing.T) {
	firstNS, ns := namespace(t), namespace(t)
	policy(t, byOwner(), firstNS)
	policy(t, clientGrant(clientA, true), ns)
	first := owner(firstNS, "jane-a", "jane", byUUID(clientA))
	mustCreate(t, first)
	meta.SetStatusCondition(&first.Status.Conditions, metav1.Condition{Type: v1.ConditionReady,
		Status: metav1.ConditionTrue, Reason: v1.ReasonReconciled, Message: "Owner of the client."})
	if err := k8s.Status().Update(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	waitCached(t, first)

	msg := refused(t, create(t, owner(ns, "john-a", "john", byUUID(clientA))), membershipWebhook)
	mustContain(t, msg, "OwnerConflict", "a ClientMembership in another namespace")
}
