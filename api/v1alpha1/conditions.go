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

// Condition types, as kstatus, Argo CD and Flux read them.
const (
	// ConditionReady is True when the panel matches the spec.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the operator is still working towards the spec.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the operator cannot make progress without a change from a person.
	ConditionStalled = "Stalled"
)

// Condition reasons. They are stable: alerts and scripts may match on them.
const (
	ReasonReconciled          = "Reconciled"
	ReasonProgressing         = "Progressing"
	ReasonSecretNotFound      = "SecretNotFound"
	ReasonSecretKeyMissing    = "SecretKeyMissing"
	ReasonWeakPassword        = "WeakPassword"
	ReasonInvalidPasswordHash = "InvalidPasswordHash"
	// ReasonHashCostOutOfRange: the passwordHash key holds a bcrypt hash whose cost is outside the
	// range the operator accepts (too dear for the panel's login, or too cheap to resist cracking).
	ReasonHashCostOutOfRange  = "HashCostOutOfRange"
	ReasonDuplicateEmail      = "DuplicateEmail"
	ReasonEmailTakenInPanel   = "EmailTakenInPanel"
	ReasonBoundElsewhere      = "BoundToAnotherResource"
	ReasonDuplicatePhone      = "DuplicatePhone"
	ReasonUnsupportedLanguage = "UnsupportedLanguage"
	ReasonDatabaseUnavailable = "DatabaseUnavailable"
	ReasonDeletionBlocked     = "DeletionBlocked"
	ReasonUserNotReady        = "UserNotReady"
	ReasonUserNotFound        = "UserNotFound"
	ReasonClientNotFound      = "ClientNotFound"
	// ReasonAmbiguousClient: several panel clients have the company name a ClientMembership
	// names; it names the client by uuid instead.
	ReasonAmbiguousClient     = "AmbiguousClient"
	ReasonOwnerConflict       = "OwnerConflict"
	ReasonDuplicateMembership = "DuplicateMembership"
	ReasonOwnerRemovalBlocked = "OwnerRemovalBlocked"
	ReasonPanelRefused        = "PanelRefused"
	// ReasonTOTPSecretConflict: the User's <name>-totp Secret exists and is neither the User's
	// nor an unowned one kubectl puq import made; the operator cannot issue the seed there.
	ReasonTOTPSecretConflict = "TOTPSecretConflict"
	// ReasonNotPermitted: no PanelAccessPolicy selecting the namespace grants what the object asks.
	ReasonNotPermitted = "NotPermitted"
	// ReasonInvalidSelector: a PanelAccessPolicy's namespace selector cannot be parsed; it grants
	// nothing until it is fixed.
	ReasonInvalidSelector = "InvalidSelector"
)
