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

// Permission is a per-client permission key of the panel.
// +kubebuilder:validation:Enum=modify-master-profile;manage-users;manage-services;manage-domains;manage-invoices;manage-support-tickets;manage-affiliate;manage-orders
type Permission string

// The panel's permission keys, in the panel's own order (config/userPermissions.php).
const (
	PermissionModifyMasterProfile  Permission = "modify-master-profile"
	PermissionManageUsers          Permission = "manage-users"
	PermissionManageServices       Permission = "manage-services"
	PermissionManageDomains        Permission = "manage-domains"
	PermissionManageInvoices       Permission = "manage-invoices"
	PermissionManageSupportTickets Permission = "manage-support-tickets"
	PermissionManageAffiliate      Permission = "manage-affiliate"
	PermissionManageOrders         Permission = "manage-orders"
)

// AllPermissions lists every permission key in the panel's order.
var AllPermissions = []Permission{
	PermissionModifyMasterProfile,
	PermissionManageUsers,
	PermissionManageServices,
	PermissionManageDomains,
	PermissionManageInvoices,
	PermissionManageSupportTickets,
	PermissionManageAffiliate,
	PermissionManageOrders,
}

// LocalUserReference names a User in the same namespace.
type LocalUserReference struct {
	// name is the name of the User resource, in the membership's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ClientSelector finds a panel client, by exactly one of uuid or companyName.
// +kubebuilder:validation:XValidation:rule="has(self.uuid) != has(self.companyName)",message="set exactly one of client.uuid or client.companyName"
type ClientSelector struct {
	// uuid is the panel client's UUID (lowercase, hyphenated).
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`
	UUID string `json:"uuid,omitempty"`

	// companyName is the panel client's company name, unique in the panel.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	CompanyName string `json:"companyName,omitempty"`
}

// MembershipDeletionPolicy says what happens to the association when the resource is deleted.
// +kubebuilder:validation:Enum=Delete;Retain
type MembershipDeletionPolicy string

const (
	// MembershipDeletionDelete removes the association from the panel.
	MembershipDeletionDelete MembershipDeletionPolicy = "Delete"
	// MembershipDeletionRetain leaves the association in the panel.
	MembershipDeletionRetain MembershipDeletionPolicy = "Retain"
)

// ClientMembershipSpec is the desired association of a User with a panel client.
type ClientMembershipSpec struct {
	// userRef names the User, in the same namespace. It cannot be changed.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="userRef is immutable; create a new ClientMembership instead"
	UserRef LocalUserReference `json:"userRef"`

	// client selects the panel client, by uuid or by companyName. It cannot be changed. A
	// PanelAccessPolicy selecting the namespace must grant the client (spec.clients); otherwise
	// Ready is False with reason NotPermitted and nothing of the client is shown, whether it exists
	// or not.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="client is immutable; create a new ClientMembership instead"
	Client ClientSelector `json:"client"`

	// owner makes the user the client's owner, as the panel's "transfer ownership" does: the owner
	// gets every permission, and the previous owner keeps every permission but loses the flag.
	// Only where a PanelAccessPolicy granting the client sets spec.clients.ownership: Allowed.
	// +optional
	Owner bool `json:"owner,omitempty"`

	// permissions are the user's permissions on this client. Ignored for the owner, who has them all.
	// At most the spec.maxPermissions of a PanelAccessPolicy granting the client.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=8
	Permissions []Permission `json:"permissions,omitempty"`

	// deletionPolicy says what happens to the association when this resource is deleted: "Delete"
	// (the default) removes it from the panel, "Retain" leaves it.
	// +optional
	// +kubebuilder:default=Delete
	DeletionPolicy MembershipDeletionPolicy `json:"deletionPolicy,omitempty"`
}

// ClientSummary is a panel client as the "User Clients" view shows it.
type ClientSummary struct {
	// name is the client's contact name (first and last name).
	// +optional
	Name string `json:"name,omitempty"`
	// companyName is the client's company name.
	// +optional
	CompanyName string `json:"companyName,omitempty"`
	// taxID is the client's tax identifier.
	// +optional
	TaxID string `json:"taxID,omitempty"`
	// status is the client's panel status (NEW, ACTIVE, INACTIVE, CLOSED, FRAUD).
	// +optional
	Status string `json:"status,omitempty"`
}

// ClientMembershipStatus is the observed association.
type ClientMembershipStatus struct {
	// userUUID is the panel user's UUID.
	// +optional
	UserUUID string `json:"userUUID,omitempty"`

	// clientUUID is the panel client's UUID.
	// +optional
	ClientUUID string `json:"clientUUID,omitempty"`

	// client summarises the panel client.
	// +optional
	Client *ClientSummary `json:"client,omitempty"`

	// observedGeneration is the generation the operator last judged: reconciled, or found waiting
	// on a problem a person must fix. 0 until the operator has seen the object, so kstatus, Argo CD
	// and Flux read a new object as in progress.
	// +optional
	// +kubebuilder:default=0
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions are Ready, Reconciling and Stalled, in the form kstatus, Argo CD and Flux read.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pcm,categories=puqcloud
// +kubebuilder:printcolumn:name="User",type=string,JSONPath=`.spec.userRef.name`
// +kubebuilder:printcolumn:name="Client",type=string,JSONPath=`.status.client.companyName`
// +kubebuilder:printcolumn:name="Owner",type=boolean,JSONPath=`.spec.owner`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// ClientMembership associates a User with a panel client, as owner or with per-client permissions,
// like the panel's Client -> Users tab.
type ClientMembership struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitzero"`

	// spec is the desired association.
	// +required
	Spec ClientMembershipSpec `json:"spec"`

	// status is the association as the panel has it.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status ClientMembershipStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// ClientMembershipList contains a list of ClientMembership.
type ClientMembershipList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitzero"`
	Items           []ClientMembership `json:"items"`
}

func init() {
	SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(SchemeGroupVersion, &ClientMembership{}, &ClientMembershipList{})
		return nil
	})
}
