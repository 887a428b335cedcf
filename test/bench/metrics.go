package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// sample is one series of the Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape is one read of a manager's /metrics: every figure that needs several metrics takes
// them from one scrape, so they describe the same moment and cost the manager one request.
type scrape []sample

// scrape reads the manager's /metrics. Any failure is an error: a figure is never computed from
// a metric that could not be read.
func (m *manager) scrape() (scrape, error) {
	req, err := http.NewRequest(http.MethodGet, m.metrics, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept-Encoding", "identity") // spare the manager gzip work the measurement would include
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot read the manager's metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cannot read the manager's metrics: GET %s: %s", m.metrics, resp.Status)
	}
	s, err := parseExposition(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("cannot read the manager's metrics: %w", err)
	}
	return s, nil
}

// metric is scrape().sum(name, labels...).
func (m *manager) metric(name string, labels ...string) (float64, error) {
	s, err := m.scrape()
	if err != nil {
		return 0, err
	}
	return s.sum(name, labels...)
}

// parseExposition reads the Prometheus text format: `name{label="value",...} value [timestamp]`
// lines, comments skipped. A line it cannot read is an error, never a skipped sample.
func parseExposition(r io.Reader) (scrape, error) {
	var out scrape
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return s, fmt.Errorf("no metric name in %q", line)
	}
	s.name, line = line[:end], line[end:]
	if strings.HasPrefix(line, "{") {
		rest, err := parseLabels(line[1:], s.labels)
		if err != nil {
			return s, fmt.Errorf("%s: %w", s.name, err)
		}
		line = rest
	}
	fields := strings.Fields(line)
	if len(fields) == 0 || len(fields) > 2 {
		return s, fmt.Errorf("%s: want a value and an optional timestamp, got %q", s.name, line)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("%s: %w", s.name, err)
	}
	s.value = v
	return s, nil
}

// parseLabels reads `a="x",b="y"}` into labels and returns what follows the closing brace.
func parseLabels(in string, labels map[string]string) (string, error) {
	for {
		in = strings.TrimLeft(in, " ,")
		if strings.HasPrefix(in, "}") {
			return in[1:], nil
		}
		eq := strings.Index(in, `="`)
		if eq <= 0 {
			return "", errors.New("malformed labels")
		}
		name := in[:eq]
		in = in[eq+2:]
		var v strings.Builder
		for {
			if in == "" {
				return "", errors.New("unterminated label value")
			}
			c := in[0]
			in = in[1:]
			if c == '"' {
				break
			}
			if c == '\\' && in != "" {
				c, in = in[0], in[1:]
				if c == 'n' {
					c = '\n'
				}
			}
			v.WriteByte(c)
		}
		labels[name] = v.String()
	}
}

// sum adds the series of the metric name whose labels include every given name/value pair. A
// metric with no such series is an error, not a zero: a counter the manager does not expose
// would otherwise read as "nothing happened", and a gauge as its lowest value.
func (s scrape) sum(name string, labels ...string) (float64, error) {
	if len(labels)%2 != 0 {
		return 0, fmt.Errorf("%s: labels must come in name/value pairs", name)
	}
	var total float64
	found := false
	for _, x := range s {
		if x.name != name || !x.has(labels) {
			continue
		}
		found, total = true, total+x.value
	}
	if !found {
		return 0, fmt.Errorf("the manager exposes no %s%s", name, selector(labels))
	}
	return total, nil
}

// outcomes says how the reconciles ended, per kind and reason
// (puq_user_operator_reconcile_outcomes_total), e.g. "ClientMembership/Reconciled 300": which
// waits the reconciles beyond the first of each object were.
func (s scrape) outcomes() string {
	var parts []string
	for _, x := range s {
		if x.name == "puq_user_operator_reconcile_outcomes_total" && x.value > 0 && x.labels["kind"] != "PanelAccessPolicy" {
			parts = append(parts, fmt.Sprintf("%s/%s %.0f", x.labels["kind"], x.labels["reason"], x.value))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// apiRequests says the manager's requests to the API server by method, and of those how many
// found nothing (404), e.g. "GET 309 (404: 865), PATCH 1124".
func (s scrape) apiRequests() string {
	by, missing := map[string]float64{}, map[string]float64{}
	for _, x := range s {
		if x.name != "rest_client_requests_total" {
			continue
		}
		by[x.labels["method"]] += x.value
		if x.labels["code"] == "404" {
			missing[x.labels["method"]] += x.value
		}
	}
	methods := make([]string, 0, len(by))
	for m := range by {
		methods = append(methods, m)
	}
	slices.Sort(methods)
	parts := make([]string, 0, len(methods))
	for _, m := range methods {
		p := fmt.Sprintf("%s %.0f", m, by[m])
		if missing[m] > 0 {
			p += fmt.Sprintf(" (404: %.0f)", missing[m])
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func (x sample) has(labels []string) bool {
	for i := 0; i < len(labels); i += 2 {
		if v, ok := x.labels[labels[i]]; !ok || v != labels[i+1] {
			return false
		}
	}
	return true
}

func selector(labels []string) string {
	if len(labels) == 0 {
		return ""
	}
	var parts []string
	for i := 0; i < len(labels); i += 2 {
		parts = append(parts, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// apiWrites counts the manager's write requests to the API server (client-go's request
// metric). The metric must be there: the manager has made requests (its list and watches) by
// the time it serves metrics, so its absence means the metric was renamed, not "no writes".
func (s scrape) apiWrites() (float64, error) {
	if _, err := s.sum("rest_client_requests_total"); err != nil {
		return 0, err
	}
	var writes float64
	for _, verb := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		if v, err := s.sum("rest_client_requests_total", "method", verb); err == nil {
			writes += v
		}
	}
	return writes, nil
}

// userQueue is the User controller's work so far: the items its queue has handed out to be
// reconciled (workqueue adds) and the reconciles that finished.
type userQueue struct{ adds, reconciles, active float64 }

func (s scrape) userQueue() (userQueue, error) {
	var q userQueue
	var err error
	if q.adds, err = s.sum("workqueue_adds_total", "controller", "user"); err != nil {
		return q, err
	}
	if q.reconciles, err = s.sum("controller_runtime_reconcile_total", "controller", "user"); err != nil {
		return q, err
	}
	if q.active, err = s.sum("controller_runtime_active_workers", "controller", "user"); err != nil {
		return q, err
	}
	return q, nil
}

// idle: every item that became ready in the queue has been reconciled to the end, and no worker
// is busy. (Items waiting for a requeue time are not counted until they are ready.)
func (q userQueue) idle() bool { return q.adds == q.reconciles && q.active == 0 }
