package tenancy_test

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
)

const (
	clientA = "0b8f2a4e-3c1d-4e5f-8a9b-0c1d2e3f4a5b"
	clientB = "1c9f3b5f-4d2e-4f60-9bac-1d2e3f4a5b6c"
)

// policy is a PanelAccessPolicy named name selecting the namespace team-a, changed by mutate.
func policy(name string, mutate ...func(*v1.PanelAccessPolicySpec)) v1.PanelAccessPolicy {
	p := v1.PanelAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PanelAccessPolicySpec{Namespaces: v1.PolicyNamespaces{Names: []string{"team-a"}}}}
	for _, m := range mutate {
		m(&p.Spec)
	}
	return p
}

func emails(patterns ...v1.EmailPattern) func(*v1.PanelAccessPolicySpec) {
	return func(s *v1.PanelAccessPolicySpec) { s.Emails = patterns }
}

func adoption(mode v1.AdoptionMode, patterns ...v1.EmailPattern) func(*v1.PanelAccessPolicySpec) {
	return func(s *v1.PanelAccessPolicySpec) { s.Adoption = &v1.AdoptionGrant{Mode: mode, Emails: patterns} }
}

func clients(c v1.ClientGrant, perms ...v1.Permission) func(*v1.PanelAccessPolicySpec) {
	return func(s *v1.PanelAccessPolicySpec) { s.Clients, s.MaxPermissions = &c, perms }
}

func allowAll(s *v1.PanelAccessPolicySpec) { s.AllowAll = true }

func selector(sel *metav1.LabelSelector, names ...string) func(*v1.PanelAccessPolicySpec) {
	return func(s *v1.PanelAccessPolicySpec) { s.Namespaces = v1.PolicyNamespaces{Names: names, Selector: sel} }
}

func TestSelectsByNameAndByLabels(t *testing.T) {
	teamLabel := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	cases := []struct {
		name   string
		policy v1.PanelAccessPolicy
		ns     string
		labels map[string]string
		want   bool
	}{
		{"listed by name", policy("p"), "team-a", nil, true},
		{"not listed, no selector", policy("p"), "team-b", map[string]string{"team": "a"}, false},
		{"labels match the selector", policy("p", selector(teamLabel)), "team-b", map[string]string{"team": "a"}, true},
		{"labels differ", policy("p", selector(teamLabel)), "team-b", map[string]string{"team": "b"}, false},
		{"no labels", policy("p", selector(teamLabel)), "team-b", nil, false},
		{"names or selector: by name", policy("p", selector(teamLabel, "team-c")), "team-c", nil, true},
		{"names or selector: by labels", policy("p", selector(teamLabel, "team-c")), "team-d", map[string]string{"team": "a"}, true},
		{"empty selector selects every namespace", policy("p", selector(&metav1.LabelSelector{})), "anything", nil, true},
		{"match expression", policy("p", selector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"gold", "silver"}}}})),
			"team-e", map[string]string{"tier": "silver"}, true},
		{"invalid selector selects nothing, not even by name", policy("p", selector(&metav1.LabelSelector{
			MatchLabels: map[string]string{"not a key!": "x"}}, "team-a")), "team-a", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tenancy.Selects(&tc.policy, tc.ns, tc.labels); got != tc.want {
				t.Errorf("Selects(%s, %v) = %v, want %v", tc.ns, tc.labels, got, tc.want)
			}
		})
	}
}

func TestSelectorErrorNamesTheField(t *testing.T) {
	bad := policy("p", selector(&metav1.LabelSelector{MatchLabels: map[string]string{"not a key!": "x"}}))
	if err := tenancy.SelectorError(&bad); err == nil || !strings.Contains(err.Error(), "spec.namespaces.selector") {
		t.Errorf("SelectorError = %v, want an error naming spec.namespaces.selector", err)
	}
	good := policy("p", selector(&metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}))
	if err := tenancy.SelectorError(&good); err != nil {
		t.Errorf("SelectorError of a valid selector = %v", err)
	}
}

