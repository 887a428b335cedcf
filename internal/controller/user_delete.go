package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// membershipsPoll is how soon a User whose deletion waits for its ClientMemberships looks again
// (their deletion also wakes it).
const membershipsPoll = 2 * time.Second

// reconcileDelete releases what the User holds in the panel as its deletion policy says, then
// removes the finalizer. What it holds is what the binding table says (matched as the User's
// reconcile matches it, panel.Operator.Claim: by UID in this cluster, by name in the previous
// one), never what status says: a status write lost after the panel user was created does not
// leave that user behind, a status naming someone else's panel user releases nothing, and a User
// re-created under an old name releases nothing its predecessor made.
func (r *UserReconciler) reconcileDelete(ctx context.Context, user *v1.User) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(user, UserFinalizer) {
		return ctrl.Result{}, nil
	}
	if v1.Abandoned(user.Annotations) {
		// The admin's word that the panel database is gone for good: no database call at all.
		r.Recorder.Eventf(user, nil, corev1.EventTypeWarning, v1.ReasonAbandoned, "Abandon",
			"The %s annotation is set: the finalizer was removed without reaching the panel database; "+
				"the panel user this User made (if any) was left as it is", v1.AnnotationAbandon)
		logf.FromContext(ctx).Info("Abandoned the panel side of a deleted User", "user", klog.KObj(user), "uuid", user.Status.UUID)
		return r.removeFinalizer(ctx, user)
	}
	base := user.DeepCopy()
	o, err := r.release(ctx, user)
	if err == nil && o == nil {
		return r.removeFinalizer(ctx, user)
	}
	if err != nil {
		var oe outcome
		oe, err = errorOutcome(err)
		o = &oe
	}
	setConditions(&user.Status.Conditions, user.Generation, *o)
	if patchErr := r.patchStatus(ctx, base, user); patchErr != nil && err == nil {
		err = patchErr
	}
	switch {
	case err != nil:
		return ctrl.Result{}, err
	case o.kind == outcomeRetrying:
		return ctrl.Result{}, errors.New(o.message)
	}
	return ctrl.Result{RequeueAfter: membershipsPoll}, nil
}

func (r *UserReconciler) removeFinalizer(ctx context.Context, user *v1.User) (ctrl.Result, error) {
	trackedUsers.set(user.UID, "")
	controllerutil.RemoveFinalizer(user, UserFinalizer)
	return ctrl.Result{}, r.Update(ctx, user)
}

// release applies the deletion policy to every panel user bound to this User (normally one). A
// nil outcome and error mean done. With the policy Delete the User's memberships go first; while
// they go, the login is already disabled, so removing a person from git ends their access at
// once. A panel user the panel keeps (it belongs to clients made in the panel UI, or it owns a
// client) is disabled and released: the person cannot log in, the clients keep their records.
func (r *UserReconciler) release(ctx context.Context, user *v1.User) (*outcome, error) {
	bindings, err := r.Store.BindingsOf(ctx, r.Options.operator(), user.Namespace, user.Name, string(user.UID))
	if err != nil {
		return nil, err
	}
	if len(bindings) == 0 {
		if user.Status.UUID != "" {
			r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "LeftAlone", "Release",
				"The panel user named in status is not bound to this User; it was left as it is")
		}
		return nil, nil
	}
	mode := releaseMode(user)
	if mode == panel.ReleaseDelete {
		pending, err := r.deleteMemberships(ctx, user)
		if err != nil {
			return nil, err
		}
		if pending > 0 {
			for _, b := range bindings {
				if _, err := r.Store.DisableUser(ctx, b.UserUUID); err != nil {
					return nil, err
				}
			}
			o := progressing(v1.ReasonDeletionBlocked, "Waiting for %d ClientMembership(s) of this User to be removed; "+
				"the panel login is disabled meanwhile.", pending)
			return &o, nil
		}
	}
	log := logf.FromContext(ctx)
	for _, b := range bindings {
		done, err := r.Store.Release(ctx, b, mode)
		switch {
		case errors.Is(err, panel.ErrConflict):
			r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "LeftAlone", "Release",
				"Panel user %s is now bound to another resource; it was left as it is", b.UserUUID)
			continue
		case err != nil:
			return nil, err
		}
		switch {
		case done.Deleted:
			log.Info("Deleted panel user", "user", klog.KObj(user), "uuid", b.UserUUID)
			r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "Deleted", "DeleteUser", "Deleted panel user %s", b.UserUUID)
			// The seed has nothing left to open; garbage collection would remove the Secret too,
			// once the User is gone.
			if err := r.deleteTOTPSecret(ctx, user); err != nil {
				return nil, err
			}
		case len(done.KeptFor) > 0:
			log.Info("Disabled panel user the panel keeps", "user", klog.KObj(user), "uuid", b.UserUUID)
			r.Recorder.Eventf(user, nil, corev1.EventTypeWarning, "DisabledNotDeleted", "DeleteUser",
				"The panel keeps panel user %s, which belongs to clients (%s): its login was disabled and it was released. "+
					"Reassign or remove the clients and delete it in the panel if it must go.", b.UserUUID,
				strings.Join(done.KeptFor, ", "))
		case done.Disabled:
			log.Info("Disabled panel user", "user", klog.KObj(user), "uuid", b.UserUUID)
			r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "Disabled", "DisableUser", "Disabled panel user %s", b.UserUUID)
		}
	}
	return nil, nil
}

