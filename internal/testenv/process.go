package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/puqcloud/puq-user-operator/internal/testdb"
)

// BuildManager builds the manager binary from ./cmd into dir and returns its path.
func BuildManager(dir string) (string, error) {
	bin := filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd")
	build.Dir = RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cannot build the manager (go build ./cmd): %w\n%s", err, out)
	}
	return bin, nil
}

// FailureLines is how many of its last lines of output each manager prints when its test failed.
var FailureLines = 60

// Process is one manager process a test started: the real binary, with its own metrics and probe
// ports on 127.0.0.1.
type Process struct {
	t    testing.TB
	Name string
	Cmd  *exec.Cmd
	// Out is everything the process wrote to stdout and stderr.
	Out *Output
	// MetricsURL is http://127.0.0.1:port/metrics; ProbeURL is http://127.0.0.1:port.
	MetricsURL, ProbeURL string
	done                 chan struct{}
	forbiddenUntil       time.Time
}

// TolerateForbiddenUntil lets the output hold refusals logged up to (and within the second of)
// until: after a restart, kube-apiserver refuses requests until its authorizer has read the
// RBAC bindings again, whatever config/rbac holds.
func (m *Process) TolerateForbiddenUntil(until time.Time) { m.forbiddenUntil = until }

// BaseEnv is the environment of a manager: nothing from the test's own, so a PUQ_ variable, a
// KUBECONFIG or a PANEL_DB_PASSWORD set where the tests run cannot change what they test.
func BaseEnv(t testing.TB) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
}

// StartManager starts the binary bin with args and env plus loopback metrics and probe addresses
// (given as PUQ_ variables when viaEnv), and waits until it serves its metrics. A port taken
// between choosing it and the binary binding it is chosen again.
func StartManager(t testing.TB, bin, name string, viaEnv bool, args, env []string) *Process {
	t.Helper()
	for attempt := 0; ; attempt++ {
		var ports [2]int
		for i := range ports {
			p, err := testdb.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			ports[i] = p
		}
		m, taken := Launch(t, bin, name, viaEnv, args, env, ports)
		if m != nil {
			return m
		}
		if !taken || attempt == 2 {
			t.Fatalf("manager %s did not start", name)
		}
	}
}

// Launch starts the binary with its metrics on ports[0] and its probes on ports[1] and waits
// until it serves its metrics. It trusts those ports only once the listeners on them are the
// process's own sockets: another process may have taken a port since it was chosen, and a
// request to it would read that process's answers. It returns nil and true when the binary
// could not bind a port. The process is stopped (SIGTERM) when the test ends, and its output
// checked with CheckOutput.
func Launch(t testing.TB, bin, name string, viaEnv bool, args, env []string, ports [2]int) (*Process, bool) {
	t.Helper()
	metricsAddr, probeAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	env = append(BaseEnv(t), env...)
	if viaEnv {
		env = append(env, "PUQ_METRICS_BIND_ADDRESS="+metricsAddr, "PUQ_METRICS_SECURE=false",
			"PUQ_HEALTH_PROBE_BIND_ADDRESS="+probeAddr)
	} else {
		args = append([]string{"--metrics-bind-address=" + metricsAddr, "--metrics-secure=false",
			"--health-probe-bind-address=" + probeAddr}, args...)
	}
	m := &Process{t: t, Name: name, Out: &Output{}, MetricsURL: "http://" + metricsAddr + "/metrics",
		ProbeURL: "http://" + probeAddr, done: make(chan struct{})}
	m.Cmd = exec.Command(bin, args...)
	m.Cmd.Env = env
	m.Cmd.Stdout, m.Cmd.Stderr = m.Out, m.Out
	if err := m.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = m.Cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		m.Stop()
		CheckOutput(t, m.Name, forbiddenAfter(m.Out.String(), m.forbiddenUntil))
		if t.Failed() && FailureLines > 0 {
			t.Logf("manager %s output:\n%s", m.Name, Tail(m.Out.String(), FailureLines))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	owned := false
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			out := m.Out.String()
			if strings.Contains(out, "address already in use") {
				return nil, true
			}
			t.Fatalf("manager %s exited during start:\n%s", name, Tail(out, 40))
		default:
		}
		if !owned {
			var err error
			if owned, err = listensOn(m.Cmd.Process.Pid, ports[:]...); err != nil {
				t.Fatal(err)
			}
		}
		if owned {
			if resp, err := http.Get(m.MetricsURL); err == nil {
				_ = resp.Body.Close()
				return m, false
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("manager %s did not serve %s within 60s:\n%s", name, m.MetricsURL, Tail(m.Out.String(), 40))
	return nil, false
}

// PID is the process ID.
func (m *Process) PID() int { return m.Cmd.Process.Pid }

// Done is closed once the process has exited.
func (m *Process) Done() <-chan struct{} { return m.done }

// Exited reports whether the process has exited.
func (m *Process) Exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// Stop ends the manager with SIGTERM, as Kubernetes does, and waits for it.
func (m *Process) Stop() {
	if m.Exited() {
		return
	}
	_ = m.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		_ = m.Cmd.Process.Kill()
		<-m.done
	}
}

// Kill ends the manager with SIGKILL: no lease released, nothing cleaned up, no request finished.
func (m *Process) Kill() {
	_ = m.Cmd.Process.Kill()
	<-m.done
}

// Scrape reads the manager's metrics.
func (m *Process) Scrape() (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(m.MetricsURL)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", m.Name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %d, %v", m.Name, resp.StatusCode, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", m.Name, err)
	}
	return fams, nil
}

