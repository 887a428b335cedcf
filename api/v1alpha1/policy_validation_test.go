package v1alpha1_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

const policyCRD = "panelaccesspolicies.panel.puqcloud.com"

func validPolicy(name string) *v1.PanelAccessPolicy {
	return &v1.PanelAccessPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PanelAccessPolicySpec{
			Namespaces: v1.PolicyNamespaces{Names: []string{"team-a"}},
			Emails:     []v1.EmailPattern{"*@acme.io"},
		},
	}
}

func policyWith(mutate func(*v1.PanelAccessPolicy)) func(string) *v1.PanelAccessPolicy {
	return func(name string) *v1.PanelAccessPolicy {
		p := validPolicy(name)
		mutate(p)
		return p
	}
}

func TestAPIServerRejectsBadPoliciesNamingTheField(t *testing.T) {
	in := metav1.LabelSelectorOpIn
	cases := []struct {
		name   string
		obj    func(name string) *v1.PanelAccessPolicy
		field  string
		detail string
	}{
		{"no namespaces", policyWith(func(p *v1.PanelAccessPolicy) { p.Spec.Namespaces = v1.PolicyNamespaces{} }),
			"spec.namespaces", "set names, selector, or both"},
		{"a name that is not a namespace name", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.Namespaces.Names = []string{"Team_A"}
		}), "spec.namespaces.names[0]", ""},
		{"a selector operator that does not exist", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.Namespaces.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "team", Operator: "Like", Values: []string{"a"}}}}
		}), "spec.namespaces.selector", "operator must be In, NotIn, Exists or DoesNotExist"},
		{"In without values", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.Namespaces.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "team", Operator: in}}}
		}), "spec.namespaces.selector", "values must be non-empty for In and NotIn"},
		{"Exists with values", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.Namespaces.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "team", Operator: metav1.LabelSelectorOpExists, Values: []string{"a"}}}}
		}), "spec.namespaces.selector", "empty for Exists"},
		{"email pattern without @", policyWith(func(p *v1.PanelAccessPolicy) { p.Spec.Emails = []v1.EmailPattern{"acme.io"} }),
			"spec.emails[0]", ""},
		{"email pattern for every domain", policyWith(func(p *v1.PanelAccessPolicy) { p.Spec.Emails = []v1.EmailPattern{"*@*"} }),
			"spec.emails[0]", ""},
		{"email pattern with a wildcard inside the domain", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.Emails = []v1.EmailPattern{"*@acme*.io"}
		}), "spec.emails[0]", ""},
		{"email pattern with a space", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.Emails = []v1.EmailPattern{"jane doe@acme.io"}
		}), "spec.emails[0]", ""},
		{"duplicate email pattern", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.Emails = []v1.EmailPattern{"*@acme.io", "*@acme.io"}
		}), "spec.emails[1]", "Duplicate"},
		{"allowAll with emails", policyWith(func(p *v1.PanelAccessPolicy) { p.Spec.AllowAll = true }),
			"spec", "allowAll grants everything"},
		{"allowAll with maxPermissions", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec = v1.PanelAccessPolicySpec{Namespaces: p.Spec.Namespaces, AllowAll: true,
				MaxPermissions: []v1.Permission{v1.PermissionManageUsers}}
		}), "spec", "allowAll grants everything"},
		{"a policy that grants nothing", policyWith(func(p *v1.PanelAccessPolicy) { p.Spec.Emails = nil }),
			"spec", "the policy grants nothing"},
		{"unknown adoption mode", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.Adoption = &v1.AdoptionGrant{Mode: "IfExists"}
		}), "spec.adoption.mode", "IfEmailAllowed"},
		{"adoption emails without adoption", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.Adoption = &v1.AdoptionGrant{Mode: v1.AdoptionModeNever, Emails: []v1.EmailPattern{"*@acme.io"}}
		}), "spec.adoption", "set mode: IfEmailAllowed"},
		{"clients granting no client", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.Clients = &v1.ClientGrant{Ownership: v1.OwnershipAllowed}
		}), "spec.clients", "clients grants no client"},
		{"client uuid not a uuid", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.Clients = &v1.ClientGrant{UUIDs: []string{"Acme Hosting Ltd"}}
		}), "spec.clients.uuids[0]", ""},
		{"unknown ownership", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.Clients = &v1.ClientGrant{OwnedFromNamespace: true, Ownership: "Always"}
		}), "spec.clients.ownership", "Allowed"},
		{"unknown permission", policyWith(func(p *v1.PanelAccessPolicy) {
			p.Spec.MaxPermissions = []v1.Permission{"manage-everything"}
		}), "spec.maxPermissions[0]", "manage-orders"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := k8s.Create(context.Background(), tc.obj(fmt.Sprintf("bad-policy-%d", i)))
			assertInvalid(t, err, tc.field, tc.detail)
		})
	}
}

