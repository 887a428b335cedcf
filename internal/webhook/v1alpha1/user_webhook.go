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

// Package v1alpha1 holds the validating admission webhooks of the panel.puqcloud.com/v1alpha1
// kinds: they refuse at `kubectl apply` what the controllers would otherwise only report later as
// a condition (DuplicateEmail, NotPermitted, DuplicateMembership, OwnerConflict). They judge from
// the manager's cache alone, never the panel database, and with the controllers' own rules
// (controller.GrantsOf, the email index, controller.OlderThan, controller.SameNamespaceName); the
// controllers keep every check, for the objects that reach the API server while the webhook is off.
package v1alpha1

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// Both webhooks carry matchConditions: the API server calls them for a create, and for an update
// only when the spec changes. The controllers' own updates (finalizers, owner references) never
// wait on a webhook, so a webhook that is down cannot hold up a deletion; status writes go to the
// status subresource, which no webhook here is registered for. failurePolicy=Fail: see README,
// "Admission webhook".

// +kubebuilder:webhook:path=/validate-panel-puqcloud-com-v1alpha1-user,mutating=false,failurePolicy=fail,sideEffects=None,groups=panel.puqcloud.com,resources=users,verbs=create;update,versions=v1alpha1,name=vuser-v1alpha1.kb.io,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"spec-changed","expression":"request.operation == 'CREATE' || object.spec != oldObject.spec"}]}`

// UserValidator refuses a User whose email another User holds, and one asking for what the
// namespace's PanelAccessPolicies do not grant (the email, adoption).
type UserValidator struct {
	// Reader is the manager's cache, with the controllers' field indexes (controller.SetupIndexes).
	Reader client.Reader
	// Namespaces are the namespaces the manager watches (--namespace); empty: all. Objects of
	// other namespaces are not the operator's and are let through.
	Namespaces []string
}

// SetupUserWebhookWithManager registers the User webhook with the manager's webhook server.
func SetupUserWebhookWithManager(mgr ctrl.Manager, namespaces []string) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1.User{}).
		WithValidator(&UserValidator{Reader: mgr.GetClient(), Namespaces: namespaces}).
		Complete()
}

var _ admission.Validator[*v1.User] = &UserValidator{}

// ValidateCreate judges a new User.
func (v *UserValidator) ValidateCreate(ctx context.Context, u *v1.User) (admission.Warnings, error) {
	return nil, v.validate(ctx, nil, u)
}

// ValidateUpdate judges a changed User: only what it asks for anew (a new email, adoption turned
// on or moved to a new email) is judged again, so that a User whose namespace lost a grant can
// still be edited otherwise, adoption turned off included.
func (v *UserValidator) ValidateUpdate(ctx context.Context, old, u *v1.User) (admission.Warnings, error) {
	return nil, v.validate(ctx, old, u)
}

// ValidateDelete lets every deletion through: a deletion only ever releases.
func (v *UserValidator) ValidateDelete(context.Context, *v1.User) (admission.Warnings, error) {
	return nil, nil
}

var (
	userKind  = v1.GroupVersion.WithKind("User").GroupKind()
	emailPath = field.NewPath("spec", "email")
)

func (v *UserValidator) validate(ctx context.Context, old, u *v1.User) error {
	if !u.DeletionTimestamp.IsZero() || !watched(v.Namespaces, u.Namespace) {
		return nil
	}
	key := panel.NormalizeEmail(u.Spec.Email)
	emailChanged := old == nil || panel.NormalizeEmail(old.Spec.Email) != key
	// Adoption is judged only when it is asked for anew: when it becomes IfExists, or when the
	// email it adopts by changes. Dropping it only ever asks for less.
	adoptionAsked := u.Spec.Adoption == v1.AdoptionIfExists &&
		(emailChanged || old.Spec.Adoption != v1.AdoptionIfExists)
	if !emailChanged && !adoptionAsked {
		return nil
	}
	// Policy before lookup: nothing about who holds an email is read before the namespace is
	// granted it, so a refusal of an email it is not granted says the same whether it is held.
	grants, err := controller.GrantsOf(ctx, v.Reader, u.Namespace)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if emailChanged {
		if err := grants.Email(u.Spec.Email); err != nil {
			return invalid(userKind, u.Name, field.Forbidden(emailPath, reasoned(v1.ReasonNotPermitted, err.Error())))
		}
	}
	if adoptionAsked {
		if err := grants.Adoption(u.Spec.Email); err != nil {
			return invalid(userKind, u.Name, field.Forbidden(field.NewPath("spec", "adoption"),
				reasoned(v1.ReasonNotPermitted, err.Error())))
		}
	}
	if !emailChanged {
		return nil
	}
	holder, err := v.holder(ctx, u, key)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if holder == nil {
		return nil
	}
	// SameNamespaceName: whose it is, when in another namespace, is another tenant's business.
	return invalid(userKind, u.Name, field.Invalid(emailPath, u.Spec.Email, reasoned(v1.ReasonDuplicateEmail,
		fmt.Sprintf("The email is already held by %s; emails are unique in the panel. Change spec.email.",
			controller.SameNamespaceName("User", u.Namespace, holder.Namespace, holder.Name)))))
}

// holder is the oldest other User holding the email (folded, key) as the controllers count
// holders: one not being deleted, in a namespace granted the email (a User that may not hold its
// email holds nothing). nil when there is none.
func (v *UserValidator) holder(ctx context.Context, u *v1.User, key string) (*v1.User, error) {
	var peers v1.UserList
	if err := v.Reader.List(ctx, &peers, client.MatchingFields{controller.IndexUserEmail: key},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("cannot list Users by email: %w", err)
	}
	grants := controller.NewGrantsCache(v.Reader)
	var holder *v1.User
	for i := range peers.Items {
		p := &peers.Items[i]
		if p.Namespace == u.Namespace && p.Name == u.Name || !p.DeletionTimestamp.IsZero() {
			continue
		}
		if p.Namespace != u.Namespace {
			g, err := grants.Of(ctx, p.Namespace)
			if err != nil {
				return nil, err
			}
			if g.Email(p.Spec.Email) != nil {
				continue
			}
		}
		if holder == nil || controller.OlderThan(p.ObjectMeta, holder.ObjectMeta) {
			holder = p
		}
	}
	return holder, nil
}

// watched reports whether the manager watches the namespace (namespaces empty: all).
func watched(namespaces []string, namespace string) bool {
	return len(namespaces) == 0 || slices.Contains(namespaces, namespace)
}

// reasoned prefixes a refusal with the condition reason the controllers would report, so that
// the words at apply time and in status match.
func reasoned(reason, message string) string { return reason + ": " + message }

func invalid(kind schema.GroupKind, name string, errs ...*field.Error) error {
	return apierrors.NewInvalid(kind, name, errs)
}