// Metric sums the series of a counter or gauge whose labels include the given ones; a metric the
// manager does not export (yet) sums to 0. A failed scrape fails the test.
func (m *Process) Metric(name string, labels ...string) float64 {
	m.t.Helper()
	v, _, err := m.Series(name, labels...)
	if err != nil {
		m.t.Fatal(err)
	}
	return v
}

// Exported is Metric for a gauge that must be there: one the manager does not export fails the
// test, instead of reading as 0.
func (m *Process) Exported(name string, labels ...string) float64 {
	m.t.Helper()
	v, n, err := m.Series(name, labels...)
	if err != nil {
		m.t.Fatal(err)
	}
	if n == 0 {
		m.t.Fatalf("manager %s exports no %s%v", m.Name, name, labels)
	}
	return v
}

// Series sums the series of a counter, gauge or histogram (its count) whose labels include the
// given ones, and counts them.
func (m *Process) Series(name string, labels ...string) (float64, int, error) {
	fams, err := m.Scrape()
	if err != nil {
		return 0, 0, err
	}
	fam := fams[name]
	if fam == nil {
		return 0, 0, nil
	}
	var sum float64
	var n int
	for _, s := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range s.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		n++
		switch {
		case s.GetCounter() != nil:
			sum += s.GetCounter().GetValue()
		case s.GetGauge() != nil:
			sum += s.GetGauge().GetValue()
		case s.GetHistogram() != nil:
			sum += float64(s.GetHistogram().GetSampleCount())
		}
	}
	return sum, n, nil
}

// RunToExit runs the binary until it exits by itself and returns its exit code and output.
func RunToExit(t testing.TB, bin string, args, env []string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(BaseEnv(t), env...)
	var out Output
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the manager did not exit within 60s:\n%s", Tail(out.String(), 40))
	}
	CheckOutput(t, "run to exit", out.String())
	return cmd.ProcessState.ExitCode(), out.String()
}

// CheckOutput fails the test when a manager's output holds a secret the tests handed it, or
// tells of a request the API server refused: every manager runs with the shipped RBAC only, so a
// refusal is a rule missing from config/rbac.
func CheckOutput(t testing.TB, name, out string) {
	t.Helper()
	if LeaksSecret(out) {
		t.Errorf("manager %s repeated a password or token the test handed it (printed as %s)", name, Redacted)
	}
	if strings.Contains(out, "forbidden") {
		t.Errorf("manager %s was refused a request by the API server: config/rbac lacks a rule:\n%s", name,
			Grep(out, "forbidden", 3))
	}
}

// forbiddenAfter is out without the lines telling of a refusal logged up to until (to the second,
// as the log's timestamps are).
func forbiddenAfter(out string, until time.Time) string {
	if until.IsZero() {
		return out
	}
	var kept []string
	for l := range strings.SplitSeq(out, "\n") {
		if strings.Contains(l, "forbidden") {
			var line struct {
				TS time.Time `json:"ts"`
			}
			if json.Unmarshal([]byte(l), &line) == nil && !line.TS.After(until.Truncate(time.Second)) {
				continue
			}
		}
		kept = append(kept, l)
	}
	return strings.Join(kept, "\n")
}

// listensOn reports whether process pid holds the listening TCP socket on every one of ports:
// /proc/net/tcp{,6} name each listener's socket inode, and /proc/<pid>/fd links to the sockets
// the process holds as socket:[inode].
func listensOn(pid int, ports ...int) (bool, error) {
	want := map[int]bool{}
	for _, p := range ports {
		want[p] = true
	}
	listeners := map[string]int{} // socket:[inode] -> port
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		raw, err := os.ReadFile(table)
		if err != nil {
			return false, fmt.Errorf("cannot read %s to tell which process listens on a port: %w", table, err)
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: TCP_LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			port, err := strconv.ParseInt(hexPort, 16, 32)
			if err != nil {
				return false, fmt.Errorf("%s: local address %q: %w", table, f[1], err)
			}
			if want[int(port)] {
				listeners["socket:["+f[9]+"]"] = int(port)
			}
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("cannot read %s: %w", dir, err)
	}
	held := map[int]bool{}
	for _, fd := range fds {
		if link, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil {
			if port, ok := listeners[link]; ok {
				held[port] = true
			}
		}
	}
	return len(held) == len(want), nil
}
