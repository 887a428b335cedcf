package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/totp"
)

// carryOut does what the plan says, in this order: the new TOTP Secret (so a seed in the panel is
// always one a Secret holds), the bcrypt hash, the one panel transaction, then the withdrawn TOTP
// Secret's deletion; and sets the status fields from what was done. A stopped plan writes nothing.
func (r *UserReconciler) carryOut(ctx context.Context, user *v1.User, f userFacts, p userPlan) (outcome, error) {
	if p.stop != nil {
		if p.stop.reason == v1.ReasonDuplicateEmail && p.stop.kind == outcomeWaiting &&
			!IsReadyReason(user.Status.Conditions, v1.ReasonDuplicateEmail) {
			r.Recorder.Eventf(user, nil, corev1.EventTypeWarning, v1.ReasonDuplicateEmail, "CheckEmail", p.stop.message)
		}
		return *p.stop, nil
	}
	if p.incomplete {
		return outcome{}, errors.New("the facts gathered do not decide the plan") // gatherUser reads them all
	}
	var u panel.User
	var clients []panel.UserClient
	if snap := f.found.Snapshot; snap != nil {
		clients = snap.Clients
		if p.current != nil {
			u = *p.current
		} else {
			u = snap.User()
		}
	}
	if p.adoptTOTP {
		if err := r.adoptTOTPSecret(ctx, user); err != nil {
			return outcome{}, err
		}
	}
	if p.change != nil {
		if err := r.prepareChange(ctx, user, &p); err != nil {
			return outcome{}, err
		}
		applied, err := r.Store.Apply(ctx, *p.change)
		if errors.Is(err, panel.ErrDuplicateEmail) && p.change.UUID == "" {
			// Another User or the panel took the email since it was looked up (two Users created
			// in the same second): look again at once, and the holder rule decides.
			return retrying(v1.ReasonDuplicateEmail, "Another panel user got this email while this one was being created; "+
				"looking again."), nil
		}
		if err != nil {
			return outcome{}, err
		}
		if err := afterPanelWrite(ctx, user); err != nil {
			return outcome{}, err
		}
		u = applied.User
		if applied.Created {
			clients = nil
		}
		r.reportChange(ctx, user, p, applied)
	}
	if p.withdrawTOTP {
		if err := r.deleteTOTPSecret(ctx, user); err != nil {
			return outcome{}, err
		}
	}
	plannedStatus(&user.Status, p, u, clients)
	trackedUsers.set(user.UID, user.Status.PanelStatus)
	return ready("The panel user matches the spec."), nil
}

// afterPanelWrite runs between the panel transaction's commit and the status write; a test sets
// it to lose that write (a crash or a conflict at the worst moment).
var afterPanelWrite = func(context.Context, *v1.User) error { return nil }

// prepareChange fills in what the plan left to its execution: the seed of a new TOTP Secret and
// the hash of a cleartext password.
func (r *UserReconciler) prepareChange(ctx context.Context, user *v1.User, p *userPlan) error {
	if p.issueTOTP {
		seed, err := r.issueTOTPSecret(ctx, user)
		if err != nil {
			return err
		}
		p.change.Desired.TOTPSecret = seed
	}
	if p.cleartext != "" {
		h, err := r.hash(ctx, p.cleartext)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errWeakPassword, err)
		}
		p.change.PasswordHash = h
	}
	return nil
}

// errWeakPassword marks a password bcrypt refused (longer than 72 bytes).
var errWeakPassword = errors.New("the password cannot be hashed")

// reportChange logs, records events and sets the status timestamps for what the transaction did.
func (r *UserReconciler) reportChange(ctx context.Context, user *v1.User, p userPlan, a panel.Applied) {
	log := logf.FromContext(ctx)
	if a.Created {
		if p.recreated {
			r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "Recreated", "CreateUser",
				"Panel user %s was deleted outside the operator; created a new one", user.Status.UUID)
		}
		log.Info("Created panel user", "user", klog.KObj(user), "uuid", a.User.UUID)
		r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "Created", "CreateUser", "Created panel user %s", a.User.UUID)
		now := metav1.Now()
		user.Status.PasswordUpdatedAt = &now
		return
	}
	if p.adopt {
		r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "Adopted", "Adopt", "Adopted the existing panel user %s", a.User.UUID)
	}
	fields := slices.DeleteFunc(slices.Clone(a.Changed), func(c string) bool { return c == "password" })
	if len(fields) > 0 {
		reason, note := "Updated", "Updated panel user fields: %s"
		if user.Status.ObservedGeneration == user.Generation && IsReadyReason(user.Status.Conditions, v1.ReasonReconciled) {
			reason, note = "DriftCorrected", "Repaired panel user fields changed outside the operator: %s"
		}
		log.Info("Updated panel user", "user", klog.KObj(user), "fields", fields)
		r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, reason, "UpdateUser", note, strings.Join(fields, ", "))
	}
	if len(fields) < len(a.Changed) {
		now := metav1.Now()
		user.Status.PasswordUpdatedAt = &now
		log.Info("Set panel user password", "user", klog.KObj(user))
		r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "PasswordChanged", "SetPassword",
			"Set the panel password from Secret %s", user.Spec.PasswordSecretRef.Name)
	}
}