// deleteMemberships deletes the ClientMemberships that reference the User and returns how many
// are still there. Garbage collection would do the same through their ownerReferences, but only
// once the User is gone, which its finalizer prevents.
func (r *UserReconciler) deleteMemberships(ctx context.Context, user *v1.User) (int, error) {
	var list v1.ClientMembershipList
	if err := r.List(ctx, &list, client.InNamespace(user.Namespace), client.MatchingFields{indexMembershipUser: user.Name}); err != nil {
		return 0, fmt.Errorf("cannot list the User's memberships: %w", err)
	}
	for i := range list.Items {
		m := &list.Items[i]
		if m.DeletionTimestamp.IsZero() {
			if err := r.Delete(ctx, m); err != nil && !apierrors.IsNotFound(err) {
				return 0, fmt.Errorf("cannot delete ClientMembership %s: %w", m.Name, err)
			}
		}
	}
	return len(list.Items), nil
}

// lostUsers remembers the Users the API server deleted while they still held the operator's
// finalizer and were never marked for deletion, so that what they made in the panel is released
// anyway. It happens when a DELETE
// races the update that adds the finalizer: the API server read the object without a finalizer,
// decided to delete it at once, and removed it (finalizer and all) after the update landed; the
// reconcile that added the finalizer goes on to create the panel user, and no deletion reconcile
// ever runs. The delete event carries the object's last state; the next reconcile of its name,
// which the work queue runs only after any reconcile of it in flight, finds it gone and releases
// the bindings of that UID as its deletion policy said.
type lostUsers struct{ m sync.Map }

// handler records a User whose delete event still lists the finalizer.
func (l *lostUsers) handler() handler.EventHandler {
	return handler.Funcs{DeleteFunc: func(_ context.Context, e eventDelete, _ workqueue) {
		// A User finalized the ordinary way carries its deletionTimestamp in its last state (and
		// may still list the finalizer its last update removed); one deleted through the race
		// never had one.
		u, ok := e.Object.(*v1.User)
		if ok && controllerutil.ContainsFinalizer(u, UserFinalizer) && u.DeletionTimestamp.IsZero() {
			l.m.Store(client.ObjectKeyFromObject(u), u.DeepCopy())
		}
	}}
}

// releaseLost releases what a User deleted with its finalizer still on made in the panel (see
// lostUsers); a User gone the ordinary way has nothing left to release.
func (r *UserReconciler) releaseLost(ctx context.Context, key types.NamespacedName) (ctrl.Result, error) {
	v, ok := r.lost.m.Load(key)
	if !ok {
		return ctrl.Result{}, nil
	}
	user := v.(*v1.User)
	bindings, err := r.Store.BindingsOf(ctx, r.Options.operator(), user.Namespace, user.Name, string(user.UID))
	if err != nil {
		return ctrl.Result{}, err
	}
	mode := releaseMode(user)
	for _, b := range bindings {
		if b.ResourceUID != string(user.UID) {
			continue // the previous cluster's, which this User never wrote: left for the next of its name
		}
		if _, err := r.Store.Release(ctx, b, mode); err != nil && !errors.Is(err, panel.ErrConflict) {
			return ctrl.Result{}, err
		}
		logf.FromContext(ctx).Info("Released the panel user of a User deleted with its finalizer on", "user", klog.KObj(user),
			"uuid", b.UserUUID, "policy", mode)
	}
	trackedUsers.set(user.UID, "")
	r.lost.m.Delete(key)
	return ctrl.Result{}, nil
}

// releaseMode is the User's deletion policy as a release mode (Delete when unset).
func releaseMode(user *v1.User) panel.ReleaseMode {
	if user.Spec.DeletionPolicy == "" {
		return panel.ReleaseDelete
	}
	return panel.ReleaseMode(user.Spec.DeletionPolicy)
}
