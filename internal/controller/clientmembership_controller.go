package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// MembershipFinalizer keeps a ClientMembership until its panel association is removed or released.
const MembershipFinalizer = "panel.puqcloud.com/clientmembership"

// membershipStatusHook, when set (by tests only), runs after the store committed and before the
// status is written; an error it returns is the reconcile's, and the status is not written: as if
// the process had died between the two.
var membershipStatusHook func(*v1.ClientMembership) error

// ClientMembershipReconciler keeps a client_x_user row equal to its ClientMembership.
type ClientMembershipReconciler struct {
	client.Client
	Store    *panel.Store
	Recorder recorder.EventRecorder
	Options  Options
}

// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=clientmemberships,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=clientmemberships/status,verbs=update
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=clientmemberships/finalizers,verbs=update

// Reconcile brings one association in line with its spec.
func (r *ClientMembershipReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return retryConflicts(r.reconcile(ctx, req))
}

func (r *ClientMembershipReconciler) reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	m := &v1.ClientMembership{}
	if err := r.Get(ctx, req.NamespacedName, m); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := m.Status.DeepCopy()
	if !m.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, m, before)
	}
	user := &v1.User{}
	userErr := r.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Spec.UserRef.Name}, user)
	if client.IgnoreNotFound(userErr) != nil {
		return ctrl.Result{}, userErr
	}
	if changed, err := r.ensureMetadata(m, user, userErr == nil); err != nil {
		return ctrl.Result{}, err
	} else if changed {
		if err := r.Update(ctx, m); err != nil {
			return ctrl.Result{}, err
		}
	}
	o, err := r.reconcileNormal(ctx, m, user, userErr == nil)
	// A client created later in the panel is picked up on the next resync.
	return conclude("ClientMembership", &m.Status.Conditions, &m.Status.ObservedGeneration, m.Generation, o, err,
		func() error { return r.patchStatus(ctx, m, before) }, r.Options.resync(), v1.ReasonClientNotFound)
}

// ensureMetadata adds the finalizer and an ownerReference to the User, so that garbage collection
// removes the membership with its User.
func (r *ClientMembershipReconciler) ensureMetadata(m *v1.ClientMembership, user *v1.User, userFound bool) (bool, error) {
	changed := controllerutil.AddFinalizer(m, MembershipFinalizer)
	if userFound && !metav1.IsControlledBy(m, user) && user.DeletionTimestamp.IsZero() {
		if err := controllerutil.SetOwnerReference(user, m, r.Scheme()); err != nil {
			return false, err
		}
		changed = true
	}
	return changed, nil
}

func (r *ClientMembershipReconciler) reconcileNormal(ctx context.Context, m *v1.ClientMembership, user *v1.User,
	userFound bool) (outcome, error) {
	if !userFound {
		return waiting(v1.ReasonUserNotFound, "User %s/%s named in spec.userRef does not exist; create it.",
			m.Namespace, m.Spec.UserRef.Name), nil
	}
	if user.Status.UUID == "" || !isReadyReason(user.Status.Conditions, v1.ReasonReconciled) {
		return waiting(v1.ReasonUserNotReady, "User %s is not Ready yet; the association is written once it is.", user.Name), nil
	}
	m.Status.UserUUID = user.Status.UUID
	c, err := r.Store.FindClient(ctx, m.Spec.Client.UUID, m.Spec.Client.CompanyName)
	if errors.Is(err, panel.ErrNotFound) {
		return waiting(v1.ReasonClientNotFound, "No panel client matches spec.client (%s); create it in the panel or fix the "+
			"selector. Checked again every resync.", describeSelector(m.Spec.Client)), nil
	}
	if err != nil {
		return deref(databaseOutcome(err)), storeErr(err)
	}
	m.Status.ClientUUID = c.UUID
	m.Status.Client = &v1.ClientSummary{Name: c.Name, CompanyName: c.CompanyName, TaxID: c.TaxID, Status: strings.ToUpper(c.Status)}
	if o, err := r.checkConflicts(ctx, m); o != nil || err != nil {
		return deref(o), err
	}
	perms := make([]string, 0, len(m.Spec.Permissions))
	for _, p := range m.Spec.Permissions {
		perms = append(perms, string(p))
	}
	changed, err := r.Store.ApplyMembership(ctx, r.binding(m, user.Status.UUID, c.UUID),
		panel.Membership{Owner: m.Spec.Owner, Permissions: perms}, "")
	if errors.Is(err, panel.ErrRefused) {
		return waiting(v1.ReasonOwnerConflict, "The user owns client %s; the panel takes ownership away only by "+
			"transferring it. Set spec.owner: true on another membership of this client.", c.UUID), nil
	}
	if err != nil {
		return deref(databaseOutcome(err)), storeErr(err)
	}
	if changed {
		reason, note := "Updated", "Associated the user with client %s"
		if m.Status.ObservedGeneration == m.Generation && isReadyReason(m.Status.Conditions, v1.ReasonReconciled) {
			reason, note = "DriftCorrected", "Repaired the association with client %s, changed outside the operator"
		}
		logf.FromContext(ctx).Info("Wrote panel association", "membership", klog.KObj(m), "client", c.UUID)
		r.Recorder.Eventf(m, nil, corev1.EventTypeNormal, reason, "ApplyMembership", note, c.UUID)
	}
	return ready("The association matches the spec."), nil
}

