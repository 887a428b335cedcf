// Package e2e drives the real manager binary, built from ./cmd, against a real kube-apiserver and
// a real MariaDB: its flags and environment, its namespaces, and leader election between replicas.
// It reads what the binary does from its logs, its /metrics and the objects and rows it writes.
//
// Every manager runs as the operator's ServiceAccount with a token of its own, granted only what
// config/rbac deploys, read from disk: the ClusterRole of role.yaml (across the cluster, or in the
// watched namespaces for --namespace) and the Role of leader_election_role.yaml in the namespace
// of its Lease. A rule missing there makes the manager's requests refused, and a test fails.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

var (
	env        *envtest.Environment
	restConfig *rest.Config  // system:masters
	k8s        client.Client // system:masters: what the tests themselves read and write with
	// kubeconfig is the manager's ServiceAccount (testenv.Manager), holding the shipped ClusterRole
	// across the cluster and the leader election Role in its own namespace.
	kubeconfig string
	mariadb    *testdb.MariaDB
	managerBin string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "puq-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	managerBin = filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", managerBin, "./cmd")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "cannot build the manager (go build ./cmd): %v\n%s", err, out)
		return 1
	}
	if env, err = testenv.New(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start the test control plane:", err)
		return 1
	}
	if restConfig, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start kube-apiserver and etcd:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if k8s, err = client.New(restConfig, client.Options{Scheme: env.Scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create a client:", err)
		return 1
	}
	if kubeconfig, err = deployIdentity(context.Background(), testenv.Manager, "e2e-manager", dir); err != nil {
		fmt.Fprintln(os.Stderr, "cannot set up the manager's identity:", err)
		return 1
	}
	if mariadb, err = testdb.StartMariaDB(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start MariaDB for the tests:", err)
		return 1
	}
	defer mariadb.Close()
	return m.Run()
}

// manager is one manager process.
type manager struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	out     *testenv.Output
	metrics string // http://127.0.0.1:port/metrics
	probe   string // http://127.0.0.1:port
	done    chan struct{}
}

// baseEnv is the environment of a manager: nothing from the test's own, so a PUQ_ variable, a
// KUBECONFIG or a PANEL_DB_PASSWORD set where the tests run cannot change what they test.
func baseEnv(t *testing.T) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
}

// deployIdentity gives the ServiceAccount sa what config/rbac deploys for it, as read from disk,
// under name: the ClusterRole of role.yaml across the cluster, or through RoleBindings in the
// given namespaces only, and the Role of leader_election_role.yaml in sa's own namespace, where
// its Lease lives. It returns the path of a kubeconfig, in dir, holding a token of sa.
func deployIdentity(ctx context.Context, sa testenv.ServiceAccount, name, dir string, namespaces ...string) (string, error) {
	path := filepath.Join(dir, "kubeconfig-"+name)
	token, err := sa.Kubeconfig(ctx, k8s, restConfig, path)
	if err != nil {
		return "", err
	}
	keepSecret(token)
	if err := testenv.BindManagerRole(ctx, k8s, name, sa, namespaces...); err != nil {
		return "", err
	}
	if err := testenv.BindLeaderElectionRole(ctx, k8s, sa.Namespace, name, sa); err != nil {
		return "", err
	}
	return path, nil
}

// operatorIdentity deploys the operator's ServiceAccount into a namespace of its own, as
// config/default does, holding the shipped ClusterRole in the given namespaces only, and returns
// the path of its kubeconfig and that namespace, where its leader election Lease may live.
func operatorIdentity(t *testing.T, name string, namespaces ...string) (kubeconfig, leaseNamespace string) {
	t.Helper()
	sa := testenv.ServiceAccount{Namespace: namespace(t, name), Name: testenv.Manager.Name}
	kc, err := deployIdentity(context.Background(), sa, sa.Namespace, t.TempDir(), namespaces...)
	if err != nil {
		t.Fatal(err)
	}
	return kc, sa.Namespace
}

