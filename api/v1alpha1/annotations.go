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

// AnnotationAbandon, set to "true" on a User or ClientMembership that is being deleted, tells the
// operator to let the resource go without touching the panel: the finalizer is removed, nothing is
// read from or written to the panel database, and a Warning event with reason Abandoned says so.
// It is the way out when the panel database is gone for good and a deletion would otherwise wait
// forever with DatabaseUnavailable. Whatever the resource made in the panel (a panel user, its
// binding, an association) is left as it is, unchecked. On an object that is not being deleted the
// annotation has no effect, so it cannot be set ahead of time by mistake and take effect later
// against a reachable database without a deletion.
const AnnotationAbandon = "panel.puqcloud.com/abandon"

// ReasonAbandoned is the reason of the Warning event emitted when a deletion was abandoned.
const ReasonAbandoned = "Abandoned"

// Abandoned reports whether an object's annotations ask to abandon its panel side on deletion.
func Abandoned(annotations map[string]string) bool {
	return annotations[AnnotationAbandon] == "true"
}

// LabelImported, set to "true", marks a Secret that `kubectl puq import` created from the panel's
// own values (a password hash, an authenticator seed). A `<user>-totp` Secret so labelled and
// controlled by no one is adopted by the User of that name instead of being a conflict: its seed
// is the one the panel holds, so nobody enrols again.
const LabelImported = "panel.puqcloud.com/imported"
