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

// Password keys a referenced Secret may hold.
const (
	// PasswordKeyCleartext is the default Secret key: a cleartext password the operator checks
	// against its strength policy and hashes with bcrypt.
	PasswordKeyCleartext = "password"
	// PasswordKeyHash is the Secret key for a ready-made bcrypt hash, for repositories that must
	// not hold cleartext.
	PasswordKeyHash = "passwordHash"
)

// SecretKeyReference names a key of a Secret in the User's own namespace.
type SecretKeyReference struct {
	// name is the name of the Secret, in the same namespace as the User.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key is the key in the Secret's data. "password" (the default) holds a cleartext password that
	// the operator checks against its strength policy and hashes with bcrypt; "passwordHash" holds a
	// bcrypt hash ($2a$, $2b$ or $2y$) for repositories that must not hold cleartext.
	// +optional
	// +kubebuilder:default=password
	// +kubebuilder:validation:Enum=password;passwordHash
	Key string `json:"key,omitempty"`
}

// TwoFactorMethod is how the panel asks for the second factor at login.
// +kubebuilder:validation:Enum=Email;TOTP
type TwoFactorMethod string

const (
	// TwoFactorMethodEmail sends a one-time code to the user's email address.
	TwoFactorMethodEmail TwoFactorMethod = "Email"
	// TwoFactorMethodTOTP asks for a code from an authenticator app; the operator issues the seed.
	TwoFactorMethodTOTP TwoFactorMethod = "TOTP"
)

// TwoFactor configures two-factor authentication for the login.
type TwoFactor struct {
	// enabled turns two-factor authentication on: the panel asks for a code after the password.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// method chooses where the code comes from. Unset does what the panel's own admin toggle does:
	// only the on/off flag changes and the user's own default verification (email codes, or an app
	// they enrolled themselves) is kept. "Email" makes email codes the default. "TOTP" has the
	// operator issue an authenticator seed into the Secret named in status.totpSecretName;
	// disabling and enabling again issues a new seed (the fix for a lost device).
	// +optional
	Method TwoFactorMethod `json:"method,omitempty"`
}

// UserState is the account state an admin sets.
// +kubebuilder:validation:Enum=Active;Inactive
type UserState string

const (
	// UserStateActive makes the login active and enabled.
	UserStateActive UserState = "Active"
	// UserStateInactive marks the login inactive and disabled: the panel refuses its logins.
	UserStateInactive UserState = "Inactive"
)

// AdoptionPolicy says whether a User may take over a panel user that already has its email.
// +kubebuilder:validation:Enum=Never;IfExists
type AdoptionPolicy string

const (
	// AdoptionNever refuses to touch a panel user this resource did not create (EmailTakenInPanel).
	AdoptionNever AdoptionPolicy = "Never"
	// AdoptionIfExists binds an existing panel user with the same email and manages it from then on.
	AdoptionIfExists AdoptionPolicy = "IfExists"
)

// UserDeletionPolicy says what happens to the panel user when the resource is deleted.
// +kubebuilder:validation:Enum=Delete;Retain;Disable
type UserDeletionPolicy string

const (
	// UserDeletionDelete deletes the panel user; when the panel keeps it (it belongs to clients),
	// its login is disabled and it is released.
	UserDeletionDelete UserDeletionPolicy = "Delete"
	// UserDeletionRetain leaves the panel user as it is.
	UserDeletionRetain UserDeletionPolicy = "Retain"
	// UserDeletionDisable marks the panel user inactive and disabled, and keeps it.
	UserDeletionDisable UserDeletionPolicy = "Disable"
)

