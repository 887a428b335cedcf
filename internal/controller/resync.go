package controller

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
)

// resyncBatch is how many panel users one resync query reads.
const resyncBatch = 500

// resyncer is the periodic resync of Ready Users. Instead of a reconcile per User (six database
// round trips for a user that usually has not changed), every period it reads the panel rows of
// all Ready Users, resyncBatch users per query, compares each with what a reconcile would write
// and report, and queues a reconcile only for the Users that differ: drift repaired outside the
// operator, a panel status that moved (a first login), clients added in the panel UI, a deleted
// panel user. Users with a TOTP seed are always queued, since the seed to compare lives in their
// Secret. It runs on the leader only, like the controllers.
type resyncer struct {
	r      *UserReconciler
	users  client.Reader
	period time.Duration
	queue  chan event.GenericEvent
}

func newResyncer(r *UserReconciler, users client.Reader, period time.Duration) *resyncer {
	return &resyncer{r: r, users: users, period: period, queue: make(chan event.GenericEvent, resyncBatch)}
}

// Start runs a resync pass every period until ctx ends.
func (s *resyncer) Start(ctx context.Context) error {
	t := time.NewTicker(s.period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.pass(ctx); err != nil && ctx.Err() == nil {
				logf.FromContext(ctx).Error(err, "Resync pass failed; trying again next period")
			}
		}
	}
}

// NeedLeaderElection makes the resync run on the leader only.
func (s *resyncer) NeedLeaderElection() bool { return true }

// pass compares every Ready User with its panel user and queues those that differ.
func (s *resyncer) pass(ctx context.Context) error {
	var list v1.UserList
	// Read-only: the cached objects are shared, not copied.
	if err := s.users.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	batch := make([]*v1.User, 0, resyncBatch)
	grants := NewGrantsCache(s.users)
	inSync, queued := resyncUsers.WithLabelValues("in_sync"), resyncUsers.WithLabelValues("reconcile")
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		ids := make([]string, len(batch))
		for i, u := range batch {
			ids[i] = u.Status.UUID
		}
		snaps, err := s.r.Store.Snapshots(ctx, ids)
		if err != nil {
			return err
		}
		for _, u := range batch {
			g, err := grants.Of(ctx, u.Namespace)
			if err != nil {
				return err
			}
			if s.r.inSync(u, g, snaps[u.Status.UUID]) {
				inSync.Inc()
				continue
			}
			select {
			case s.queue <- event.GenericEvent{Object: u}:
			case <-ctx.Done():
				return ctx.Err()
			}
			queued.Inc()
		}
		batch = batch[:0]
		return nil
	}
	for i := range list.Items {
		u := &list.Items[i]
		if u.Status.UUID == "" || !u.DeletionTimestamp.IsZero() || !isReady(u) {
			continue
		}
		if batch = append(batch, u); len(batch) == resyncBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// isReady reports whether a User was reconciled, Ready, at its current generation.
func isReady(u *v1.User) bool {
	c := meta.FindStatusCondition(u.Status.Conditions, v1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && u.Status.ObservedGeneration == u.Generation
}

// inSync reports whether a reconcile of the Ready User would write nothing to the panel and leave
// its status as it is: the same planner as Reconcile, over the panel user's snapshot from the
// batch and the Secret version the Secret watch knows (no Secret is read). A plan that would need
// more than that (a TOTP seed, a Secret version the watch does not know) is not in sync: the
// reconcile decides.
func (r *UserReconciler) inSync(user *v1.User, grants tenancy.Grants, snap *panel.Snapshot) bool {
	if snap == nil || !snap.Exists {
		return false
	}
	f := userFacts{user: user, grants: grants, found: panel.Located{Snapshot: snap, Via: panel.ViaStatus},
		password: secretFacts{version: r.cachedSecretVersion(user)}}
	p := planUser(r.Options, f)
	if !p.empty() {
		return false
	}
	st := user.Status.DeepCopy()
	plannedStatus(st, p, *p.current, snap.Clients)
	return equality.Semantic.DeepEqual(st, &user.Status)
}