func describeSelector(s v1.ClientSelector) string {
	if s.UUID != "" {
		return "uuid " + s.UUID
	}
	return fmt.Sprintf("companyName %q", s.CompanyName)
}

// checkConflicts lets the oldest membership win when two name the same user and client, or when
// two claim ownership of one client.
func (r *ClientMembershipReconciler) checkConflicts(ctx context.Context, m *v1.ClientMembership) (*outcome, error) {
	var list v1.ClientMembershipList
	if err := r.List(ctx, &list, client.MatchingFields{indexMembershipClient: m.Status.ClientUUID}); err != nil {
		return nil, fmt.Errorf("cannot list memberships by client: %w", err)
	}
	for i := range list.Items {
		other := &list.Items[i]
		if other.UID == m.UID || !other.DeletionTimestamp.IsZero() || !olderThan(other.ObjectMeta, m.ObjectMeta) {
			continue
		}
		if other.Status.UserUUID == m.Status.UserUUID {
			o := waiting(v1.ReasonDuplicateMembership, "ClientMembership %s/%s, created earlier, already associates this user "+
				"with this client; delete one of them.", other.Namespace, other.Name)
			return &o, nil
		}
		if m.Spec.Owner && other.Spec.Owner {
			o := waiting(v1.ReasonOwnerConflict, "ClientMembership %s/%s, created earlier, already makes its user the owner of "+
				"this client; a client has one owner. Set spec.owner: false on one of them.", other.Namespace, other.Name)
			return &o, nil
		}
	}
	return nil, nil
}

