// Package tenancy decides what a namespace may do in the panel, from the PanelAccessPolicies that
// select it. Everything here is pure: it works on objects read from the cache and never asks the
// panel, so a check costs no round trip and gives a namespace no way to learn what the panel holds.
package tenancy

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// Selects reports whether the policy selects the namespace, by name or by its labels. A policy
// whose selector cannot be parsed selects nothing, not even the namespaces it names: it grants
// nothing until it is fixed (SelectorError says why).
func Selects(p *v1.PanelAccessPolicy, namespace string, nsLabels map[string]string) bool {
	sel, err := selector(p)
	if err != nil {
		return false
	}
	return slices.Contains(p.Spec.Namespaces.Names, namespace) || sel.Matches(labels.Set(nsLabels))
}

// SelectorError is why the policy's namespace selector cannot be parsed; nil when it can, or when
// the policy has none.
func SelectorError(p *v1.PanelAccessPolicy) error {
	_, err := selector(p)
	return err
}

// selector is the policy's label selector; labels.Nothing() when it has none.
func selector(p *v1.PanelAccessPolicy) (labels.Selector, error) {
	if p.Spec.Namespaces.Selector == nil {
		return labels.Nothing(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.Namespaces.Selector)
	if err != nil {
		return nil, fmt.Errorf("spec.namespaces.selector: %w", err)
	}
	return sel, nil
}

// Grants are what one namespace may do in the panel: the union of the policies that select it.
// Each policy is a grant on its own: a request is allowed when one of them allows all of it, so
// two policies never combine into a grant that neither wrote.
type Grants struct {
	namespace string
	policies  []grant
}

// grant is one policy, its patterns folded once.
type grant struct {
	name           string
	allowAll       bool
	emails         []pattern
	adopt          bool
	adoptionEmails []pattern
	clients        []string
	ownedFromNS    bool
	ownership      bool
	maxPermissions []v1.Permission
}

// For returns the grants of the namespace (with the labels) among policies: those of the
// policies that select it.
func For(policies []v1.PanelAccessPolicy, namespace string, nsLabels map[string]string) Grants {
	g := Grants{namespace: namespace}
	for i := range policies {
		if Selects(&policies[i], namespace, nsLabels) {
			g.policies = append(g.policies, compile(&policies[i]))
		}
	}
	slices.SortFunc(g.policies, func(a, b grant) int { return strings.Compare(a.name, b.name) })
	return g
}

func compile(p *v1.PanelAccessPolicy) grant {
	s := p.Spec
	g := grant{name: p.Name, allowAll: s.AllowAll, emails: compilePatterns(s.Emails),
		maxPermissions: s.MaxPermissions}
	if a := s.Adoption; a != nil && a.Mode == v1.AdoptionModeIfEmailAllowed {
		g.adopt, g.adoptionEmails = true, compilePatterns(a.Emails)
	}
	if c := s.Clients; c != nil {
		g.clients, g.ownedFromNS, g.ownership = c.UUIDs, c.OwnedFromNamespace, c.Ownership == v1.OwnershipAllowed
	}
	return g
}

// Namespace is the namespace the grants are for.
func (g Grants) Namespace() string { return g.namespace }

// Policies are the names of the policies that select the namespace, sorted.
func (g Grants) Policies() []string {
	names := make([]string, 0, len(g.policies))
	for _, p := range g.policies {
		names = append(names, p.name)
	}
	return names
}

// Denial is a request that no policy allows. Its message says what is not permitted and which
// policy to write or change; it names nothing but the request and the policies selecting the
// namespace, so it discloses nothing about the panel or about other namespaces.
type Denial struct {
	Message string
}

func (d *Denial) Error() string { return d.Message }

// Reason is the condition reason of a denial: NotPermitted.
func (d *Denial) Reason() string { return v1.ReasonNotPermitted }

func (g Grants) deny(format string, args ...any) error {
	return &Denial{Message: fmt.Sprintf(format, args...)}
}

// Describe says which policies select the namespace, for a denial's message.
func (g Grants) Describe() string {
	if len(g.policies) == 0 {
		return fmt.Sprintf("no PanelAccessPolicy selects namespace %s", g.namespace)
	}
	return fmt.Sprintf("policies selecting namespace %s: %s", g.namespace, strings.Join(g.Policies(), ", "))
}

// Email allows a User of the namespace to hold the email: nil when a policy grants it, else a
// *Denial.
func (g Grants) Email(email string) error {
	key := panel.NormalizeEmail(email)
	for _, p := range g.policies {
		if p.allowAll || matchAny(p.emails, key) {
			return nil
		}
	}
	return g.deny("No PanelAccessPolicy grants namespace %s the email %s (%s); add a pattern matching it to "+
		"spec.emails of a PanelAccessPolicy selecting %s", g.namespace, strings.TrimSpace(email), g.Describe(), g.namespace)
}

// Adoption allows a User of the namespace to adopt the existing panel user with the email (one no
// resource manages: the controllers refuse a user bound elsewhere before asking). nil when a
// policy grants the email with adoption mode IfEmailAllowed and the email matches its
// adoption.emails, if any; else a *Denial.
func (g Grants) Adoption(email string) error {
	if err := g.Email(email); err != nil {
		return err
	}
	key := panel.NormalizeEmail(email)
	for _, p := range g.policies {
		if p.allowAll || p.adopt && matchAny(p.emails, key) && (len(p.adoptionEmails) == 0 || matchAny(p.adoptionEmails, key)) {
			return nil
		}
	}
	return g.deny("No PanelAccessPolicy lets namespace %s adopt the existing panel user with email %s (%s); set "+
		"spec.adoption.mode: IfEmailAllowed, with spec.adoption.emails matching it if set, in a PanelAccessPolicy selecting %s "+
		"whose spec.emails match it", g.namespace, strings.TrimSpace(email), g.Describe(), g.namespace)
}

// AnyClient reports whether a policy grants the namespace every client (allowAll): only then may
// a ClientMembership learn that a company name matches no client, or several.
func (g Grants) AnyClient() bool {
	return slices.ContainsFunc(g.policies, func(p grant) bool { return p.allowAll })
}

// ClientsByOwner reports whether a policy grants clients by their owner
// (spec.clients.ownedFromNamespace): only then does judging a membership need the client's owner.
func (g Grants) ClientsByOwner() bool {
	return slices.ContainsFunc(g.policies, func(p grant) bool { return p.ownedFromNS })
}

// MembershipRequest is what a ClientMembership asks of the panel.
type MembershipRequest struct {
	// ClientUUID is the panel client's UUID (for a membership naming the client by company name,
	// the UUID that name stands for).
	ClientUUID string
	// Client is the client as the ClientMembership names it (spec.client.uuid or
	// spec.client.companyName), which is what a denial repeats: the UUID a company name stands for
	// is never disclosed to a namespace the client is not granted to. Empty: ClientUUID.
	Client string
	// Owner asks to make the user the client's owner.
	Owner bool
	// OwnerNamespace is the namespace of the User managing the panel user that owns the client
	// now; "" when the client has no owner or no User manages its owner.
	OwnerNamespace string
	// Permissions are the per-client permissions asked for (ignored for an owner, who has all).
	Permissions []v1.Permission
}

// Membership allows a ClientMembership of the namespace: nil when one policy grants the client,
// ownership when it is asked for, and every permission asked for; else a *Denial naming what is
// missing.
func (g Grants) Membership(m MembershipRequest) error {
	client := strings.ToLower(m.ClientUUID)
	named := m.Client
	if named == "" {
		named = client
	}
	return g.membership(m, named, "the client", func(p grant) bool {
		return p.allowAll || slices.Contains(p.clients, client) || p.ownedFromNS && m.OwnerNamespace != "" &&
			m.OwnerNamespace == g.namespace
	})
}

// MembershipOfAnyClient judges a ClientMembership whose client is not known yet (one named by
// company name, which only the panel resolves): nil when a policy that grants the namespace any
// client at all allows the ownership and the permissions asked for, so that the membership may be
// allowed once its client is known; else a *Denial, which would hold whichever client the name
// stands for. m.Client is the client as the membership names it; ClientUUID and OwnerNamespace
// are not read.
func (g Grants) MembershipOfAnyClient(m MembershipRequest) error {
	return g.membership(m, m.Client, "clients", func(p grant) bool {
		return p.allowAll || len(p.clients) > 0 || p.ownedFromNS
	})
}

// membership is the judgement of Membership among the policies grantsClient says grant the
// client (described by what, for the message).
func (g Grants) membership(m MembershipRequest, named, what string, grantsClient func(grant) bool) error {
	var granting []grant
	for _, p := range g.policies {
		if grantsClient(p) {
			granting = append(granting, p)
		}
	}
	if len(granting) == 0 {
		return g.deny("No PanelAccessPolicy grants namespace %s the client %s (%s); add its UUID to spec.clients.uuids of a "+
			"PanelAccessPolicy selecting %s", g.namespace, named, g.Describe(), g.namespace)
	}
	names := make([]string, 0, len(granting))
	for _, p := range granting {
		names = append(names, p.name)
	}
	if m.Owner {
		if slices.ContainsFunc(granting, func(p grant) bool { return p.allowAll || p.ownership }) {
			return nil
		}
		return g.deny("No PanelAccessPolicy lets namespace %s take ownership of client %s (policies granting %s: %s); "+
			"set spec.clients.ownership: Allowed in one of them", g.namespace, named, what, strings.Join(names, ", "))
	}
	var fewest []v1.Permission
	for i, p := range granting {
		missing := p.missing(m.Permissions)
		if len(missing) == 0 {
			return nil
		}
		if i == 0 || len(missing) < len(fewest) {
			fewest = missing
		}
	}
	return g.deny("No PanelAccessPolicy grants namespace %s the permissions %s on client %s (policies granting %s: %s); "+
		"add them to spec.maxPermissions of one of them", g.namespace, permissionList(fewest), named, what,
		strings.Join(names, ", "))
}

// missing are the permissions asked for that the grant does not allow, in the panel's order.
func (p grant) missing(asked []v1.Permission) []v1.Permission {
	if p.allowAll {
		return nil
	}
	var out []v1.Permission
	for _, perm := range v1.AllPermissions {
		if slices.Contains(asked, perm) && !slices.Contains(p.maxPermissions, perm) {
			out = append(out, perm)
		}
	}
	// A permission outside the panel's list (the API rejects them) is never granted.
	for _, perm := range asked {
		if !slices.Contains(v1.AllPermissions, perm) && !slices.Contains(out, perm) {
			out = append(out, perm)
		}
	}
	return out
}

func permissionList(perms []v1.Permission) string {
	s := make([]string, len(perms))
	for i, p := range perms {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}
