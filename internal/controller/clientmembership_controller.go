package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// ReasonReleased is the reason of the event recorded when a deletion leaves a client's owner in
// the panel and forgets its binding.
const ReasonReleased = "Released"

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
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=clientmemberships/status,verbs=patch
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=clientmemberships/finalizers,verbs=update

// Reconcile brings one association in line with its spec.
func (r *ClientMembershipReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return retryConflicts(r.reconcile(ctx, req))
}

// reconcile gathers (I/O only), plans (pure: planMembership), applies the plan (the membership's
// metadata first, then one store transaction per association), and reports: the status is
// written once, in report, from the plan, its outcome and what failed.
func (r *ClientMembershipReconciler) reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, err error) {
	m := &v1.ClientMembership{}
	if err := r.Get(ctx, req.NamespacedName, m); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	deleting := !m.DeletionTimestamp.IsZero()
	if deleting && !controllerutil.ContainsFinalizer(m, MembershipFinalizer) {
		return ctrl.Result{}, nil
	}
	if deleting && v1.Abandoned(m.Annotations) {
		return ctrl.Result{}, r.abandon(ctx, m)
	}
	before := m.Status.DeepCopy()
	var p membershipPlan
	var o *outcome
	defer func() { res, err = r.report(ctx, m, before, p, o, err) }()

	in, err := r.gather(ctx, m)
	if err != nil {
		return ctrl.Result{}, err
	}
	planned, decided := planMembership(in)
	p, o = planned, &decided
	if err := r.applyMetadata(ctx, m, p); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.apply(ctx, m, p)
}

// gather reads what planMembership decides on: the User, and then either what the membership made
// (being deleted) or the namespace's grants (from the cache), the client once it is granted, its
// memberships, and the association with its binding. It reads nothing more once the facts read
// so far stop the plan (checkMembershipUser, checkClientGrant).
func (r *ClientMembershipReconciler) gather(ctx context.Context, m *v1.ClientMembership) (membershipInputs, error) {
	in := membershipInputs{membership: m, operator: r.Options.operator()}
	user := &v1.User{}
	switch err := r.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Spec.UserRef.Name}, user); {
	case err == nil:
		in.user = user
	case !apierrors.IsNotFound(err):
		return in, err
	}
	if !m.DeletionTimestamp.IsZero() {
		// A deletion removes what the membership made, granted or not, as a User's deletion
		// releases its panel user: it only ever takes away.
		bound, err := r.Store.BoundMemberships(ctx, in.operator, m.Namespace, m.Name, string(m.UID))
		in.bound = bound
		return in, err
	}
	grants, err := GrantsOf(ctx, r.Client, m.Namespace)
	if err != nil {
		return in, err
	}
	if in.grants = grants; checkMembershipUser(in) != nil {
		return in, nil
	}
	if err := r.gatherClient(ctx, &in); err != nil || in.client == nil {
		return in, err
	}
	c := in.client
	var peers v1.ClientMembershipList
	if err := r.List(ctx, &peers, client.MatchingFields{indexMembershipClient: c.UUID}); err != nil {
		return in, fmt.Errorf("cannot list memberships by client: %w", err)
	}
	in.peers = peers.Items
	if in.state, err = r.Store.MembershipState(ctx, in.user.Status.UUID, c.UUID); err != nil {
		return in, err
	}
	in.holder, err = r.bindingHolder(ctx, m, in.state.Binding)
	return in, err
}