// fold asserts the premise of a folding case: the panel holds a and b as one email.
func fold(t *testing.T, a, b string) {
	t.Helper()
	if panel.NormalizeEmail(a) != panel.NormalizeEmail(b) {
		t.Fatalf("premise: %q and %q are not one email to the panel", a, b)
	}
}

func TestEmailPatterns(t *testing.T) {
	cases := []struct {
		name     string
		patterns []v1.EmailPattern
		email    string
		want     bool
	}{
		{"exact address", []v1.EmailPattern{"jane@acme.io"}, "jane@acme.io", true},
		{"exact address, other local part", []v1.EmailPattern{"jane@acme.io"}, "john@acme.io", false},
		{"exact address, other domain", []v1.EmailPattern{"jane@acme.io"}, "jane@acme.com", false},
		{"any address at the domain", []v1.EmailPattern{"*@acme.io"}, "john.smith+ops@acme.io", true},
		{"the domain as a suffix of another", []v1.EmailPattern{"*@acme.io"}, "jane@evilacme.io", false},
		{"the domain followed by more", []v1.EmailPattern{"*@acme.io"}, "jane@acme.io.evil.com", false},
		{"the domain in the local part", []v1.EmailPattern{"*@acme.io"}, "acme.io@evil.com", false},
		{"subdomain", []v1.EmailPattern{"*@*.acme.io"}, "jane@eu.acme.io", true},
		{"deeper subdomain", []v1.EmailPattern{"*@*.acme.io"}, "jane@a.eu.acme.io", true},
		{"subdomain pattern excludes the apex", []v1.EmailPattern{"*@*.acme.io"}, "jane@acme.io", false},
		{"subdomain pattern and a look-alike", []v1.EmailPattern{"*@*.acme.io"}, "jane@evilacme.io", false},
		{"local part prefix", []v1.EmailPattern{"ops-*@acme.io"}, "ops-jane@acme.io", true},
		{"local part prefix, other prefix", []v1.EmailPattern{"ops-*@acme.io"}, "dev-jane@acme.io", false},
		{"local part prefix and suffix", []v1.EmailPattern{"ops-*-eu@acme.io"}, "ops-jane-eu@acme.io", true},
		{"local part pieces may not overlap", []v1.EmailPattern{"ab*ba@acme.io"}, "aba@acme.io", false},
		{"several pieces in order", []v1.EmailPattern{"a*b*c@acme.io"}, "axxbyyc@acme.io", true},
		{"several pieces out of order", []v1.EmailPattern{"a*b*c@acme.io"}, "acxxb@acme.io", false},
		{"any of several patterns", []v1.EmailPattern{"*@acme.com", "jane@acme.io"}, "jane@acme.io", true},
		{"no pattern", nil, "jane@acme.io", false},
		{"not an email", []v1.EmailPattern{"*@acme.io"}, "acme.io", false},
		{"last @ decides the domain", []v1.EmailPattern{"*@acme.io"}, "jane@acme.io@evil.com", false},

		// Folding: what the panel holds as one account, the policy treats as one email.
		{"upper case email", []v1.EmailPattern{"jane@acme.io"}, "JANE@ACME.IO", true},
		{"upper case pattern", []v1.EmailPattern{"*@ACME.IO"}, "jane@acme.io", true},
		{"trailing spaces", []v1.EmailPattern{"jane@acme.io"}, "jane@acme.io   ", true},
		{"fullwidth letters", []v1.EmailPattern{"jane@acme.io"}, "ｊａｎｅ@ａｃｍｅ.ｉｏ", true},
		{"fullwidth letters cannot pass for another domain", []v1.EmailPattern{"*@acme.io"}, "jane@ｅｖｉｌ.io", false},
		{"fullwidth at sign", []v1.EmailPattern{"*@acme.io"}, "jane＠acme.io", true},
		{"fullwidth at sign after the domain", []v1.EmailPattern{"*@acme.io"}, "jane@acme.io＠evil.com", false},
		{"accents", []v1.EmailPattern{"rene@acme.io"}, "René@acme.io", true},
		{"sharp s is ss", []v1.EmailPattern{"strasse@acme.io"}, "straße@acme.io", true},
		{"sharp s against a glob piece", []v1.EmailPattern{"s*x@acme.io"}, "ßx@acme.io", true},
		{"zero-width space", []v1.EmailPattern{"jane@acme.io"}, "ja\u200bne@acme.io", true},
		{"space inside the local part is not trailing", []v1.EmailPattern{"jane@acme.io"}, "jane @acme.io", false},
		{"fullwidth subdomain", []v1.EmailPattern{"*@*.acme.io"}, "jane@ｅｕ．acme.io", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := tenancy.For([]v1.PanelAccessPolicy{policy("p", emails(tc.patterns...))}, "team-a", nil)
			err := g.Email(tc.email)
			if (err == nil) != tc.want {
				t.Errorf("Email(%q) with %v = %v, want allowed %v", tc.email, tc.patterns, err, tc.want)
			}
		})
	}
}

