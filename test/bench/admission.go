package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"github.com/puqcloud/puq-user-operator/internal/testdb"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// admissionBound is the target for the User webhook: p99 under 50 ms.
const admissionBound = 0.050

// admissionMetric is the API server's own histogram of the time each admission webhook call
// took, as the API server saw it (the network and TLS included), and the labels of the User
// webhook's create calls.
var (
	admissionMetric = "apiserver_admission_webhook_admission_duration_seconds"
	admissionLabels = []string{"name", "vuser-v1alpha1.kb.io", "operation", "CREATE", "type", "validating"}
)

// admission: p99 of the User webhook's admission duration, from the API server's histogram, over
// creates made while the manager's cache holds the existing Users; the webhook judges every one
// (policy, email index, peers). The manager watches its namespace with the webhooks on, and the
// API server calls it at https://127.0.0.1:<port> with a certificate made for the run.
func admission(w *world, c config) (figure, error) {
	ns, err := w.namespace("adm")
	if err != nil {
		return figure{}, err
	}
	certDir := filepath.Join(w.dir, "webhook-certs")
	ca, err := testenv.ServingCert(certDir)
	if err != nil {
		return figure{}, err
	}
	port, err := testdb.FreePort()
	if err != nil {
		return figure{}, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	mgr, err := w.startManager("admission", ns, "--bcrypt-cost=4", "--password-hash-min-cost=4", "--enable-webhooks",
		"--webhook-host=127.0.0.1", "--webhook-port="+strconv.Itoa(port), "--webhook-cert-path="+certDir)
	if err != nil {
		return figure{}, err
	}
	defer mgr.stop()
	ctx := context.Background()
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return testenv.ServesTLS(ctx, addr, ca) == nil, nil
	}); err != nil {
		return figure{}, fmt.Errorf("the webhook server never answered at %s: %w", addr, err)
	}
	vwc, err := testenv.LocalWebhooks(addr, ca)
	if err != nil {
		return figure{}, err
	}
	if err := w.k8s.Create(ctx, vwc); err != nil {
		return figure{}, err
	}
	// Removed before the manager stops (deferred after it, so run first): with failurePolicy Fail
	// the configuration would refuse every later User.
	defer func() { _ = w.k8s.Delete(context.Background(), vwc) }()

	// The existing Users, every create judged by the webhook too.
	if err := w.createUsers(ns, "a", c.admissionUsers, c.concurrency*4); err != nil {
		return figure{}, err
	}
	before, err := w.apiserverHistogram(admissionMetric, admissionLabels...)
	if err != nil {
		return figure{}, err
	}
	if err := w.createUserRange(ns, "a", c.admissionUsers, c.admissionUsers+c.admissionSamples, c.concurrency, nil); err != nil {
		return figure{}, err
	}
	after, err := w.apiserverHistogram(admissionMetric, admissionLabels...)
	if err != nil {
		return figure{}, err
	}
	d := after.minus(before)
	if d.count < float64(c.admissionSamples) {
		return figure{}, fmt.Errorf("the API server counted %v calls of the User webhook for %d creates", d.count, c.admissionSamples)
	}
	p99 := d.quantile(0.99)
	return ratioFigure("Admission p99 (User create)", p99, "s", admissionBound, "<= 1", func(r float64) bool { return r <= 1 },
		boundConstant, "the issue's 50 ms",
		fmt.Sprintf("%d creates with %d Users in the cache, %s; %v calls, %.0f%% within %gs (bucket), p99 interpolated "+
			"as histogram_quantile does", c.admissionSamples, c.admissionUsers, admissionMetric, d.count,
			100*d.within(0.025), 0.025)), nil
}

// histogram is a cumulative Prometheus histogram: the count at or below each bucket's upper bound.
type histogram struct {
	bounds []float64 // ascending, +Inf last
	counts []float64
	count  float64
}

func (h histogram) minus(o histogram) histogram {
	out := histogram{bounds: h.bounds, counts: make([]float64, len(h.counts)), count: h.count - o.count}
	for i := range h.counts {
		out.counts[i] = h.counts[i]
		if i < len(o.counts) {
			out.counts[i] -= o.counts[i]
		}
	}
	return out
}

// quantile is the q-quantile as Prometheus's histogram_quantile computes it: linear within the
// bucket that holds it, the lower bound of the first bucket taken as 0; in the +Inf bucket, the
// highest finite bound.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	rank := q * h.count
	for i, c := range h.counts {
		if c < rank {
			continue
		}
		if math.IsInf(h.bounds[i], 1) {
			return h.bounds[i-1]
		}
		lower, below := 0.0, 0.0
		if i > 0 {
			lower, below = h.bounds[i-1], h.counts[i-1]
		}
		if c == below {
			return h.bounds[i]
		}
		return lower + (h.bounds[i]-lower)*(rank-below)/(c-below)
	}
	return h.bounds[len(h.bounds)-1]
}

// within is the share of observations at or below the bucket bound le.
func (h histogram) within(le float64) float64 {
	for i, b := range h.bounds {
		if b == le && h.count > 0 {
			return h.counts[i] / h.count
		}
	}
	return math.NaN()
}

// histogramOf sums the buckets of the histogram name over the series with the labels.
func (s scrape) histogramOf(name string, labels ...string) (histogram, error) {
	byBound := map[float64]float64{}
	found := false
	for _, x := range s {
		if x.name != name+"_bucket" || !x.has(labels) {
			continue
		}
		b, err := strconv.ParseFloat(x.labels["le"], 64)
		if err != nil {
			return histogram{}, fmt.Errorf("%s: bucket %q: %w", name, x.labels["le"], err)
		}
		found, byBound[b] = true, byBound[b]+x.value
	}
	if !found {
		return histogram{}, fmt.Errorf("no %s%s", name, selector(labels))
	}
	var h histogram
	for b := range byBound {
		h.bounds = append(h.bounds, b)
	}
	slices.Sort(h.bounds)
	for _, b := range h.bounds {
		h.counts = append(h.counts, byBound[b])
	}
	h.count = h.counts[len(h.counts)-1]
	return h, nil
}

// apiserverHistogram reads the histogram from the API server's /metrics, as its admin.
func (w *world) apiserverHistogram(name string, labels ...string) (histogram, error) {
	hc, err := rest.HTTPClientFor(w.cfg)
	if err != nil {
		return histogram{}, err
	}
	resp, err := hc.Get(strings.TrimSuffix(w.cfg.Host, "/") + "/metrics") // envtest's Host ends in "/"
	if err != nil {
		return histogram{}, fmt.Errorf("cannot read the API server's metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return histogram{}, fmt.Errorf("cannot read the API server's metrics: %s", resp.Status)
	}
	s, err := parseExposition(resp.Body)
	if err != nil {
		return histogram{}, fmt.Errorf("cannot read the API server's metrics: %w", err)
	}
	h, err := s.histogramOf(name, labels...)
	if err != nil {
		return histogram{}, fmt.Errorf("the API server's metrics: %w", err)
	}
	return h, nil
}