// UserSpec is the desired state of a panel login.
//
// The panel sends and accepts email codes only for a verified email row, so email two-factor on
// an unverified address would lock the person out.
// +kubebuilder:validation:XValidation:rule="!(has(self.twoFactor) && has(self.twoFactor.enabled) && self.twoFactor.enabled) || (has(self.twoFactor.method) && self.twoFactor.method == 'TOTP') || (has(self.emailVerified) && self.emailVerified)",message="twoFactor.enabled with method Email (or unset) needs emailVerified: true: the panel sends and accepts no codes for an unverified address, so the user could never log in; set emailVerified: true, use method: TOTP, or disable twoFactor",fieldPath=".twoFactor"
type UserSpec struct {
	// The email pattern: dot-separated atoms on either side of the @, each of RFC 5322 atext and
	// any non-ASCII character but white space (internal/crdvalidation's FuzzUserSpec holds it to
	// net/mail's reading of a bare address). Not format=email: that accepts
	// "Jane <jane@example.com>", and, a format skipping the type check, a list instead of a string
	// (which no client can then decode, so one such User stops every list of Users).

	// email is the login email: a bare address, local@domain, as the person types it at the
	// panel's login form (no display name, comment, quotes, domain literal or white space; letters
	// outside ASCII are allowed). It must be unique in the panel, compared as the panel's database
	// collation (utf8mb4_unicode_ci) compares: ignoring case, accents, width (fullwidth letters),
	// ignorable characters and trailing spaces, with ß equal to ss. A PanelAccessPolicy selecting
	// the namespace must grant it (spec.emails); otherwise Ready is False with reason NotPermitted,
	// and the panel is not asked about the email at all.
	// +required
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[^\x00-\x20\x7F\x{85}\p{Z}()<>\[\]:;@\\,".]+(\.[^\x00-\x20\x7F\x{85}\p{Z}()<>\[\]:;@\\,".]+)*@[^\x00-\x20\x7F\x{85}\p{Z}()<>\[\]:;@\\,".]+(\.[^\x00-\x20\x7F\x{85}\p{Z}()<>\[\]:;@\\,".]+)*$`
	Email string `json:"email"`

	// passwordSecretRef names the Secret, in the User's namespace, that holds the password.
	// Changing the Secret resets the password in the panel.
	// +required
	PasswordSecretRef SecretKeyReference `json:"passwordSecretRef"`

	// firstName is the user's first name, as shown in the panel. Required, as the panel's admin
	// form requires it: the panel copies it into the client it creates at the user's first visit.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	FirstName string `json:"firstName"`

	// lastName is the user's last name, as shown in the panel. Required, as the panel's admin
	// form requires it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	LastName string `json:"lastName"`

	// phone is the phone number in E.164 form: "+", the country code and the number, 7 to 15
	// digits, no spaces (for example +48123456789). It must be unique in the panel, compared on
	// digits only: a panel user whose number was typed with spaces (+48 123 456 789) holds the
	// same number.
	// +optional
	// +kubebuilder:validation:Pattern=`^\+[0-9]{7,15}$`
	Phone string `json:"phone,omitempty"`

	// language is the user's panel UI language, a locale code such as "en" or "pt_BR". It must be
	// one of the languages the operator is configured with (--languages). Unset, the person chooses
	// their own in the client area: an enabled choice is kept, anything else becomes the panel's
	// default client locale (--default-language).
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-z]{2}(_[A-Z]{2})?$`
	Language string `json:"language,omitempty"`

	// adminNotes are internal notes, visible to panel admins only (who requested access, a ticket link).
	// +optional
	// +kubebuilder:validation:MaxLength=65535
	AdminNotes string `json:"adminNotes,omitempty"`

	// emailVerified marks the email address as verified in the panel.
	// +optional
	EmailVerified bool `json:"emailVerified,omitempty"`

	// phoneVerified marks the phone number as verified in the panel.
	// +optional
	PhoneVerified bool `json:"phoneVerified,omitempty"`

	// twoFactor configures two-factor authentication.
	// +optional
	TwoFactor TwoFactor `json:"twoFactor,omitempty,omitzero"`

	// state sets the account state. Unset leaves it to the panel, which moves a NEW user to ACTIVE
	// at first login. "Inactive" also disables the login.
	// +optional
	State UserState `json:"state,omitempty"`

	// adoption says whether this resource may take over a panel user that already has its email
	// and that no resource manages. "Never" (the default) reports EmailTakenInPanel instead.
	// "IfExists" adopts only where a PanelAccessPolicy selecting the namespace grants the email with
	// spec.adoption.mode: IfEmailAllowed (otherwise NotPermitted, the panel user unchanged); a
	// panel user another resource manages is never adopted.
	// +optional
	// +kubebuilder:default=Never
	Adoption AdoptionPolicy `json:"adoption,omitempty"`

	// deletionPolicy says what happens to the panel user when this resource is deleted: "Delete"
	// (the default) removes it where the panel allows, and where the panel keeps it (it belongs to
	// clients) disables its login and releases it; "Disable" makes it inactive and disabled;
	// "Retain" leaves it untouched. Either way the resource goes without waiting on the panel.
	// +optional
	// +kubebuilder:default=Delete
	DeletionPolicy UserDeletionPolicy `json:"deletionPolicy,omitempty"`
}

