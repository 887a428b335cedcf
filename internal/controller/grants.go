package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
)

// GrantsOf is what the namespace may do in the panel: the PanelAccessPolicies selecting it, read
// from the cache with the namespace's labels (metadata only). It asks the panel nothing, so a
// check costs no round trip, and it is evaluated before any panel lookup: a namespace learns
// nothing of emails or clients it is not granted. The admission webhook judges with it too, so
// that apply time and the reconcile decide alike.
func GrantsOf(ctx context.Context, c client.Reader, namespace string) (tenancy.Grants, error) {
	var policies v1.PanelAccessPolicyList
	if err := c.List(ctx, &policies, client.UnsafeDisableDeepCopy); err != nil {
		return tenancy.Grants{}, fmt.Errorf("cannot list PanelAccessPolicies: %w", err)
	}
	ns := namespaceMetadata()
	if err := c.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil && !apierrors.IsNotFound(err) {
		return tenancy.Grants{}, fmt.Errorf("cannot read namespace %s: %w", namespace, err)
	}
	return tenancy.For(policies.Items, namespace, ns.Labels), nil
}

// namespaceMetadata is an empty Namespace as metadata: namespaces are cached as metadata only.
func namespaceMetadata() *metav1.PartialObjectMetadata {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return ns
}

// GrantsCache memoizes GrantsOf per namespace for one pass over many objects (the resync, the
// email peers of one User).
type GrantsCache struct {
	c    client.Reader
	seen map[string]tenancy.Grants
}

// NewGrantsCache returns an empty GrantsCache reading from c.
func NewGrantsCache(c client.Reader) *GrantsCache {
	return &GrantsCache{c: c, seen: map[string]tenancy.Grants{}}
}

// Of is GrantsOf the namespace, read once per cache.
func (g *GrantsCache) Of(ctx context.Context, namespace string) (tenancy.Grants, error) {
	if gr, ok := g.seen[namespace]; ok {
		return gr, nil
	}
	gr, err := GrantsOf(ctx, g.c, namespace)
	if err == nil {
		g.seen[namespace] = gr
	}
	return gr, err
}

// labelsChanged passes the updates of an object whose labels changed: a namespace's labels decide
// which policies' selectors select it.
func labelsChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels())
		},
	}
}

// regrant wakes, when the grants change, the objects whose denials may change with them: when a
// PanelAccessPolicy comes, goes or changes its spec (policies), the objects of the namespaces it
// selects (before or after the change: a namespace it no longer selects loses its grants), and
// when a namespace's labels change (namespaces), that namespace's objects. newList makes a list
// of the objects' kind. A policy for one team wakes nothing of another's.
func regrant(c client.Reader, newList func() client.ObjectList) (policies, namespaces handler.EventHandler) {
	in := func(ctx context.Context, namespace string) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
			return nil
		}
		var reqs []reconcile.Request
		_ = meta.EachListItem(list, func(o runtime.Object) error {
			if obj, ok := o.(client.Object); ok {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
			}
			return nil
		})
		return reqs
	}
	enqueue := func(ctx context.Context, q workqueue, changed ...client.Object) {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
		if err := c.List(ctx, list); err != nil {
			return
		}
		for i := range list.Items {
			ns := &list.Items[i]
			if slices.ContainsFunc(changed, func(o client.Object) bool {
				p, ok := o.(*v1.PanelAccessPolicy)
				return ok && tenancy.Selects(p, ns.Name, ns.Labels)
			}) {
				for _, req := range in(ctx, ns.Name) {
					q.Add(req)
				}
			}
		}
	}
	policies = handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue) {
			enqueue(ctx, q, e.Object)
		},
		UpdateFunc: func(ctx context.Context, e eventUpdate, q workqueue) { enqueue(ctx, q, e.ObjectOld, e.ObjectNew) },
		DeleteFunc: func(ctx context.Context, e eventDelete, q workqueue) { enqueue(ctx, q, e.Object) },
	}
	namespaces = handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return in(ctx, o.GetName())
	})
	return policies, namespaces
}
