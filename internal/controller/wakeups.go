package controller

import (
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// The watches between the two kinds wake an object only on the changes of the other that can
// change its own plan. Every reconcile ends in a status patch when something changed, and each
// patch is a watch event: mapped unfiltered, a User's status.clients patch woke all its
// memberships, whose status patches woke their Users and every peer of their client, and
// adopting one person took about 4 User and 5 ClientMembership reconciles (docs/benchmarks.md,
// "Import adoption"). Deletions and generic events always pass.

// userWakesMemberships passes the User changes a ClientMembership's plan reads
// (checkMembershipUser, ownerNamespace, setOwner): its creation, its spec (the email the
// grants judge), the start of its deletion, its panel user's UUID and whether it is Ready
// (Reconciled). A status patch that changes only status.clients or another condition passes
// nothing: the membership would plan exactly what it planned.
func userWakesMemberships() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		oldU, okOld := e.ObjectOld.(*v1.User)
		newU, okNew := e.ObjectNew.(*v1.User)
		if !okOld || !okNew {
			return true
		}
		return oldU.Generation != newU.Generation || oldU.UID != newU.UID ||
			!oldU.DeletionTimestamp.Equal(newU.DeletionTimestamp) || oldU.Status.UUID != newU.Status.UUID ||
			IsReadyReason(oldU.Status.Conditions, v1.ReasonReconciled) != IsReadyReason(newU.Status.Conditions, v1.ReasonReconciled)
	}}
}

// membershipWakesUser passes the ClientMembership changes that can change its User's
// status.clients (read from the panel): the panel association is written only by a reconcile
// that ends Ready (Reconciled), so a membership that becomes Ready, or is Ready at a new
// generation or for another client, has written; and removed only by a deletion (the start of
// it, and the membership going, which also unblocks its User's own deletion). Its creation,
// its finalizer and ownerReference, and the conditions of a membership that waits write
// nothing. (A drift repair that leaves the status as it was makes no event at all, with or
// without this filter: the User's resync reads status.clients again.)
func membershipWakesUser() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			oldM, okOld := e.ObjectOld.(*v1.ClientMembership)
			newM, okNew := e.ObjectNew.(*v1.ClientMembership)
			if !okOld || !okNew {
				return true
			}
			if !oldM.DeletionTimestamp.Equal(newM.DeletionTimestamp) || oldM.Spec.UserRef != newM.Spec.UserRef {
				return true
			}
			wasReady := IsReadyReason(oldM.Status.Conditions, v1.ReasonReconciled)
			isReady := IsReadyReason(newM.Status.Conditions, v1.ReasonReconciled)
			return wasReady != isReady || isReady && (oldM.Status.ObservedGeneration != newM.Status.ObservedGeneration ||
				oldM.Status.ClientUUID != newM.Status.ClientUUID || oldM.Status.UserUUID != newM.Status.UserUUID)
		},
	}
}

// membershipWakesPeers passes the ClientMembership changes its client's other memberships read
// (olderPeerConflict, bindingHolder, a blocked owner removal): the start of its deletion and its
// going, its spec (spec.owner), the user and client its status names, whether it is refused
// NotPermitted (such a peer claims nothing), and the generation it last applied (an ownership
// transfer made). Its creation (its status names no client yet, so it has no peers), its
// finalizer and its other condition changes pass nothing.
func membershipWakesPeers() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			oldM, okOld := e.ObjectOld.(*v1.ClientMembership)
			newM, okNew := e.ObjectNew.(*v1.ClientMembership)
			if !okOld || !okNew {
				return true
			}
			return oldM.Generation != newM.Generation || !oldM.DeletionTimestamp.Equal(newM.DeletionTimestamp) ||
				oldM.Status.UserUUID != newM.Status.UserUUID || oldM.Status.ClientUUID != newM.Status.ClientUUID ||
				oldM.Status.ObservedGeneration != newM.Status.ObservedGeneration ||
				IsReadyReason(oldM.Status.Conditions, v1.ReasonNotPermitted) != IsReadyReason(newM.Status.Conditions, v1.ReasonNotPermitted) ||
				IsReadyReason(oldM.Status.Conditions, v1.ReasonReconciled) != IsReadyReason(newM.Status.Conditions, v1.ReasonReconciled)
		},
	}
}