// UserClient is one client the user can reach, as the panel's "User Clients" view shows it.
type UserClient struct {
	// uuid is the panel client's UUID.
	// +required
	UUID string `json:"uuid"`
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
	// owner is true when the user owns the client.
	// +optional
	Owner bool `json:"owner,omitempty"`
}

// UserStatus is the observed state of a panel login, read back from the panel.
type UserStatus struct {
	// uuid is the panel user's UUID.
	// +optional
	UUID string `json:"uuid,omitempty"`

	// panelStatus is the user's status in the panel: NEW, ACTIVE, INACTIVE, CLOSED or FRAUD.
	// +optional
	PanelStatus string `json:"panelStatus,omitempty"`

	// twoFactor is Enabled or Disabled, as the panel has it.
	// +optional
	TwoFactor string `json:"twoFactor,omitempty"`

	// emailVerified is the panel's email-verified flag.
	// +optional
	EmailVerified bool `json:"emailVerified,omitempty"`

	// phoneVerified is the panel's phone-verified flag.
	// +optional
	PhoneVerified bool `json:"phoneVerified,omitempty"`

	// clientCount is the number of clients the user is associated with (shown even when 0).
	// +optional
	ClientCount int32 `json:"clientCount"`

	// clients are the clients the user is associated with, including associations made in the
	// panel UI.
	// +optional
	// +listType=map
	// +listMapKey=uuid
	Clients []UserClient `json:"clients,omitempty"`

	// passwordUpdatedAt is when the operator last wrote the password to the panel.
	// +optional
	PasswordUpdatedAt *metav1.Time `json:"passwordUpdatedAt,omitempty"`

	// passwordSecretVersion identifies the Secret content last applied (its UID and
	// resourceVersion, followed by "/passwordHash" when that key was applied), so the password is
	// hashed again only when the Secret or the key changes.
	// +optional
	PasswordSecretVersion string `json:"passwordSecretVersion,omitempty"`

	// totpSecretName is the Secret holding the authenticator seed, when twoFactor.method is TOTP.
	// +optional
	TOTPSecretName string `json:"totpSecretName,omitempty"`

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
// +kubebuilder:resource:shortName=puser,categories=puqcloud
// +kubebuilder:selectablefield:JSONPath=`.spec.email`
// +kubebuilder:printcolumn:name="Email",type=string,JSONPath=`.spec.email`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.panelStatus`
// +kubebuilder:printcolumn:name="2FA",type=string,JSONPath=`.status.twoFactor`
// +kubebuilder:printcolumn:name="Clients",type=integer,JSONPath=`.status.clientCount`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// User is a PUQcloud Panel login: a person's email, password, names, phone, language, verified
// flags, two-factor authentication and state. The operator keeps the panel user equal to it.
type User struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitzero"`

	// spec is the desired panel login.
	// +required
	Spec UserSpec `json:"spec"`

	// status is the panel login as the panel has it.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status UserStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// UserList contains a list of User.
type UserList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitzero"`
	Items           []User `json:"items"`
}

func init() {
	SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(SchemeGroupVersion, &User{}, &UserList{})
		return nil
	})
}
