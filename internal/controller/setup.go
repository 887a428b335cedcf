package controller

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// SlimCache is the manager's cache transform: it drops, in place, the managed fields, which the
// controllers never read.
func SlimCache(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// Setup registers the field indexes and both controllers with the manager. The manager's client
// must not cache Secrets (client.CacheOptions.DisableFor): the controllers read the few Secrets
// they need straight from the API server, and follow Secrets with a watch that keeps only the
// versions of the Secrets Users use.
func Setup(ctx context.Context, mgr ctrl.Manager, store *panel.Store, opts Options) error {
	if err := SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("cannot set up field indexes: %w", err)
	}
	rec := mgr.GetEventRecorder("puq-user-operator")
	if err := (&UserReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Store: store, Recorder: rec,
		Options: opts}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("cannot set up the User controller: %w", err)
	}
	if err := (&ClientMembershipReconciler{Client: mgr.GetClient(), Store: store, Recorder: rec,
		Options: opts}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("cannot set up the ClientMembership controller: %w", err)
	}
	return nil
}
