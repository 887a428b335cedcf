/*
Copyright 2026.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
)

// +kubebuilder:webhook:path=/validate-panel-puqcloud-com-v1alpha1-clientmembership,mutating=false,failurePolicy=fail,sideEffects=None,groups=panel.puqcloud.com,resources=clientmemberships,verbs=create;update,versions=v1alpha1,name=vclientmembership-v1alpha1.kb.io,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"spec-changed","expression":"request.operation == 'CREATE' || object.spec != oldObject.spec"}]}`

// indexMembershipClientSelector is spec.client as the membership names it ("uuid/<uuid>" or
// "companyName/<name>"): memberships name one client the same way exactly when these are equal.
// The controllers' index is the client a membership resolved to (status), which a new membership
// has not got yet.
const indexMembershipClientSelector = "panel.puqcloud.com/client-selector"

// SetupIndexes registers the field indexes the webhooks add to the controllers' own
// (controller.SetupIndexes, which must be registered too).
func SetupIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &v1.ClientMembership{}, indexMembershipClientSelector, func(o client.Object) []string {
		return []string{selectorKey(o.(*v1.ClientMembership).Spec.Client)}
	})
}

func selectorKey(s v1.ClientSelector) string {
	if s.UUID != "" {
		return "uuid/" + s.UUID
	}
	return "companyName/" + s.CompanyName
}

// ClientMembershipValidator refuses a ClientMembership asking for what the namespace's
// PanelAccessPolicies do not grant (the client, ownership, permissions), one associating a user
// with a client another membership already associates it with, and a second owner of a client.
type ClientMembershipValidator struct {
	// Reader is the manager's cache, with SetupIndexes' index.
	Reader client.Reader
	// Namespaces are the namespaces the manager watches (--namespace); empty: all.
	Namespaces []string
}

// SetupClientMembershipWebhookWithManager registers the ClientMembership webhook with the
// manager's webhook server.
func SetupClientMembershipWebhookWithManager(mgr ctrl.Manager, namespaces []string) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1.ClientMembership{}).
		WithValidator(&ClientMembershipValidator{Reader: mgr.GetClient(), Namespaces: namespaces}).
		Complete()
}

var _ admission.Validator[*v1.ClientMembership] = &ClientMembershipValidator{}

// ValidateCreate judges a new ClientMembership.
func (v *ClientMembershipValidator) ValidateCreate(ctx context.Context, m *v1.ClientMembership) (admission.Warnings, error) {
	return nil, v.validate(ctx, nil, m)
}

// ValidateUpdate judges a changed ClientMembership: its user and client cannot change (CEL), so
// only a change of ownership or permissions is judged again.
func (v *ClientMembershipValidator) ValidateUpdate(ctx context.Context, old, m *v1.ClientMembership) (admission.Warnings, error) {
	return nil, v.validate(ctx, old, m)
}

// ValidateDelete lets every deletion through.
func (v *ClientMembershipValidator) ValidateDelete(context.Context, *v1.ClientMembership) (admission.Warnings, error) {
	return nil, nil
}

var membershipKind = v1.GroupVersion.WithKind("ClientMembership").GroupKind()

func (v *ClientMembershipValidator) validate(ctx context.Context, old, m *v1.ClientMembership) error {
	if !m.DeletionTimestamp.IsZero() || !watched(v.Namespaces, m.Namespace) {
		return nil
	}
	if old != nil && old.Spec.Owner == m.Spec.Owner && slices.Equal(old.Spec.Permissions, m.Spec.Permissions) {
		return nil
	}
	// Policy before lookup: the client is judged before any other membership of it is read.
	grants, err := controller.GrantsOf(ctx, v.Reader, m.Namespace)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if err := judge(grants, m); err != nil {
		return invalid(membershipKind, m.Name, field.Forbidden(field.NewPath("spec"), reasoned(v1.ReasonNotPermitted, err.Error())))
	}
	other, reason, err := v.conflict(ctx, old == nil, grantedBySpec(grants, m), m)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	switch reason {
	case v1.ReasonDuplicateMembership:
		return invalid(membershipKind, m.Name, field.Invalid(field.NewPath("spec", "client"), describe(m.Spec.Client),
			reasoned(reason, fmt.Sprintf("%s already associates User %s with this client; delete one of them.",
				controller.SameNamespaceName("ClientMembership", m.Namespace, other.Namespace, other.Name), m.Spec.UserRef.Name))))
	case v1.ReasonOwnerConflict:
		return invalid(membershipKind, m.Name, field.Invalid(field.NewPath("spec", "owner"), true,
			reasoned(reason, fmt.Sprintf("%s already makes its user the owner of this client; a client has one owner. "+
				"Set spec.owner: false on one of them.", controller.SameNamespaceName("ClientMembership", m.Namespace,
				other.Namespace, other.Name)))))
	}
	return nil
}

// judge is the controller's grant check (checkClientGrant) as far as the spec alone decides it:
// a client named by uuid is judged as if its owner were a User of the namespace (the one fact
// only the panel knows, and the one that could only widen the grant); one named by company name
// as any client the namespace could be granted. What it refuses, the controller refuses whatever
// the panel holds; what it lets through, the controller judges again with the panel's answers.
//
// An owner claim in a namespace granted the client but not its ownership is let through: the
// controller accepts it when the panel already has that user as the client's owner (re-asserting
// an owner, as kubectl puq import writes it, makes nobody owner), and refuses it NotPermitted
// otherwise; only the panel knows which, and the webhook does not read the panel.
func judge(grants tenancy.Grants, m *v1.ClientMembership) error {
	req := tenancy.MembershipRequest{ClientUUID: m.Spec.Client.UUID, OwnerNamespace: m.Namespace, Owner: m.Spec.Owner,
		Permissions: m.Spec.Permissions}
	asMember := tenancy.MembershipRequest{ClientUUID: req.ClientUUID, OwnerNamespace: req.OwnerNamespace}
	if m.Spec.Client.UUID != "" {
		err := grants.Membership(req)
		if err != nil && m.Spec.Owner && grants.Membership(asMember) == nil {
			return nil
		}
		return err
	}
	if grants.AnyClient() {
		return nil
	}
	req.Client = strconv.Quote(m.Spec.Client.CompanyName)
	asMember.Client = req.Client
	err := grants.MembershipOfAnyClient(req)
	if err != nil && m.Spec.Owner && grants.MembershipOfAnyClient(asMember) == nil {
		return nil
	}
	return err
}

// grantedBySpec reports whether the namespace's grants allow m from its spec alone, with nothing
// assumed of the panel: its client by uuid in spec.clients.uuids of a policy that allows the
// rest of the request, or any client by allowAll. Only then is the namespace known to be granted
// the client, and entitled to learn that another namespace claims it.
func grantedBySpec(grants tenancy.Grants, m *v1.ClientMembership) bool {
	if m.Spec.Client.UUID == "" {
		return grants.AnyClient()
	}
	return grants.Membership(tenancy.MembershipRequest{ClientUUID: m.Spec.Client.UUID, Owner: m.Spec.Owner,
		Permissions: m.Spec.Permissions}) == nil
}

// conflict is the oldest other membership naming the client the same way that this one would
// yield to in the controllers (olderPeerConflict): one of the same User (DuplicateMembership), or,
// when this one asks for ownership, another owner (OwnerConflict) that claims the client
// (claims). created: m is being created, so every existing membership is older. granted: m is
// grantedBySpec; when it is not, its namespace may not be granted the client at all, so only its
// own namespace's memberships are read (comparing owners elsewhere would tell it who holds a
// client that may not be its business) and the controller, which knows the client's owner,
// judges the rest.
func (v *ClientMembershipValidator) conflict(ctx context.Context, created, granted bool, m *v1.ClientMembership) (
	*v1.ClientMembership, string, error) {
	opts := []client.ListOption{client.MatchingFields{indexMembershipClientSelector: selectorKey(m.Spec.Client)},
		client.UnsafeDisableDeepCopy}
	if !granted {
		opts = append(opts, client.InNamespace(m.Namespace))
	}
	var peers v1.ClientMembershipList
	if err := v.Reader.List(ctx, &peers, opts...); err != nil {
		return nil, "", fmt.Errorf("cannot list memberships by client: %w", err)
	}
	slices.SortFunc(peers.Items, func(a, b v1.ClientMembership) int {
		if controller.OlderThan(a.ObjectMeta, b.ObjectMeta) {
			return -1
		}
		return 1
	})
	grants := controller.NewGrantsCache(v.Reader)
	for i := range peers.Items {
		p := &peers.Items[i]
		if p.Namespace == m.Namespace && p.Name == m.Name || !p.DeletionTimestamp.IsZero() ||
			!created && !controller.OlderThan(p.ObjectMeta, m.ObjectMeta) || controller.IsReadyReason(p.Status.Conditions, v1.ReasonNotPermitted) {
			continue
		}
		if p.Namespace == m.Namespace && p.Spec.UserRef.Name == m.Spec.UserRef.Name {
			return p, v1.ReasonDuplicateMembership, nil
		}
		if !m.Spec.Owner || !p.Spec.Owner {
			continue
		}
		claim, err := claims(ctx, grants, m, p)
		if err != nil {
			return nil, "", err
		}
		if claim {
			return p, v1.ReasonOwnerConflict, nil
		}
	}
	return nil, "", nil
}

// claims reports whether p, an older owner of the client m names, holds the ownership m asks
// for. A membership its namespace may not make claims nothing. In m's namespace that is judged
// as m itself is (judge). In another namespace only a claim known without the panel counts: p
// granted from its spec alone (grantedBySpec), or already accepted by the controller (Ready,
// Reconciled); one that passes judge only by what is assumed of the panel (a company name, an
// ownedFromNamespace grant) may be a squatter, which must not keep the client's rightful owner
// out at apply time, and is left to the controller.
func claims(ctx context.Context, grants *controller.GrantsCache, m, p *v1.ClientMembership) (bool, error) {
	if p.Namespace != m.Namespace && controller.IsReadyReason(p.Status.Conditions, v1.ReasonReconciled) {
		return true, nil
	}
	g, err := grants.Of(ctx, p.Namespace)
	if err != nil {
		return false, err
	}
	if p.Namespace == m.Namespace {
		return judge(g, p) == nil, nil
	}
	return grantedBySpec(g, p), nil
}

func describe(s v1.ClientSelector) string {
	if s.UUID != "" {
		return "uuid " + s.UUID
	}
	return "companyName " + strconv.Quote(s.CompanyName)
}