// TestFoldingPremises checks that the folding cases above test what they say: the panel holds
// each pair as one email.
func TestFoldingPremises(t *testing.T) {
	fold(t, "JANE@ACME.IO", "jane@acme.io")
	fold(t, "jane@acme.io   ", "jane@acme.io")
	fold(t, "ｊａｎｅ@ａｃｍｅ.ｉｏ", "jane@acme.io")
	fold(t, "jane＠acme.io", "jane@acme.io")
	fold(t, "René@acme.io", "rene@acme.io")
	fold(t, "straße@acme.io", "strasse@acme.io")
	fold(t, "ja\u200bne@acme.io", "jane@acme.io")
	fold(t, "jane@ｅｕ．acme.io", "jane@eu.acme.io")
}

// TestGlobNeverMatchesFromTheMiddleOfACharacter: a CJK ideograph weighs two weights; a piece must
// not match from its second one. U+7B40 weighs FB40 FB40 and U+7FFD weighs FB40 FFFD, so the
// weights of "a筀翽" end with those of "筀😀" (FB40 FB40 FFFD) one weight into 筀; yet no spelling
// of "a筀翽" ends with "筀😀".
func TestGlobNeverMatchesFromTheMiddleOfACharacter(t *testing.T) {
	if !strings.HasSuffix(panel.Fold("a筀翽"), panel.Fold("筀😀")) {
		t.Fatal("premise: the weights of a筀翽 do not end with those of 筀😀")
	}
	g := tenancy.For([]v1.PanelAccessPolicy{policy("p", emails("*筀😀@acme.io"))}, "team-a", nil)
	if err := g.Email("a筀翽@acme.io"); err == nil {
		t.Error("*筀😀@acme.io granted a筀翽@acme.io")
	}
	if err := g.Email("a筀😀@acme.io"); err != nil {
		t.Errorf("*筀😀@acme.io refused a筀😀@acme.io: %v", err)
	}
}

// TestWeightStartsHoldForEveryCharacter checks what the glob relies on, for every BMP character:
// it weighs either weights below 0x8000 that are not the first of an implicit pair, or pairs
// whose first weight is one of the six implicit bases and whose second is 0x8000 or more.
func TestWeightStartsHoldForEveryCharacter(t *testing.T) {
	bases := map[uint16]bool{0xFB40: true, 0xFB41: true, 0xFB80: true, 0xFB81: true, 0xFBC0: true, 0xFBC1: true}
	tail := panel.Fold("a")
	for r := range rune(0x10000) {
		if r >= 0xD800 && r < 0xE000 {
			continue
		}
		f := panel.Fold(string(r) + "a") // "a" keeps a space's weight from being trimmed
		f = f[:len(f)-len(tail)]
		for i := 0; i+1 < len(f); i += 2 {
			w := uint16(f[i])<<8 | uint16(f[i+1])
			switch {
			case bases[w]:
				if i+3 >= len(f) || uint16(f[i+2]) < 0x80 {
					t.Fatalf("U+%04X: implicit weight %04X without a second weight of 0x8000 or more", r, w)
				}
				i += 2
			case w >= 0x8000:
				t.Fatalf("U+%04X: weight %04X of 0x8000 or more outside an implicit pair", r, w)
			}
		}
	}
}