// reconcileDelete removes the association (Delete) or leaves it (Retain), then the finalizer.
func (r *ClientMembershipReconciler) reconcileDelete(ctx context.Context, m *v1.ClientMembership,
	before *v1.ClientMembershipStatus) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(m, MembershipFinalizer) {
		return ctrl.Result{}, nil
	}
	if v1.Abandoned(m.Annotations) {
		// The admin's word that the panel database is gone for good: no database call at all.
		r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, v1.ReasonAbandoned, "Abandon",
			"The %s annotation is set: the finalizer was removed without reaching the panel database; "+
				"the panel association this ClientMembership made (if any) was left as it is", v1.AnnotationAbandon)
		logf.FromContext(ctx).Info("Abandoned the panel side of a deleted ClientMembership", "membership", klog.KObj(m))
		controllerutil.RemoveFinalizer(m, MembershipFinalizer)
		return ctrl.Result{}, r.Update(ctx, m)
	}
	// The binding table, not status, says what this resource made: a status write lost after the
	// association committed must not leave the association behind.
	bound, err := r.Store.BoundMemberships(ctx, r.Options.InstanceID, string(m.UID))
	if err != nil {
		if o := databaseOutcome(err); o != nil {
			setConditions(&m.Status.Conditions, m.Generation, *o)
			_ = r.patchStatus(ctx, m, before)
		}
		return ctrl.Result{}, err
	}
	for _, st := range bound {
		b := *st.Binding
		if m.Spec.DeletionPolicy == v1.MembershipDeletionRetain {
			if err := r.Store.ReleaseMembership(ctx, b); err != nil {
				return ctrl.Result{}, err
			}
			continue
		}
		err := r.Store.RemoveMembership(ctx, b)
		if errors.Is(err, panel.ErrRefused) {
			o := waiting(v1.ReasonOwnerRemovalBlocked, "The user is the owner of client %s and the panel does not remove an owner. "+
				"Make another user the owner (spec.owner: true on their membership), or set spec.deletionPolicy: Retain.",
				b.ClientUUID)
			if !isStalledReason(m.Status.Conditions, v1.ReasonOwnerRemovalBlocked) {
				r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, v1.ReasonOwnerRemovalBlocked, "RemoveMembership", o.message)
			}
			setConditions(&m.Status.Conditions, m.Generation, o)
			if err := r.patchStatus(ctx, m, before); err != nil {
				return ctrl.Result{}, err
			}
			// A transfer made in the panel UI: no watch sees it (one made by another membership
			// wakes this one through peersOfClient).
			return blockedRequeue(m.Status.Conditions, time.Now()), nil
		}
		if err != nil {
			if o := databaseOutcome(err); o != nil {
				setConditions(&m.Status.Conditions, m.Generation, *o)
				_ = r.patchStatus(ctx, m, before)
			}
			return ctrl.Result{}, err
		}
		logf.FromContext(ctx).Info("Removed panel association", "membership", klog.KObj(m), "client", b.ClientUUID)
	}
	controllerutil.RemoveFinalizer(m, MembershipFinalizer)
	return ctrl.Result{}, r.Update(ctx, m)
}

// binding is the membership binding of m for a user and a client.
func (r *ClientMembershipReconciler) binding(m *v1.ClientMembership, userUUID, clientUUID string) panel.MembershipBinding {
	return panel.MembershipBinding{UserUUID: userUUID, ClientUUID: clientUUID, Namespace: m.Namespace, Name: m.Name,
		ResourceUID: string(m.UID), InstanceID: r.Options.InstanceID}
}

func (r *ClientMembershipReconciler) patchStatus(ctx context.Context, m *v1.ClientMembership, before *v1.ClientMembershipStatus) error {
	if equality.Semantic.DeepEqual(before, &m.Status) {
		return nil
	}
	if membershipStatusHook != nil {
		if err := membershipStatusHook(m); err != nil {
			return err
		}
	}
	return r.Status().Update(ctx, m)
}

// SetupWithManager registers the controller; a change in a User wakes its memberships.
func (r *ClientMembershipReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.ClientMembership{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{},
			deletionPredicate()))).
		Watches(&v1.User{}, handler.EnqueueRequestsFromMapFunc(r.membershipsOfUser)).
		Watches(&v1.ClientMembership{}, handler.EnqueueRequestsFromMapFunc(r.peersOfClient)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Options.MaxConcurrentReconciles,
			RateLimiter: retryRateLimiter()}).
		Named("clientmembership").
		Complete(r)
}

// peersOfClient wakes the other memberships of the same client when one changes or goes, so a
// duplicate or a losing owner claim proceeds, and a blocked owner removal retries after a transfer.
func (r *ClientMembershipReconciler) peersOfClient(ctx context.Context, o client.Object) []reconcile.Request {
	id := o.(*v1.ClientMembership).Status.ClientUUID
	if id == "" {
		return nil
	}
	var list v1.ClientMembershipList
	if err := r.List(ctx, &list, client.MatchingFields{indexMembershipClient: id}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, m := range list.Items {
		if m.UID != o.GetUID() {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: m.Name}})
		}
	}
	return reqs
}

func (r *ClientMembershipReconciler) membershipsOfUser(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1.ClientMembershipList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexMembershipUser: o.GetName()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, m := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: m.Name}})
	}
	return reqs
}
