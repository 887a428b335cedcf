package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"
	kworkqueue "k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// Setup registers the field indexes and both controllers with the manager. The manager's client
// must not cache Secrets (client.CacheOptions.DisableFor): the controllers read the few Secrets
// they need straight from the API server, and follow Secrets with a watch that keeps only the
// versions of the Secrets Users use.
func Setup(ctx context.Context, mgr ctrl.Manager, store *panel.Store, opts Options) error {
	if err := opts.HashCosts.Validate(); err != nil {
		return fmt.Errorf("the accepted password hash costs: %w", err)
	}
	if !opts.HashCosts.Contains(opts.BcryptCost) {
		return fmt.Errorf("bcrypt cost %d is outside the accepted password hash costs, %s", opts.BcryptCost, opts.HashCosts)
	}
	if opts.DefaultLanguage != "" && !slices.Contains(opts.Languages, opts.DefaultLanguage) {
		return fmt.Errorf("the default language %q is not one of the languages %s", opts.DefaultLanguage,
			strings.Join(opts.Languages, ", "))
	}
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

// The controllers' schedule for retrying a reconcile that returned an error. Only transient
// failures return one (DatabaseUnavailable, an API server error); a cause the user must fix is a
// condition and waits for a change. controller-runtime's default doubles the wait per object from
// 5 ms up to 1000 s, so after a few minutes of outage an object waited up to a quarter of an hour
// for the database that had long come back. Capped at retryBackoffMax, every object still
// waiting looks again within that time of the database's return: with the operation deadline
// (panel.DefaultOperationTimeout) and one look, everything converges within 30 s.
const (
	retryBackoffBase = 5 * time.Millisecond
	retryBackoffMax  = 10 * time.Second
	// retryRate and retryBurst bound retries across all objects of a kind, as controller-runtime's
	// default bucket (10/s, burst 100) does, but sized for the cap: with every one of 500 objects
	// failing, each looks again every retryBackoffMax (50/s), and a backlog of that many drains
	// within retryBackoffMax instead of queueing for 50 s behind a 10/s bucket.
	retryRate  = 50
	retryBurst = 500
)

// retryRateLimiter is the rate limiter of a controller's work queue (controller.Options): the
// per-object exponential backoff capped at retryBackoffMax, and the overall bucket. Each
// controller needs its own: the limiter keeps each object's failure count.
//
// There is deliberately no overall deadline on a reconcile: a reconcile may wait its turn for a
// bcrypt slot for minutes during a cold sync, and that wait must not be cut. The database calls
// carry their own deadline (panel.Options.OperationTimeout); the API server calls go through
// client-go, whose HTTP/2 health checks close a connection that stops answering.
func retryRateLimiter() kworkqueue.TypedRateLimiter[reconcile.Request] {
	return kworkqueue.NewTypedMaxOfRateLimiter(
		kworkqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](retryBackoffBase, retryBackoffMax),
		&kworkqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(retryRate), retryBurst)},
	)
}