func TestAdoption(t *testing.T) {
	cases := []struct {
		name     string
		policies []v1.PanelAccessPolicy
		email    string
		want     bool
		message  string // a fragment of the denial
	}{
		{"no adoption grant", []v1.PanelAccessPolicy{policy("p", emails("*@acme.io"))}, "jane@acme.io", false,
			"spec.adoption.mode: IfEmailAllowed"},
		{"mode Never", []v1.PanelAccessPolicy{policy("p", emails("*@acme.io"), adoption(v1.AdoptionModeNever))},
			"jane@acme.io", false, "adopt"},
		{"IfEmailAllowed and the email is granted", []v1.PanelAccessPolicy{policy("p", emails("*@acme.io"),
			adoption(v1.AdoptionModeIfEmailAllowed))}, "jane@acme.io", true, ""},
		{"IfEmailAllowed, folded email", []v1.PanelAccessPolicy{policy("p", emails("*@acme.io"),
			adoption(v1.AdoptionModeIfEmailAllowed))}, "JANE@ＡＣＭＥ.IO ", true, ""},
		{"IfEmailAllowed but the email is not granted", []v1.PanelAccessPolicy{policy("p", emails("*@acme.io"),
			adoption(v1.AdoptionModeIfEmailAllowed))}, "jane@other.io", false, "spec.emails"},
		{"narrowed by adoption.emails: inside", []v1.PanelAccessPolicy{policy("p", emails("*@acme.io"),
			adoption(v1.AdoptionModeIfEmailAllowed, "legacy-*@acme.io"))}, "legacy-jane@acme.io", true, ""},
		{"narrowed by adoption.emails: outside", []v1.PanelAccessPolicy{policy("p", emails("*@acme.io"),
			adoption(v1.AdoptionModeIfEmailAllowed, "legacy-*@acme.io"))}, "jane@acme.io", false, "adopt"},
		{"adoption.emails never widen spec.emails", []v1.PanelAccessPolicy{policy("p", emails("*@acme.io"),
			adoption(v1.AdoptionModeIfEmailAllowed, "*@other.io"))}, "jane@other.io", false, "spec.emails"},
		{"one policy grants the email, another adoption of other emails", []v1.PanelAccessPolicy{
			policy("emails", emails("*@acme.io")),
			policy("adopt", emails("*@other.io"), adoption(v1.AdoptionModeIfEmailAllowed))}, "jane@acme.io", false, "adopt"},
		{"allowAll", []v1.PanelAccessPolicy{policy("p", allowAll)}, "anyone@anywhere.io", true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tenancy.For(tc.policies, "team-a", nil).Adoption(tc.email)
			checkDecision(t, err, tc.want, tc.message)
		})
	}
}