// adoptTOTPSecret makes the User the controller of the TOTP Secret kubectl puq import created, so
// that it is the User's from now on (withdrawn with it, watched as its own). The patch carries the
// resourceVersion read: a Secret changed in between is read and decided again.
func (r *UserReconciler) adoptTOTPSecret(ctx context.Context, user *v1.User) error {
	secret := &corev1.Secret{}
	if err := r.readSecret(ctx, client.ObjectKey{Namespace: user.Namespace, Name: totpSecretName(user)}, secret); err != nil {
		return fmt.Errorf("cannot read the imported TOTP Secret: %w", err)
	}
	base := secret.DeepCopy()
	if err := controllerutil.SetControllerReference(user, secret, r.Scheme()); err != nil {
		return fmt.Errorf("cannot adopt the imported TOTP Secret: %w", err)
	}
	if err := r.Patch(ctx, secret, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("cannot adopt the imported TOTP Secret: %w", err)
	}
	r.Recorder.Eventf(user, secret, corev1.EventTypeNormal, "TwoFactorAdopted", "AdoptSeed",
		"Adopted the imported authenticator seed in Secret %s", secret.Name)
	return nil
}

// issueTOTPSecret issues a new authenticator seed into a new Secret owned by the User, and
// returns the seed.
func (r *UserReconciler) issueTOTPSecret(ctx context.Context, user *v1.User) (string, error) {
	name := totpSecretName(user)
	key, err := totp.Issue(r.Options.TOTPIssuer, user.Spec.Email)
	if err != nil {
		return "", err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: user.Namespace, Name: name,
			Labels: map[string]string{totp.ManagedByLabel: totp.IssuedBy}},
		Type: corev1.SecretTypeOpaque,
		Data: key.SecretData(),
	}
	if err := controllerutil.SetControllerReference(user, secret, r.Scheme()); err != nil {
		return "", err
	}
	if err := r.Create(ctx, secret); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("the TOTP Secret appeared while issuing a seed; retrying: %w", err)
		}
		return "", fmt.Errorf("cannot create the TOTP Secret: %w", err)
	}
	r.Recorder.Eventf(user, secret, corev1.EventTypeNormal, "TwoFactorEnrolled", "IssueSeed",
		"Issued a new authenticator seed into Secret %s", name)
	return key.Secret, nil
}

// patchStatus writes the status once, as a merge patch from base (the User as read), and only
// when it changed. The patch carries base's resourceVersion: a merge patch computed from a cached
// object older than the server's leaves out the fields that object already had, so the server
// would keep values this reconcile did not mean; instead it conflicts, and the User is reconciled
// again from a fresh read (retryConflicts).
func (r *UserReconciler) patchStatus(ctx context.Context, base, user *v1.User) error {
	if equality.Semantic.DeepEqual(&base.Status, &user.Status) {
		return nil
	}
	return r.Status().Patch(ctx, user, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

// errorOutcome is the one place an error of a reconcile becomes a condition: the store's typed
// errors (databaseOutcome), a binding or panel user that changed under the reconcile (read again
// at once), a password bcrypt cannot hash; anything else is retried with backoff and named.
func errorOutcome(err error) (outcome, error) {
	switch {
	case errors.Is(err, panel.ErrConflict):
		return retrying(v1.ReasonProgressing, "The panel user's binding changed while this User was reconciled; "+
			"reconciling again."), nil
	case errors.Is(err, panel.ErrNotFound):
		return retrying(v1.ReasonProgressing, "The panel user went away while this User was reconciled; reconciling again."), nil
	case errors.Is(err, errWeakPassword):
		return waiting(v1.ReasonWeakPassword, "%v; the panel's password is unchanged.", err), nil
	}
	if o := databaseOutcome(err); o != nil {
		return *o, nil
	}
	return retrying(v1.ReasonProgressing, "Reconciling failed; retrying with backoff: %v", err), err
}
