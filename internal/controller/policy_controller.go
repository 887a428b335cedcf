package controller

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
)

// PanelAccessPolicyReconciler keeps each PanelAccessPolicy's status current: the namespaces it
// selects now and whether its selector can be parsed. It reads policies and namespaces (metadata
// only) from the cache and writes nothing but the policy's status.
type PanelAccessPolicyReconciler struct {
	client.Client
}

// RBAC: policies and namespaces are read (namespaces as metadata, from a watch); only the
// policies' status is written.
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=panelaccesspolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=panelaccesspolicies/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// Reconcile computes one policy's covered namespaces and conditions and patches its status when
// they changed.
func (r *PanelAccessPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	policy := &v1.PanelAccessPolicy{}
	if err := r.Get(ctx, req.NamespacedName, policy); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	namespaces, err := r.namespaces(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	base := policy.DeepCopy()
	o := setPolicyCoverage(&policy.Status, policy, namespaces)
	return retryConflicts(conclude("PanelAccessPolicy", &policy.Status.Conditions, &policy.Status.ObservedGeneration,
		policy.Generation, o, nil, func() error { return r.patchStatus(ctx, base, policy) }, 0))
}

// namespaces are every namespace's metadata, from the cache.
func (r *PanelAccessPolicyReconciler) namespaces(ctx context.Context) ([]metav1.PartialObjectMetadata, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := r.List(ctx, list); err != nil {
		return nil, fmt.Errorf("cannot list namespaces: %w", err)
	}
	return list.Items, nil
}

// maxListedNamespaces is how many namespaces status.namespaces lists at most (its MaxItems);
// status.namespaceCount counts them all.
const maxListedNamespaces = 100

// setPolicyCoverage sets the namespaces the policy selects into its status (sorted, the first
// maxListedNamespaces listed, all counted) and returns the outcome its conditions say: Ready, or
// InvalidSelector when the selector cannot be parsed (the policy then grants nothing).
func setPolicyCoverage(st *v1.PanelAccessPolicyStatus, policy *v1.PanelAccessPolicy,
	namespaces []metav1.PartialObjectMetadata) outcome {
	st.Namespaces, st.NamespaceCount = nil, 0
	if err := tenancy.SelectorError(policy); err != nil {
		return waiting(v1.ReasonInvalidSelector, "The namespace selector cannot be parsed (%v); the policy grants nothing "+
			"until spec.namespaces.selector is fixed.", err)
	}
	var selected []string
	for i := range namespaces {
		if tenancy.Selects(policy, namespaces[i].Name, namespaces[i].Labels) {
			selected = append(selected, namespaces[i].Name)
		}
	}
	slices.Sort(selected)
	st.NamespaceCount = int32(len(selected))
	st.Namespaces = selected[:min(len(selected), maxListedNamespaces)]
	if len(selected) == 0 {
		st.Namespaces = nil
	}
	return ready(fmt.Sprintf("The policy is in force for %d namespaces.", len(selected)))
}

// patchStatus writes the status with a merge patch, only when it changed.
func (r *PanelAccessPolicyReconciler) patchStatus(ctx context.Context, base, policy *v1.PanelAccessPolicy) error {
	if equality.Semantic.DeepEqual(&base.Status, &policy.Status) {
		return nil
	}
	return r.Status().Patch(ctx, policy, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

// SetupWithManager registers the controller: policies (their spec changes), and namespaces as
// metadata only, whose creation, deletion or change of labels wakes the policies that select the
// namespace before or after.
func (r *PanelAccessPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.PanelAccessPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.policiesSelecting),
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WithOptions(controller.Options{RateLimiter: retryRateLimiter()}).
		Named("panelaccesspolicy").
		Complete(r)
}

// policiesSelecting maps a namespace to the policies that select it. For a change of labels
// controller-runtime maps the old and the new namespace, so both the policies that lose it and
// those that gain it are woken.
func (r *PanelAccessPolicyReconciler) policiesSelecting(ctx context.Context, o client.Object) []reconcile.Request {
	var policies v1.PanelAccessPolicyList
	if err := r.List(ctx, &policies); err != nil {
		log.FromContext(ctx).Error(err, "Could not list PanelAccessPolicies for a namespace change", "namespace", o.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for i := range policies.Items {
		if tenancy.Selects(&policies.Items[i], o.GetName(), o.GetLabels()) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&policies.Items[i])})
		}
	}
	return reqs
}