func TestMembership(t *testing.T) {
	byUUID := v1.ClientGrant{UUIDs: []string{clientA}}
	owned := v1.ClientGrant{OwnedFromNamespace: true}
	cases := []struct {
		name     string
		policies []v1.PanelAccessPolicy
		req      tenancy.MembershipRequest
		want     bool
		message  string
	}{
		{"listed client, no permissions", []v1.PanelAccessPolicy{policy("p", clients(byUUID))},
			tenancy.MembershipRequest{ClientUUID: clientA}, true, ""},
		{"listed client, upper case UUID", []v1.PanelAccessPolicy{policy("p", clients(byUUID))},
			tenancy.MembershipRequest{ClientUUID: strings.ToUpper(clientA)}, true, ""},
		{"unlisted client", []v1.PanelAccessPolicy{policy("p", clients(byUUID))},
			tenancy.MembershipRequest{ClientUUID: clientB}, false, "the client " + clientB},
		{"permissions within maxPermissions", []v1.PanelAccessPolicy{policy("p", clients(byUUID,
			v1.PermissionManageServices, v1.PermissionManageInvoices))},
			tenancy.MembershipRequest{ClientUUID: clientA, Permissions: []v1.Permission{v1.PermissionManageServices}}, true, ""},
		{"permissions beyond maxPermissions", []v1.PanelAccessPolicy{policy("p", clients(byUUID, v1.PermissionManageServices))},
			tenancy.MembershipRequest{ClientUUID: clientA, Permissions: []v1.Permission{v1.PermissionManageOrders,
				v1.PermissionManageServices, v1.PermissionManageUsers}}, false, "permissions manage-users, manage-orders on client"},
		{"owner without ownership", []v1.PanelAccessPolicy{policy("p", clients(byUUID, v1.AllPermissions...))},
			tenancy.MembershipRequest{ClientUUID: clientA, Owner: true}, false, "spec.clients.ownership: Allowed"},
		{"owner with ownership", []v1.PanelAccessPolicy{policy("p", clients(v1.ClientGrant{UUIDs: []string{clientA},
			Ownership: v1.OwnershipAllowed}))}, tenancy.MembershipRequest{ClientUUID: clientA, Owner: true}, true, ""},
		{"ownership of an unlisted client", []v1.PanelAccessPolicy{policy("p", clients(v1.ClientGrant{UUIDs: []string{clientA},
			Ownership: v1.OwnershipAllowed}))}, tenancy.MembershipRequest{ClientUUID: clientB, Owner: true}, false, "the client"},
		{"owned from the namespace", []v1.PanelAccessPolicy{policy("p", clients(owned))},
			tenancy.MembershipRequest{ClientUUID: clientB, OwnerNamespace: "team-a"}, true, ""},
		{"owned from another namespace", []v1.PanelAccessPolicy{policy("p", clients(owned))},
			tenancy.MembershipRequest{ClientUUID: clientB, OwnerNamespace: "team-b"}, false, "the client"},
		{"owned by nobody managed", []v1.PanelAccessPolicy{policy("p", clients(owned))},
			tenancy.MembershipRequest{ClientUUID: clientB}, false, "the client"},
		{"ownership of a client owned from the namespace", []v1.PanelAccessPolicy{policy("p", clients(v1.ClientGrant{
			OwnedFromNamespace: true, Ownership: v1.OwnershipAllowed}))},
			tenancy.MembershipRequest{ClientUUID: clientB, OwnerNamespace: "team-a", Owner: true}, true, ""},
		{"allowAll", []v1.PanelAccessPolicy{policy("p", allowAll)}, tenancy.MembershipRequest{ClientUUID: clientB, Owner: true,
			Permissions: v1.AllPermissions}, true, ""},
		// Overlapping policies: each is a grant on its own.
		{"client from one policy, permissions from another do not combine", []v1.PanelAccessPolicy{
			policy("narrow", clients(byUUID, v1.PermissionManageServices)),
			policy("wide", clients(v1.ClientGrant{UUIDs: []string{clientB}}, v1.AllPermissions...))},
			tenancy.MembershipRequest{ClientUUID: clientA, Permissions: []v1.Permission{v1.PermissionManageOrders}}, false,
			"(policies granting the client: narrow)"},
		{"the wider of two policies granting the client", []v1.PanelAccessPolicy{
			policy("narrow", clients(byUUID, v1.PermissionManageServices)),
			policy("wide", clients(byUUID, v1.AllPermissions...))},
			tenancy.MembershipRequest{ClientUUID: clientA, Permissions: []v1.Permission{v1.PermissionManageOrders}}, true, ""},
		{"ownership from one policy, client from another do not combine", []v1.PanelAccessPolicy{
			policy("clients", clients(byUUID)),
			policy("owners", clients(v1.ClientGrant{UUIDs: []string{clientB}, Ownership: v1.OwnershipAllowed}))},
			tenancy.MembershipRequest{ClientUUID: clientA, Owner: true}, false, "(policies granting the client: clients)"},
		{"denial names the fewest missing permissions", []v1.PanelAccessPolicy{
			policy("a", clients(byUUID)), policy("b", clients(byUUID, v1.PermissionManageServices))},
			tenancy.MembershipRequest{ClientUUID: clientA, Permissions: []v1.Permission{v1.PermissionManageServices,
				v1.PermissionManageOrders}}, false, "the permissions manage-orders on client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tenancy.For(tc.policies, "team-a", nil).Membership(tc.req)
			checkDecision(t, err, tc.want, tc.message)
		})
	}
}

