package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	kworkqueue "k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
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

func init() {
	metrics.Registry.MustRegister(hashDuration)
}