// gatherClient judges the client against the grants before the panel is asked anything about it:
// a client named by uuid is judged from the spec, and by its owner only when a policy grants
// clients by owner and the grant rests on it; a company name is resolved to the client it stands
// for first (nothing of it is shown unless it is granted). The client's fields are read once it
// passes.
func (r *ClientMembershipReconciler) gatherClient(ctx context.Context, in *membershipInputs) error {
	sel := in.membership.Spec.Client
	var named []panel.Client
	in.clientUUID = sel.UUID
	if sel.UUID == "" {
		var err error
		if named, err = r.Store.ClientsNamed(ctx, sel.CompanyName); err != nil {
			return err
		}
		if in.named = len(named); in.named == 1 {
			in.clientUUID = named[0].UUID
		}
	}
	if checkClientGrant(*in) != nil && in.clientUUID != "" && in.grants.ClientsByOwner() {
		ns, err := r.ownerNamespace(ctx, in.membership.Namespace, in.clientUUID)
		if err != nil {
			return err
		}
		in.ownerNamespace, in.ownerRead = ns, true
	}
	if checkClientGrant(*in) != nil && !ownershipOnlyDenied(*in) {
		return nil
	}
	if sel.UUID == "" {
		if len(named) == 1 {
			in.client = &named[0]
		}
		return nil
	}
	c, err := r.Store.FindClient(ctx, sel.UUID, "")
	if errors.Is(err, panel.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	in.client = &c
	return nil
}

// ownerNamespace is namespace when the client's owner is a panel user that a User of namespace
// manages, through this operator instance's binding to that very User (its UID: a User that only
// reuses the name manages nothing); "" otherwise, and alike when the client has no owner or does
// not exist.
func (r *ClientMembershipReconciler) ownerNamespace(ctx context.Context, namespace, clientUUID string) (string, error) {
	b, err := r.Store.OwnerBinding(ctx, clientUUID)
	if err != nil || b == nil || b.InstanceID != r.Options.InstanceID || b.Namespace != namespace {
		return "", err
	}
	u := &v1.User{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: b.Name}, u); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	if string(u.UID) != b.ResourceUID {
		return "", nil
	}
	return namespace, nil
}

// bindingHolder reads the membership a binding names, when it is another one this operator
// instance manages in the membership's namespace and cluster; nil when that one no longer exists.
func (r *ClientMembershipReconciler) bindingHolder(ctx context.Context, m *v1.ClientMembership,
	b *panel.MembershipBinding) (*v1.ClientMembership, error) {
	o := r.Options.operator()
	if b == nil || b.HeldBy(o, m.Namespace, m.Name, string(m.UID)) || b.Foreign(o) || b.Namespace != m.Namespace {
		return nil, nil
	}
	h := &v1.ClientMembership{}
	err := r.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: b.Name}, h)
	if apierrors.IsNotFound(err) || (err == nil && !b.HeldBy(o, h.Namespace, h.Name, string(h.UID))) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return h, nil
}

// applyMetadata adds the finalizer and the ownerReference before anything reaches the panel.
func (r *ClientMembershipReconciler) applyMetadata(ctx context.Context, m *v1.ClientMembership, p membershipPlan) error {
	if !p.addFinalizer && p.setOwner == nil {
		return nil
	}
	controllerutil.AddFinalizer(m, MembershipFinalizer)
	if p.setOwner != nil {
		if err := controllerutil.SetOwnerReference(p.setOwner, m, r.Scheme()); err != nil {
			return err
		}
	}
	return r.Update(ctx, m)
}

// apply carries the plan out: the association and its binding in one transaction; each removal
// with its binding in one; each release; then the finalizer.
func (r *ClientMembershipReconciler) apply(ctx context.Context, m *v1.ClientMembership, p membershipPlan) error {
	log := logf.FromContext(ctx)
	if w := p.write; w != nil {
		changed, err := r.Store.ApplyMembership(ctx, w.binding, w.want, w.replacing)
		if err != nil {
			return err
		}
		if changed {
			log.Info("Wrote panel association", "membership", klog.KObj(m), "client", w.binding.ClientUUID)
			r.Recorder.Eventf(m, nil, corev1.EventTypeNormal, w.reason, "ApplyMembership", w.note)
		}
	}
	for _, b := range p.remove {
		if err := r.Store.RemoveMembership(ctx, b); err != nil {
			return err
		}
		log.Info("Removed panel association", "membership", klog.KObj(m), "client", b.ClientUUID)
	}
	for _, rel := range p.release {
		if err := r.Store.ReleaseMembership(ctx, rel.binding); err != nil {
			return err
		}
		log.Info("Released panel association", "membership", klog.KObj(m), "client", rel.binding.ClientUUID, "owner", rel.owner)
		if rel.owner {
			r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, ReasonReleased, "ReleaseMembership",
				"The panel keeps panel user %s as the owner of client %s: it never removes a client's owner. The association "+
					"was released (no longer managed), not removed; the User's login is disabled by the User controller.",
				rel.binding.UserUUID, rel.binding.ClientUUID)
		}
	}
	if p.removeFinalizer {
		controllerutil.RemoveFinalizer(m, MembershipFinalizer)
		return r.Update(ctx, m)
	}
	return nil
}

