package testenv

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// TenantLabel marks a namespace that the suite-wide policy (GrantEverything) does not select:
// a test of multi-tenancy labels its namespaces with it and writes the policies they get itself.
const TenantLabel = "test.puqcloud.com/tenant"

// EverythingPolicy names the policy GrantEverything creates.
const EverythingPolicy = "test-allow-all"

// GrantEverything creates the PanelAccessPolicy that lets every namespace without TenantLabel do
// everything in the panel (allowAll): policies are always enforced, and the tests of what Users
// and ClientMemberships do are not about them. Idempotent.
func GrantEverything(ctx context.Context, c client.Client) error {
	p := &v1.PanelAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: EverythingPolicy},
		Spec: v1.PanelAccessPolicySpec{AllowAll: true, Namespaces: v1.PolicyNamespaces{Selector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: TenantLabel, Operator: metav1.LabelSelectorOpDoesNotExist}},
		}}}}
	if err := c.Create(ctx, p); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}