// A membership naming its client by company name is judged before the panel resolves the name:
// refused only when no client the namespace could be granted would allow it.
func TestMembershipOfAnyClient(t *testing.T) {
	named := `"Acme Hosting Ltd"`
	cases := []struct {
		name     string
		policies []v1.PanelAccessPolicy
		req      tenancy.MembershipRequest
		want     bool
		message  string
	}{
		{"no policy grants a client", []v1.PanelAccessPolicy{policy("p", emails("*@acme.io"))},
			tenancy.MembershipRequest{Client: named}, false, "the client " + named},
		{"some client listed", []v1.PanelAccessPolicy{policy("p", clients(v1.ClientGrant{UUIDs: []string{clientA}}))},
			tenancy.MembershipRequest{Client: named}, true, ""},
		{"clients owned from the namespace", []v1.PanelAccessPolicy{policy("p", clients(v1.ClientGrant{OwnedFromNamespace: true}))},
			tenancy.MembershipRequest{Client: named}, true, ""},
		{"ownership no client-granting policy allows", []v1.PanelAccessPolicy{
			policy("clients", clients(v1.ClientGrant{UUIDs: []string{clientA}})),
			policy("owners-without-clients", clients(v1.ClientGrant{Ownership: v1.OwnershipAllowed}))},
			tenancy.MembershipRequest{Client: named, Owner: true}, false, "(policies granting clients: clients)"},
		{"permissions beyond every client-granting policy", []v1.PanelAccessPolicy{policy("p",
			clients(v1.ClientGrant{UUIDs: []string{clientA}}, v1.PermissionManageServices))},
			tenancy.MembershipRequest{Client: named, Permissions: []v1.Permission{v1.PermissionManageOrders}}, false,
			"the permissions manage-orders on client " + named},
		{"permissions one client-granting policy allows", []v1.PanelAccessPolicy{
			policy("narrow", clients(v1.ClientGrant{UUIDs: []string{clientA}})),
			policy("wide", clients(v1.ClientGrant{UUIDs: []string{clientB}}, v1.AllPermissions...))},
			tenancy.MembershipRequest{Client: named, Permissions: []v1.Permission{v1.PermissionManageOrders}}, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tenancy.For(tc.policies, "team-a", nil).MembershipOfAnyClient(tc.req)
			checkDecision(t, err, tc.want, tc.message)
		})
	}
}

func TestOverlappingPoliciesGrantTheirUnion(t *testing.T) {
	policies := []v1.PanelAccessPolicy{
		policy("acme", emails("*@acme.io")),
		policy("contractors", emails("*@contractor.example")),
		policy("elsewhere", emails("*@other.io"), selector(nil, "team-b")),
	}
	g := tenancy.For(policies, "team-a", nil)
	for _, email := range []string{"jane@acme.io", "joe@contractor.example"} {
		if err := g.Email(email); err != nil {
			t.Errorf("Email(%s) = %v, want allowed by the union", email, err)
		}
	}
	err := g.Email("jane@other.io")
	checkDecision(t, err, false, "(policies selecting namespace team-a: acme, contractors);")
}

func TestNoPolicyMeansNotPermitted(t *testing.T) {
	other := []v1.PanelAccessPolicy{policy("team-b-only", allowAll, selector(nil, "team-b"))}
	for _, policies := range [][]v1.PanelAccessPolicy{nil, other} {
		g := tenancy.For(policies, "team-a", map[string]string{"team": "a"})
		for name, err := range map[string]error{
			"email":      g.Email("jane@acme.io"),
			"adoption":   g.Adoption("jane@acme.io"),
			"membership": g.Membership(tenancy.MembershipRequest{ClientUUID: clientA}),
		} {
			checkDecision(t, err, false, "no PanelAccessPolicy selects namespace team-a")
			if !strings.Contains(err.Error(), "selecting team-a") {
				t.Errorf("%s: the denial does not say which policy to write: %v", name, err)
			}
		}
	}
	err := tenancy.For(nil, "team-b", nil).Email("jane@acme.io")
	want := "No PanelAccessPolicy grants namespace team-b the email jane@acme.io (no PanelAccessPolicy selects namespace " +
		"team-b); add a pattern matching it to spec.emails of a PanelAccessPolicy selecting team-b"
	if err == nil || err.Error() != want {
		t.Errorf("denial = %v\nwant      %s", err, want)
	}
}

