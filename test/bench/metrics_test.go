package main

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const exposition = `# HELP controller_runtime_max_concurrent_reconciles Maximum number of concurrent reconciles per controller
# TYPE controller_runtime_max_concurrent_reconciles gauge
controller_runtime_max_concurrent_reconciles{controller="clientmembership"} 8
controller_runtime_max_concurrent_reconciles{controller="user"} 8
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="GET"} 12
rest_client_requests_total{code="201",host="127.0.0.1:6443",method="POST"} 3
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="PATCH"} 4
workqueue_depth{controller="user",name="user",priority="0"} 2
workqueue_depth{controller="user",name="user",priority="10"} 1
puq_user_operator_bcrypt_hash_duration_seconds_count 5
`

// A figure must never be computed from a metric the manager does not expose: a missing series
// is an error, never a zero (a missing max_concurrent_reconciles once made the plain client run
// with one worker).
func TestMetricSumFailsWhenTheSeriesIsMissing(t *testing.T) {
	s, err := parseExposition(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"controller_runtime_max_concurrent_reconciles", []string{"controller", "user"}, 8},
		{"workqueue_depth", []string{"controller", "user"}, 3}, // every priority
		{"puq_user_operator_bcrypt_hash_duration_seconds_count", nil, 5},
	} {
		got, err := s.sum(c.name, c.labels...)
		if err != nil || got != c.want {
			t.Errorf("sum(%s%s) = %v, %v; want %v", c.name, selector(c.labels), got, err, c.want)
		}
	}
	if got, err := s.apiWrites(); err != nil || got != 7 {
		t.Errorf("apiWrites() = %v, %v; want 7 (POST and PATCH)", got, err)
	}
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"controller_runtime_max_concurrent_reconciles", []string{"controller", "users"}},
		{"puq_user_operator_resync_users_total", nil},
	} {
		if got, err := s.sum(c.name, c.labels...); err == nil {
			t.Errorf("sum(%s%s) = %v with no such series; want an error", c.name, selector(c.labels), got)
		}
	}
	if _, err := (scrape{}).apiWrites(); err == nil {
		t.Error("apiWrites() without rest_client_requests_total gave no error")
	}
}

func TestScrapeFailsOnAnHTTPErrorOrAnUnreadableLine(t *testing.T) {
	for _, c := range []struct {
		name, body string
		status     int
	}{
		{"server error", "", http.StatusInternalServerError},
		{"unreadable value", "puq_user_operator_users{panel_status=\"NEW\"} many\n", http.StatusOK},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(c.status)
			_, _ = w.Write([]byte(c.body))
		}))
		m := &manager{metrics: srv.URL}
		if s, err := m.scrape(); err == nil {
			t.Errorf("%s: scrape() = %v, want an error", c.name, s)
		}
		srv.Close()
	}
}

func TestCPUFailsOnAnUnreadableStat(t *testing.T) {
	const stat = "4242 (manager) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 75 0 0 20 0 12 0 100 0 0"
	if got, err := parseCPU(stat); err != nil || got.Seconds() != 3.25 {
		t.Errorf("parseCPU = %v, %v; want 3.25s (250 + 75 ticks)", got, err)
	}
	for _, bad := range []string{"", "4242 (manager) S 1 4242", "4242 (manager) S 1 4242 4242 0 -1 4194560 9000 0 0 0 x 75 0"} {
		if got, err := parseCPU(bad); err == nil {
			t.Errorf("parseCPU(%q) = %v, want an error", bad, got)
		}
	}
}

// admissionExposition is the API server's admission histogram for the User webhook (accepted and
// refused creates) and the ClientMembership webhook.
func admissionExposition() string {
	var b strings.Builder
	for _, series := range []struct {
		webhook, rejected string
		buckets           []string // le=count, cumulative
	}{
		{"vuser-v1alpha1.kb.io", "false", []string{"0.005=40", "0.025=80", "0.1=90", "+Inf=90"}},
		{"vuser-v1alpha1.kb.io", "true", []string{"0.005=10", "0.025=10", "0.1=10", "+Inf=10"}},
		{"vclientmembership-v1alpha1.kb.io", "false", []string{"0.005=0", "0.1=7", "+Inf=7"}},
	} {
		for _, bucket := range series.buckets {
			le, count, _ := strings.Cut(bucket, "=")
			fmt.Fprintf(&b, "%s_bucket{name=%q,operation=\"CREATE\",rejected=%q,type=\"validating\",le=%q} %s\n",
				admissionMetric, series.webhook, series.rejected, le, count)
		}
	}
	return b.String()
}

// The admission figure's p99 is read from the API server's histogram as histogram_quantile
// reads it: the series of the User webhook (accepted and rejected alike), linear within the
// bucket holding the rank.
func TestAdmissionQuantileReadsTheUserWebhookHistogram(t *testing.T) {
	s, err := parseExposition(strings.NewReader(admissionExposition()))
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.histogramOf(admissionMetric, admissionLabels...)
	if err != nil {
		t.Fatal(err)
	}
	if h.count != 100 {
		t.Fatalf("count %v, want 100 (both rejected values, not the membership webhook)", h.count)
	}
	for _, c := range []struct{ q, want float64 }{
		{0.5, 0.005},           // rank 50: the whole first bucket
		{0.9, 0.025},           // rank 90: the end of the second
		{0.99, 0.025 + 0.0675}, // rank 99: 9 of the last 10, within (0.025, 0.1]
	} {
		if got := h.quantile(c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := h.minus(h).count; got != 0 {
		t.Errorf("a histogram minus itself counts %v", got)
	}
	if _, err := s.histogramOf(admissionMetric, "name", "vnothing.kb.io"); err == nil {
		t.Error("a histogram with no series read as empty, want an error")
	}
}