// report concludes a reconcile, once: it maps an error to the outcome conditions say, writes the
// status (the fields the plan knows, and the conditions) as one merge patch when it changed, and
// turns the outcome into a result. A membership whose finalizer went has nothing left to report.
func (r *ClientMembershipReconciler) report(ctx context.Context, m *v1.ClientMembership, before *v1.ClientMembershipStatus,
	p membershipPlan, o *outcome, err error) (ctrl.Result, error) {
	if err != nil {
		o, err = membershipErrorOutcome(p, err)
	}
	deleting := !m.DeletionTimestamp.IsZero()
	if deleting && (p.removeFinalizer && err == nil || o == nil) {
		return ctrl.Result{}, err
	}
	if o == nil { // an error no condition names (an API call failed): retried with backoff
		progress := retrying(v1.ReasonProgressing, "Reconciling")
		o = &progress
	}
	if !deleting {
		setMembershipStatus(&m.Status, p)
	}
	if o.reason == v1.ReasonOwnerRemovalBlocked && !isStalledReason(before.Conditions, v1.ReasonOwnerRemovalBlocked) {
		r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, v1.ReasonOwnerRemovalBlocked, "RemoveMembership", o.message)
	}
	// A client created or renamed later in the panel is picked up on the next resync, and so is a
	// change of the owner that a denial rested on.
	resyncOn := []string{v1.ReasonClientNotFound, v1.ReasonAmbiguousClient}
	if p.recheck {
		resyncOn = append(resyncOn, v1.ReasonNotPermitted)
	}
	res, err := conclude("ClientMembership", &m.Status.Conditions, &m.Status.ObservedGeneration, m.Generation, *o, err,
		func() error { return r.patchStatus(ctx, m, before) }, r.Options.resync(), resyncOn...)
	if err == nil && o.reason == v1.ReasonOwnerRemovalBlocked {
		// A transfer made in the panel UI: no watch sees it (one made by another membership
		// wakes this one through peersOfClient).
		res = blockedRequeue(m.Status.Conditions, time.Now())
	}
	return res, err
}

// membershipErrorOutcome maps the error of a reconcile step to the outcome the conditions say,
// and the error left to retry: a panel rule's refusal is the plan's refused outcome (the owner
// changed since it was read); a binding that changed since it was read is read again; the other
// store errors are databaseOutcome's.
func membershipErrorOutcome(p membershipPlan, err error) (*outcome, error) {
	switch {
	case errors.Is(err, panel.ErrRefused) && p.refused.reason != "":
		return &p.refused, nil
	case errors.Is(err, panel.ErrBoundElsewhere):
		return nil, err
	}
	return databaseOutcome(err), storeErr(err)
}

// setMembershipStatus records what the plan found: the panel user and client, once known.
func setMembershipStatus(s *v1.ClientMembershipStatus, p membershipPlan) {
	if p.userUUID != "" {
		s.UserUUID = p.userUUID
	}
	if p.clientUUID != "" {
		s.ClientUUID, s.Client = p.clientUUID, p.client
	}
}