func TestDenialsNameOnlyTheRequestAndTheNamespacePolicies(t *testing.T) {
	policies := []v1.PanelAccessPolicy{
		policy("team-a", emails("*@acme.io"), clients(v1.ClientGrant{UUIDs: []string{clientA}})),
		policy("team-b-secret", emails("*@secret.io"), clients(v1.ClientGrant{UUIDs: []string{clientB}}),
			selector(nil, "team-b")),
	}
	g := tenancy.For(policies, "team-a", nil)
	for _, err := range []error{g.Email("jane@secret.io"), g.Membership(tenancy.MembershipRequest{ClientUUID: clientB})} {
		if err == nil {
			t.Fatal("allowed a grant of another namespace's policy")
		}
		if strings.Contains(err.Error(), "team-b") || strings.Contains(err.Error(), "*@secret.io") {
			t.Errorf("the denial discloses another namespace's policy: %v", err)
		}
	}
}

// A membership naming its client by company name is denied in those words: the UUID the name
// stands for is not disclosed to a namespace the client is not granted to.
func TestMembershipDenialNamesTheClientAsTheMembershipDoes(t *testing.T) {
	g := tenancy.For([]v1.PanelAccessPolicy{policy("p", clients(v1.ClientGrant{UUIDs: []string{clientA}}))}, "team-a", nil)
	err := g.Membership(tenancy.MembershipRequest{ClientUUID: clientB, Client: "Other Hosting Ltd"})
	checkDecision(t, err, false, "the client Other Hosting Ltd (")
	if strings.Contains(err.Error(), clientB) {
		t.Errorf("the denial discloses the UUID of a client named by company name: %v", err)
	}
}

func TestEmailAllowAllGrantsAnyEmail(t *testing.T) {
	g := tenancy.For([]v1.PanelAccessPolicy{policy("single-team", allowAll)}, "team-a", nil)
	if err := g.Email("anyone@anywhere.example"); err != nil {
		t.Errorf("allowAll refused an email: %v", err)
	}
	if got := g.Policies(); len(got) != 1 || got[0] != "single-team" {
		t.Errorf("Policies() = %v, want [single-team]", got)
	}
}

func checkDecision(t *testing.T, err error, want bool, message string) {
	t.Helper()
	if want {
		if err != nil {
			t.Errorf("denied: %v", err)
		}
		return
	}
	var d *tenancy.Denial
	if !errors.As(err, &d) {
		t.Fatalf("got %v, want a *tenancy.Denial", err)
	}
	if d.Reason() != v1.ReasonNotPermitted {
		t.Errorf("reason = %s, want %s", d.Reason(), v1.ReasonNotPermitted)
	}
	if !strings.Contains(d.Message, message) {
		t.Errorf("denial %q does not say %q", d.Message, message)
	}
}

// BenchmarkEmailCheck is one User's email check in a namespace that ten policies of twenty
// patterns each select: what a resync adds per User, with no panel round trip.
func BenchmarkEmailCheck(b *testing.B) {
	policies := make([]v1.PanelAccessPolicy, 10)
	for i := range policies {
		patterns := make([]v1.EmailPattern, 20)
		for j := range patterns {
			patterns[j] = v1.EmailPattern("*@team" + string(rune('a'+i)) + string(rune('a'+j)) + ".example.com")
		}
		policies[i] = policy(string(rune('a'+i)), emails(patterns...))
	}
	g := tenancy.For(policies, "team-a", nil)
	for b.Loop() {
		if g.Email("jane.doe@teamjt.example.com") != nil {
			b.Fatal("denied")
		}
	}
}
