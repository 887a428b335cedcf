package controller

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	kworkqueue "k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/puqcloud/puq-user-operator/internal/panel"
)

type (
	eventUpdate = event.TypedUpdateEvent[client.Object]
	eventDelete = event.TypedDeleteEvent[client.Object]
	workqueue   = kworkqueue.TypedRateLimitingInterface[reconcile.Request]
)

// hashDuration is the time bcrypt takes per password, the operator's one expensive step.
var hashDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "puq_user_operator_bcrypt_hash_duration_seconds",
	Help:    "Time spent hashing a password with bcrypt.",
	Buckets: []float64{0.005, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5},
})

// bcryptHashes counts the passwords waiting for a hash slot (--max-concurrent-hashes) and those
// being hashed: running never exceeds the slots, and a steady waiting count says the slots are
// the bottleneck.
var bcryptHashes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "puq_user_operator_bcrypt_hashes",
	Help: "Passwords waiting for a bcrypt hash slot (state=waiting) and being hashed (state=running).",
}, []string{"state"})

var hashesWaiting, hashesRunning = bcryptHashes.WithLabelValues("waiting"), bcryptHashes.WithLabelValues("running")

var (
	reconcileOutcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "puq_user_operator_reconcile_outcomes_total",
		Help: "Reconciles by kind and the reason of the Ready condition they ended with (Error: returned an error).",
	}, []string{"kind", "reason"})
	usersByPanelStatus = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "puq_user_operator_users",
		Help: "Managed panel users by their status in the panel.",
	}, []string{"panel_status"})
	databaseDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "puq_user_operator_panel_db_operation_duration_seconds",
		Help:    "Duration of panel database operations.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, []string{"operation"})
	resyncUsers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "puq_user_operator_resync_users_total",
		Help: "Ready Users compared with the panel by the periodic resync, by result (in_sync, reconcile: queued for a reconcile).",
	}, []string{"result"})
	// The Secret watch's lists, so a reader (the benchmark, an operator's dashboard) can tell
	// that a list of every Secret has finished, and how many Secrets it went through.
	secretLists = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "puq_user_operator_secret_lists_total",
		Help: "Complete lists of Secrets by the Secret watch: one per followed namespace at start, and one per relist.",
	})
	secretsListed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "puq_user_operator_secrets_listed_total",
		Help: "Secrets read (as metadata) by the Secret watch's lists, whether a User uses them or not.",
	})
	databaseErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "puq_user_operator_panel_db_operation_errors_total",
		Help: "Failed panel database operations, by operation and outcome (unavailable, duplicate, refused, invalid, schema, error).",
	}, []string{"operation", "outcome"})
)

func init() {
	metrics.Registry.MustRegister(hashDuration, bcryptHashes, reconcileOutcomes, usersByPanelStatus, databaseDuration, databaseErrors,
		resyncUsers, secretLists, secretsListed)
	for _, s := range panelStatuses {
		usersByPanelStatus.WithLabelValues(s).Set(0)
	}
	// Exposed at 0 from the start, so "no resync yet" reads as 0 rather than as a missing metric.
	for _, r := range []string{"in_sync", "reconcile"} {
		resyncUsers.WithLabelValues(r)
	}
}

// ObserveDatabase records a panel database operation; it is the panel.Options.Observe hook.
func ObserveDatabase(op string, d time.Duration, err error) {
	op = strings.NewReplacer(" ", "_", "'", "").Replace(op)
	databaseDuration.WithLabelValues(op).Observe(d.Seconds())
	if o := panel.Outcome(err); o != "ok" && o != "not_found" {
		databaseErrors.WithLabelValues(op, o).Inc()
	}
}

var panelStatuses = []string{"NEW", "ACTIVE", "INACTIVE", "CLOSED", "FRAUD"}

// statusTracker keeps the panel status of every managed user for the users gauge.
type statusTracker struct {
	mu     sync.Mutex
	status map[types.UID]string
}

var trackedUsers = &statusTracker{status: map[types.UID]string{}}

// set records a user's status ("" forgets the user) and refreshes the gauge.
func (t *statusTracker) set(uid types.UID, status string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.status[uid] == status {
		return
	}
	if status == "" {
		delete(t.status, uid)
	} else {
		t.status[uid] = status
	}
	counts := map[string]float64{}
	for _, s := range t.status {
		counts[s]++
	}
	for _, s := range panelStatuses {
		usersByPanelStatus.WithLabelValues(s).Set(counts[s])
	}
}