// startManager starts the binary with args and env plus loopback metrics and probe addresses
// (given as PUQ_ variables when viaEnv), and waits until it serves its metrics. A port taken
// between choosing it and the binary binding it is chosen again.
func startManager(t *testing.T, name string, viaEnv bool, args, env []string) *manager {
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
		m, taken := launch(t, name, viaEnv, args, env, ports)
		if m != nil {
			return m
		}
		if !taken || attempt == 2 {
			t.Fatalf("manager %s did not start", name)
		}
	}
}

// launch starts the binary with its metrics on ports[0] and its probes on ports[1] and waits
// until it serves its metrics. It trusts those ports only once the listeners on them are the
// process's own sockets: another process may have taken a port since it was chosen, and a
// request to it would read that process's answers. It returns nil and true when the binary
// could not bind a port.
func launch(t *testing.T, name string, viaEnv bool, args, env []string, ports [2]int) (*manager, bool) {
	t.Helper()
	metricsAddr, probeAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	env = append(baseEnv(t), env...)
	if viaEnv {
		env = append(env, "PUQ_METRICS_BIND_ADDRESS="+metricsAddr, "PUQ_METRICS_SECURE=false",
			"PUQ_HEALTH_PROBE_BIND_ADDRESS="+probeAddr)
	} else {
		args = append([]string{"--metrics-bind-address=" + metricsAddr, "--metrics-secure=false",
			"--health-probe-bind-address=" + probeAddr}, args...)
	}
	m := &manager{t: t, name: name, out: &testenv.Output{}, metrics: "http://" + metricsAddr + "/metrics",
		probe: "http://" + probeAddr, done: make(chan struct{})}
	m.cmd = exec.Command(managerBin, args...)
	m.cmd.Env = env
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = m.cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		m.stop()
		checkOutput(t, m.name, m.out.String())
		if t.Failed() {
			t.Logf("manager %s output:\n%s", m.name, tail(m.out.String(), 60))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	owned := false
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			out := m.out.String()
			if strings.Contains(out, "address already in use") {
				return nil, true
			}
			t.Fatalf("manager %s exited during start:\n%s", name, tail(out, 40))
		default:
		}
		if !owned {
			var err error
			if owned, err = listensOn(m.cmd.Process.Pid, ports[:]...); err != nil {
				t.Fatal(err)
			}
		}
		if owned {
			if resp, err := http.Get(m.metrics); err == nil {
				_ = resp.Body.Close()
				return m, false
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("manager %s did not serve %s within 60s:\n%s", name, m.metrics, tail(m.out.String(), 40))
	return nil, false
}

// stop ends the manager with SIGTERM, as Kubernetes does, and waits for it.
func (m *manager) stop() {
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// kill ends the manager with SIGKILL: no lease released, nothing cleaned up.
func (m *manager) kill() {
	_ = m.cmd.Process.Kill()
	<-m.done
}

// scrape reads the manager's metrics; any failure fails the test.
func (m *manager) scrape() map[string]*dto.MetricFamily {
	m.t.Helper()
	resp, err := http.Get(m.metrics)
	if err != nil {
		m.t.Fatalf("scrape %s: %v", m.name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		m.t.Fatalf("scrape %s: status %d, %v", m.name, resp.StatusCode, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		m.t.Fatalf("scrape %s: %v", m.name, err)
	}
	return fams
}

// metric sums the series of a counter or gauge whose labels include the given ones; a metric the
// manager does not export (yet) sums to 0.
func (m *manager) metric(name string, labels ...string) float64 {
	m.t.Helper()
	v, _ := m.series(name, labels...)
	return v
}

// exported is metric for a gauge that must be there: one the manager does not export fails the
// test, instead of reading as 0.
func (m *manager) exported(name string, labels ...string) float64 {
	m.t.Helper()
	v, n := m.series(name, labels...)
	if n == 0 {
		m.t.Fatalf("manager %s exports no %s%v", m.name, name, labels)
	}
	return v
}

// series sums the matching series and counts them.
func (m *manager) series(name string, labels ...string) (float64, int) {
	m.t.Helper()
	fam := m.scrape()[name]
	if fam == nil {
		return 0, 0
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
		}
	}
	return sum, n
}

// runToExit runs the binary until it exits by itself and returns its exit code and output.
func runToExit(t *testing.T, args, env []string) (int, string) {
	t.Helper()
	cmd := exec.Command(managerBin, args...)
	cmd.Env = append(baseEnv(t), env...)
	var out testenv.Output
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
		t.Fatalf("the manager did not exit within 60s:\n%s", tail(out.String(), 40))
	}
	checkOutput(t, "run to exit", out.String())
	return cmd.ProcessState.ExitCode(), out.String()
}

// checkOutput fails the test when a manager's output holds a secret the tests handed it, or
// tells of a request the API server refused: every manager runs with the shipped RBAC only, so a
// refusal is a rule missing from config/rbac.
func checkOutput(t *testing.T, name, out string) {
	t.Helper()
	if leaksSecret(out) {
		t.Errorf("manager %s repeated a password or token the test handed it (printed as %s)", name, redacted)
	}
	if strings.Contains(out, "forbidden") {
		t.Errorf("manager %s was refused a request by the API server: config/rbac lacks a rule:\n%s", name,
			grep(out, "forbidden", 3))
	}
}

// grep is the first n lines of out holding s, made fit to print.
func grep(out, s string, n int) string {
	var found []string
	for l := range strings.SplitSeq(out, "\n") {
		if strings.Contains(l, s) && len(found) < n {
			found = append(found, l)
		}
	}
	return tail(strings.Join(found, "\n"), n)
}

// secrets is every password and token the tests hand a manager or the panel. No test prints one:
// tail replaces them all before anything reaches the test's output.
var secrets = struct {
	sync.Mutex
	values []string
}{values: []string{testPassword}}

const redacted = "[REDACTED]"

// keepSecret adds v to the values tail replaces.
func keepSecret(v string) {
	secrets.Lock()
	defer secrets.Unlock()
	if v != "" && !slices.Contains(secrets.values, v) {
		secrets.values = append(secrets.values, v)
	}
}

func leaksSecret(s string) bool {
	secrets.Lock()
	defer secrets.Unlock()
	return slices.ContainsFunc(secrets.values, func(v string) bool { return strings.Contains(s, v) })
}

func redact(s string) string {
	secrets.Lock()
	defer secrets.Unlock()
	for _, v := range secrets.values {
		s = strings.ReplaceAll(s, v, redacted)
	}
	return s
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

// eventually polls cond every 100 ms until it holds, failing with what() after timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tail is the last lines of a manager's output, each cut to 300 characters (stack traces), with
// every secret the tests know replaced: what a test prints of an output goes through it.
func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(redact(s), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	for i, l := range all {
		if len(l) > 300 {
			all[i] = l[:300] + "..."
		}
	}
	return strings.Join(all, "\n")
}

func namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

const testPassword = "plum-Harbor-7-lantern"

// createUser creates a User and its password Secret.
func createUser(t *testing.T, ns, name, email string) *v1.User {
	t.Helper()
	ctx := context.Background()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-password"},
		StringData: map[string]string{"password": testPassword}}
	if err := k8s.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	u := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.UserSpec{
		Email: email, PasswordSecretRef: v1.SecretKeyReference{Name: name + "-password"}, FirstName: "Jane",
		LastName: "Doe", Language: "en",
	}}
	if err := k8s.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	return u
}

// ready reports whether the User is Ready at its current generation.
func ready(t *testing.T, u *v1.User) bool {
	t.Helper()
	var got v1.User
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(u), &got); err != nil {
		t.Fatal(err)
	}
	c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && got.Status.ObservedGeneration == got.Generation
}

func waitReady(t *testing.T, timeout time.Duration, users ...*v1.User) {
	t.Helper()
	for _, u := range users {
		eventually(t, timeout, func() bool { return ready(t, u) }, func() string {
			var got v1.User
			if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(u), &got); err != nil {
				return fmt.Sprintf("User %s/%s: %v", u.Namespace, u.Name, err)
			}
			return fmt.Sprintf("User %s/%s is not Ready: %+v", u.Namespace, u.Name, got.Status.Conditions)
		})
	}
}