// patchStatus writes the status as a merge patch of what changed since before, and nothing when
// nothing did. A merge patch carries no resourceVersion, so it never loses to a concurrent change
// of the object (the finalizer, the ownerReference).
func (r *ClientMembershipReconciler) patchStatus(ctx context.Context, m *v1.ClientMembership, before *v1.ClientMembershipStatus) error {
	if equality.Semantic.DeepEqual(before, &m.Status) {
		return nil
	}
	if membershipStatusHook != nil {
		if err := membershipStatusHook(m); err != nil {
			return err
		}
	}
	base := m.DeepCopy()
	base.Status = *before
	return client.IgnoreNotFound(r.Status().Patch(ctx, m, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})))
}

// abandon lets a membership being deleted go without reaching the panel database: the admin's
// word that it is gone for good.
func (r *ClientMembershipReconciler) abandon(ctx context.Context, m *v1.ClientMembership) error {
	r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, v1.ReasonAbandoned, "Abandon",
		"The %s annotation is set: the finalizer was removed without reaching the panel database; "+
			"the panel association this ClientMembership made (if any) was left as it is", v1.AnnotationAbandon)
	logf.FromContext(ctx).Info("Abandoned the panel side of a deleted ClientMembership", "membership", klog.KObj(m))
	controllerutil.RemoveFinalizer(m, MembershipFinalizer)
	return r.Update(ctx, m)
}

// SetupWithManager registers the controller; a change in a User that its memberships' plans read
// wakes them (userWakesMemberships), a change of a membership its peers read wakes them
// (membershipWakesPeers), and a change of the grants (a PanelAccessPolicy's spec, a namespace's labels) the memberships whose
// denials may change with them.
func (r *ClientMembershipReconciler) SetupWithManager(mgr ctrl.Manager) error {
	policies, namespaces := regrant(r.Client, func() client.ObjectList { return &v1.ClientMembershipList{} })
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.ClientMembership{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{},
			deletionPredicate()))).
		Watches(&v1.PanelAccessPolicy{}, policies, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesMetadata(&corev1.Namespace{}, namespaces, builder.WithPredicates(labelsChanged())).
		Watches(&v1.User{}, handler.EnqueueRequestsFromMapFunc(r.membershipsOfUser), builder.WithPredicates(userWakesMemberships())).
		Watches(&v1.ClientMembership{}, handler.EnqueueRequestsFromMapFunc(r.peersOfClient),
			builder.WithPredicates(membershipWakesPeers())).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Options.MaxConcurrentReconciles,
			RateLimiter: retryRateLimiter()}).
		Named(r.Options.NamePrefix + "clientmembership").
		Complete(r)
}

// peersOfClient wakes the other memberships of the same client when one changes or goes, so a
// duplicate or a losing owner claim proceeds, and a blocked owner removal retries after a transfer.
// It leaves out the peers settled against it (peerSettled).
func (r *ClientMembershipReconciler) peersOfClient(ctx context.Context, o client.Object) []reconcile.Request {
	changed := o.(*v1.ClientMembership)
	id := changed.Status.ClientUUID
	if id == "" {
		return nil
	}
	var list v1.ClientMembershipList
	if err := r.List(ctx, &list, client.MatchingFields{indexMembershipClient: id}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		m := &list.Items[i]
		if m.UID != changed.UID && !peerSettled(m, changed) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: m.Name}})
		}
	}
	return reqs
}

// peerSettled reports whether nothing changed in a younger peer can change m's plan: m is Ready
// (Reconciled) at its generation, not being deleted, and older than changed. Only an older peer
// makes m a duplicate or a losing owner claim (olderPeerConflict), a binding passes only from a
// younger or gone holder to an older one, and a younger owner claim waits for m (so no transfer
// takes m's user's ownership away); a Ready m wrote its association already.
func peerSettled(m, changed *v1.ClientMembership) bool {
	return m.DeletionTimestamp.IsZero() && IsReadyReason(m.Status.Conditions, v1.ReasonReconciled) &&
		m.Status.ObservedGeneration == m.Generation && OlderThan(m.ObjectMeta, changed.ObjectMeta)
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
