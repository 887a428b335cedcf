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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// PolicyNamespaces selects namespaces by name, by labels, or both: a namespace is selected when
// names lists it or selector matches its labels.
// +kubebuilder:validation:XValidation:rule="has(self.names) || has(self.selector)",message="set names, selector, or both: a policy must say which namespaces it grants"
type PolicyNamespaces struct {
	// names are namespaces selected by name, whatever their labels.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Names []string `json:"names,omitempty"`

	// selector selects namespaces by their labels, as a Deployment's selector selects Pods. An empty
	// selector ({}) selects every namespace. A namespace whose labels change gains or loses the
	// policy's grants at once. A selector the API server accepts but cannot parse (an invalid label
	// key) makes the policy grant nothing: its Ready condition says InvalidSelector.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="matchExpressions operator must be In, NotIn, Exists or DoesNotExist"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, (e.operator in ['In', 'NotIn']) == (has(e.values) && size(e.values) > 0))",message="matchExpressions values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist"
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// EmailPattern is an email address a selected namespace's Users may hold, or a pattern of them:
// "jane@example.com" (exactly that address), "*@example.com" (any address at example.com),
// "*@*.example.com" (any address at a subdomain of example.com, not at example.com itself), or
// "ops-*@example.com" ("*" in the part before "@" stands for any characters). Addresses are
// compared as the panel's database compares emails (utf8mb4_unicode_ci): ignoring case, accents,
// width (fullwidth letters), ignorable characters and trailing spaces, with ß equal to ss; so
// "JANE@EXAMPLE.COM" is the address "jane@example.com" grants, because the panel holds one
// account for both.
// +kubebuilder:validation:MinLength=3
// +kubebuilder:validation:MaxLength=255
// +kubebuilder:validation:Pattern=`^[^\s@]+@(\*\.)?[^\s@*]+$`
type EmailPattern string

// AdoptionMode says whether a selected namespace's Users may adopt existing panel users.
// +kubebuilder:validation:Enum=Never;IfEmailAllowed
type AdoptionMode string

const (
	// AdoptionModeNever refuses every adoption: Users may only create panel users.
	AdoptionModeNever AdoptionMode = "Never"
	// AdoptionModeIfEmailAllowed lets a User with spec.adoption: IfExists take over an existing
	// panel user that no resource manages, when the policy grants its email.
	AdoptionModeIfEmailAllowed AdoptionMode = "IfEmailAllowed"
)

// AdoptionGrant says which existing panel users the selected namespaces may adopt.
// +kubebuilder:validation:XValidation:rule="!has(self.emails) || (has(self.mode) && self.mode == 'IfEmailAllowed')",message="adoption.emails narrows adoption: set mode: IfEmailAllowed with it"
type AdoptionGrant struct {
	// mode is "Never" (the default): no existing panel user may be adopted; or "IfEmailAllowed": a
	// User with spec.adoption: IfExists may adopt the panel user with its email when the email
	// matches this policy's emails (and adoption.emails, when set). A panel user managed by another
	// resource is never adopted, whatever the policy says.
	// +optional
	// +kubebuilder:default=Never
	Mode AdoptionMode `json:"mode,omitempty"`

	// emails narrows adoption to these patterns (same form as spec.emails); an email must match
	// both lists. Unset: every email of spec.emails may be adopted.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	Emails []EmailPattern `json:"emails,omitempty"`
}

// OwnershipGrant says whether a ClientMembership may make its user the owner of a client.
// +kubebuilder:validation:Enum=Never;Allowed
type OwnershipGrant string

const (
	// OwnershipNever refuses ClientMemberships with owner: true.
	OwnershipNever OwnershipGrant = "Never"
	// OwnershipAllowed lets a ClientMembership with owner: true take ownership of a granted client
	// (the previous owner keeps every permission but loses the flag).
	OwnershipAllowed OwnershipGrant = "Allowed"
)

// ClientGrant says which panel clients the selected namespaces' ClientMemberships may join.
// +kubebuilder:validation:XValidation:rule="has(self.uuids) || (has(self.ownedFromNamespace) && self.ownedFromNamespace)",message="clients grants no client: list uuids, set ownedFromNamespace: true, or both"
type ClientGrant struct {
	// uuids are panel clients, by UUID (lowercase, hyphenated), that memberships may join. A
	// ClientMembership naming its client by companyName is judged by the UUID the name stands for.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:Pattern=`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`
	UUIDs []string `json:"uuids,omitempty"`

	// ownedFromNamespace grants the clients whose current owner is a panel user managed by a User
	// in the same namespace as the ClientMembership: a team may share the clients its own people
	// own. A client without an owner is not granted by it.
	// +optional
	OwnedFromNamespace bool `json:"ownedFromNamespace,omitempty"`

	// ownership is "Never" (the default): a ClientMembership with owner: true is refused; or
	// "Allowed": one may take ownership of a client this grant covers. The owner holds every
	// permission, so maxPermissions does not limit an owner.
	// +optional
	// +kubebuilder:default=Never
	Ownership OwnershipGrant `json:"ownership,omitempty"`
}

// PanelAccessPolicySpec says what the selected namespaces may do in the panel. Each policy is a
// grant on its own: a request is allowed when one policy selecting the namespace allows all of
// it (the email, the client and the permissions together), as one RBAC rule must allow a whole
// request; two policies never combine into a grant neither wrote. A namespace no policy selects
// may do nothing in the panel.
// +kubebuilder:validation:XValidation:rule="!(has(self.allowAll) && self.allowAll) || (!has(self.emails) && !has(self.adoption) && !has(self.clients) && !has(self.maxPermissions))",message="allowAll grants everything: leave emails, adoption, clients and maxPermissions unset"
// +kubebuilder:validation:XValidation:rule="(has(self.allowAll) && self.allowAll) || has(self.emails) || has(self.clients)",message="the policy grants nothing: set emails, clients, or allowAll: true"
type PanelAccessPolicySpec struct {
	// namespaces selects the namespaces this policy grants to, by names and/or a label selector.
	// +required
	Namespaces PolicyNamespaces `json:"namespaces"`

	// allowAll grants the selected namespaces everything: any email, adoption of any panel user no
	// resource manages, any client, ownership and every permission. It is the single-team mode,
	// for a cluster whose every namespace is trusted with the whole panel; it is never implied by
	// leaving the other fields unset, and excludes them.
	// +optional
	AllowAll bool `json:"allowAll,omitempty"`

	// emails are the email addresses, or patterns of them, that the selected namespaces' Users may
	// hold, in the forms below. A User whose email no policy grants is refused with NotPermitted
	// before the operator looks the email up in the panel.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	Emails []EmailPattern `json:"emails,omitempty"`

	// adoption says whether the selected namespaces' Users may adopt existing panel users. Unset:
	// never.
	// +optional
	Adoption *AdoptionGrant `json:"adoption,omitempty"`

	// clients says which panel clients the selected namespaces' ClientMemberships may join, and
	// whether they may take ownership. Unset: none.
	// +optional
	Clients *ClientGrant `json:"clients,omitempty"`

	// maxPermissions is the largest set of per-client permissions a ClientMembership in the selected
	// namespaces may grant on a client this policy grants. Unset: none (a membership without
	// permissions is still allowed).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=8
	MaxPermissions []Permission `json:"maxPermissions,omitempty"`
}

// PanelAccessPolicyStatus is what the policy covers now.
type PanelAccessPolicyStatus struct {
	// namespaces are the namespaces the policy selects now, sorted; at most the first 100 (see
	// namespaceCount).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	Namespaces []string `json:"namespaces,omitempty"`

	// namespaceCount is how many namespaces the policy selects now, also when namespaces lists
	// only the first 100.
	// +optional
	NamespaceCount int32 `json:"namespaceCount"`

	// observedGeneration is the generation the operator last judged. 0 until the operator has
	// seen the object, so kstatus, Argo CD and Flux read a new object as in progress.
	// +optional
	// +kubebuilder:default=0
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions are Ready and Stalled, in the form kstatus, Argo CD and Flux read: Ready is True
	// when the policy is in force and status.namespaces is current; False with reason
	// InvalidSelector (and Stalled) when its selector cannot be parsed, and then it grants nothing.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=pap,categories=puqcloud
// +kubebuilder:printcolumn:name="Namespaces",type=integer,JSONPath=`.status.namespaceCount`
// +kubebuilder:printcolumn:name="AllowAll",type=boolean,JSONPath=`.spec.allowAll`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// PanelAccessPolicy is written by the cluster admin: it grants the namespaces it selects the
// panel accounts and clients their Users and ClientMemberships may manage (which emails, which
// adoptions, which clients, ownership, the largest permission set). A namespace that no policy
// selects may do nothing in the panel.
type PanelAccessPolicy struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitzero"`

	// spec is what the policy grants, and to which namespaces.
	// +required
	Spec PanelAccessPolicySpec `json:"spec"`

	// status is what the policy covers now.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status PanelAccessPolicyStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// PanelAccessPolicyList contains a list of PanelAccessPolicy.
type PanelAccessPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitzero"`
	Items           []PanelAccessPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(SchemeGroupVersion, &PanelAccessPolicy{}, &PanelAccessPolicyList{})
		return nil
	})
}