func TestAPIServerAcceptsPoliciesAndAppliesDefaults(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		mutate func(*v1.PanelAccessPolicy)
	}{
		{"emails by name", func(*v1.PanelAccessPolicy) {}},
		{"allowAll alone", func(p *v1.PanelAccessPolicy) {
			p.Spec = v1.PanelAccessPolicySpec{Namespaces: p.Spec.Namespaces, AllowAll: true}
		}},
		{"every grant, by selector", func(p *v1.PanelAccessPolicy) {
			p.Spec.Namespaces = v1.PolicyNamespaces{Selector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"tenant": "acme"},
				MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"gold"}},
					{Key: "frozen", Operator: metav1.LabelSelectorOpDoesNotExist}}}}
			p.Spec.Emails = []v1.EmailPattern{"jane@acme.io", "*@acme.io", "*@*.acme.io", "ops-*@acme.io"}
			p.Spec.Adoption = &v1.AdoptionGrant{Mode: v1.AdoptionModeIfEmailAllowed, Emails: []v1.EmailPattern{"legacy-*@acme.io"}}
			p.Spec.Clients = &v1.ClientGrant{UUIDs: []string{"0b8f2a4e-3c1d-4e5f-8a9b-0c1d2e3f4a5b"}, OwnedFromNamespace: true,
				Ownership: v1.OwnershipAllowed}
			p.Spec.MaxPermissions = v1.AllPermissions
		}},
		{"clients only", func(p *v1.PanelAccessPolicy) {
			p.Spec.Emails = nil
			p.Spec.Clients = &v1.ClientGrant{OwnedFromNamespace: true}
		}},
		{"empty selector", func(p *v1.PanelAccessPolicy) {
			p.Spec.Namespaces = v1.PolicyNamespaces{Selector: &metav1.LabelSelector{}}
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := policyWith(tc.mutate)(fmt.Sprintf("good-policy-%d", i))
			if err := k8s.Create(ctx, p); err != nil {
				t.Fatalf("the API server refused a valid policy: %v", err)
			}
		})
	}
	p := validPolicy("defaults-policy")
	p.Spec.Adoption = &v1.AdoptionGrant{}
	p.Spec.Clients = &v1.ClientGrant{OwnedFromNamespace: true}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	if p.Spec.Adoption.Mode != v1.AdoptionModeNever || p.Spec.Clients.Ownership != v1.OwnershipNever {
		t.Errorf("defaults: adoption.mode %q, clients.ownership %q; want Never, Never", p.Spec.Adoption.Mode,
			p.Spec.Clients.Ownership)
	}
	if p.Status.ObservedGeneration != 0 {
		t.Errorf("status.observedGeneration = %d, want a defaulted 0", p.Status.ObservedGeneration)
	}
}

func TestPolicyCRDIsClusterScopedWithKubectlErgonomics(t *testing.T) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: policyCRD}, crd); err != nil {
		t.Fatalf("get CRD: %v", err)
	}
	if crd.Spec.Scope != apiextensionsv1.ClusterScoped {
		t.Errorf("scope = %s, want Cluster", crd.Spec.Scope)
	}
	if got := crd.Spec.Names.ShortNames; !slices.Equal(got, []string{"pap"}) {
		t.Errorf("short names = %v, want [pap]", got)
	}
	if got := crd.Spec.Names.Categories; !slices.Equal(got, []string{"puqcloud"}) {
		t.Errorf("categories = %v, want [puqcloud]", got)
	}
	version := crd.Spec.Versions[0]
	columns := make([]string, 0, len(version.AdditionalPrinterColumns))
	for _, c := range version.AdditionalPrinterColumns {
		columns = append(columns, c.Name)
	}
	if want := []string{"Namespaces", "AllowAll", "Ready", "Age"}; !slices.Equal(columns, want) {
		t.Errorf("printer columns = %v, want %v", columns, want)
	}
	if version.Subresources == nil || version.Subresources.Status == nil {
		t.Error("the status subresource is not enabled")
	}
}

// TestKubectlExplainDocumentsEveryPolicyField walks the policy's schema as the API server serves
// it: every field has a description for kubectl explain.
func TestKubectlExplainDocumentsEveryPolicyField(t *testing.T) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: policyCRD}, crd); err != nil {
		t.Fatalf("get CRD: %v", err)
	}
	var undocumented []string
	var walk func(path string, s apiextensionsv1.JSONSchemaProps)
	walk = func(path string, s apiextensionsv1.JSONSchemaProps) {
		for name, prop := range s.Properties {
			p := path + "." + name
			if strings.TrimSpace(prop.Description) == "" && p != ".metadata" {
				undocumented = append(undocumented, p)
			}
			walk(p, prop)
		}
		if s.Items != nil && s.Items.Schema != nil {
			walk(path+"[]", *s.Items.Schema)
		}
	}
	walk("", *crd.Spec.Versions[0].Schema.OpenAPIV3Schema)
	if len(undocumented) > 0 {
		slices.Sort(undocumented)
		t.Errorf("fields without a description for kubectl explain: %v", undocumented)
	}
}
