package faults

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	full = flag.Bool("faults.full", false, "run every scenario at its full size (make test-faults); "+
		"without it, each runs once at a reduced size (make test)")
	seedFlag = flag.Uint64("faults.seed", 0, "seed of the random moments and choices; 0: a new one, printed")

	env        *envtest.Environment
	restConfig *rest.Config  // system:masters
	k8s        client.Client // system:masters: what the tests read and write with
	mariadb    *testdb.MariaDB
	managerBin string
)

// Every scenario shares one kube-apiserver and etcd, one mariadbd and the manager binary built
// from ./cmd, and runs alone (no t.Parallel): the scenarios restart the API server and kill the
// database.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	testenv.FailureLines = 0 // keepLogs writes them to files instead
	dir, err := os.MkdirTemp("", "puq-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if managerBin, err = testenv.BuildManager(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	certs, err := os.MkdirTemp(dir, "apiserver-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if env, err = testenv.NewRestartable(certs); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start the test control plane:", err)
		return 1
	}
	if restConfig, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start kube-apiserver and etcd:", err)
		return 1
	}
	// The kube-apiserver the restart scenario started again is not one envtest's Stop ends (it
	// would be left running, retrying a stopped etcd): end it the way the scenario does first.
	defer func() {
		_ = testenv.KillAPIServer(env)
		_ = env.Stop()
	}()
	cfg := rest.CopyConfig(restConfig)
	cfg.QPS, cfg.Burst = -1, 1000 // the scenarios drive hundreds of objects; no client-side throttling
	if k8s, err = client.New(cfg, client.Options{Scheme: env.Scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create a client:", err)
		return 1
	}
	if err = testenv.GrantEverything(context.Background(), k8s); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create the suite's PanelAccessPolicy:", err)
		return 1
	}
	if mariadb, err = testdb.StartMariaDB(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start MariaDB for the tests:", err)
		return 1
	}
	defer mariadb.Close()
	return m.Run()
}

// size is a scenario's size: reduced in make test, full with -faults.full.
func size[T any](reduced, fullSize T) T {
	if *full {
		return fullSize
	}
	return reduced
}

// scenario is one scenario's world and the manager processes it runs.
type scenario struct {
	t     *testing.T
	name  string
	w     *World
	rngMu sync.Mutex // the scenario's goroutines share rng
	rng   *rand.Rand
	// kubeconfig is the operator's ServiceAccount, holding the shipped ClusterRole in the
	// scenario's namespace and the leader election Role in leaseNS.
	kubeconfig, leaseNS string
	sa                  testenv.ServiceAccount
	dsn                 string
	args                []string
	managers            []*testenv.Process

	liveMu sync.Mutex
	live   []string // the Users created and not deleted, in order of creation
}

// newScenario makes a namespace, a fresh panel database and the operator's identity for it.
func newScenario(t *testing.T, name string) *scenario {
	t.Helper()
	ctx := context.Background()
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -faults.seed=%d)", seed, seed)
	ns := namespace(t, "faults-"+name)
	sa := testenv.ServiceAccount{Namespace: namespace(t, "faults-"+name+"-operator"), Name: testenv.Manager.Name}
	kc, err := testenv.DeployIdentity(ctx, k8s, restConfig, sa, sa.Namespace, t.TempDir(), ns)
	if err != nil {
		t.Fatal(err)
	}
	p, err := mariadb.NewPanel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Root.Close() })
	raw, err := os.ReadFile(p.PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	testenv.KeepSecret(strings.TrimSpace(string(raw)))
	instance := "faults-" + name
	s := &scenario{t: t, name: name, w: NewWorld(k8s, ns, instance, p), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b9)),
		kubeconfig: kc, leaseNS: sa.Namespace, sa: sa, dsn: p.DSN}
	t.Cleanup(s.keepLogs) // runs after the managers' own cleanups have stopped them
	s.args = []string{"--kubeconfig=" + kc, "--panel-password-file=" + p.PasswordFile, "--namespace=" + ns,
		"--instance-id=" + instance, "--bcrypt-cost=4", "--password-hash-min-cost=4"}
	return s
}

// start starts a manager against the panel (through dsn when given) with the scenario's flags
// and extra ones.
func (s *scenario) start(extra ...string) *testenv.Process {
	s.t.Helper()
	args := append([]string{"--panel-dsn=" + s.dsn}, s.args...)
	m := testenv.StartManager(s.t, managerBin, fmt.Sprintf("%s-%d", s.name, len(s.managers)+1), false,
		append(args, extra...), nil)
	s.managers = append(s.managers, m)
	return m
}

// keepLogs writes the output of every manager of a failed scenario, secrets redacted, to a
// directory it names: a scenario runs many managers, too much output to print.
func (s *scenario) keepLogs() {
	if !s.t.Failed() || len(s.managers) == 0 {
		return
	}
	dir, err := os.MkdirTemp("", "puq-faults-"+s.name+"-")
	if err != nil {
		s.t.Log(err)
		return
	}
	for _, m := range s.managers {
		if err := os.WriteFile(filepath.Join(dir, m.Name+".log"), []byte(testenv.Redact(m.Out.String())), 0o600); err != nil {
			s.t.Log(err)
		}
	}
	s.t.Logf("the output of the %d managers is in %s", len(s.managers), dir)
}

// between is a random duration in [lo, hi).
func (s *scenario) between(lo, hi time.Duration) time.Duration {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

// intn is a random int in [0, n).
func (s *scenario) intn(n int) int {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.IntN(n)
}

func namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }

// hasReason reports whether the Ready condition has the reason.
func hasReason(conds []metav1.Condition, reason string) bool {
	c := meta.FindStatusCondition(conds, v1.ConditionReady)
	return c != nil && c.Reason == reason
}

// createUsers creates the Users u-0 .. u-(n-1) with concurrency writers, retrying a create the
// API server did not answer (it may be restarting); it returns once all exist.
func (s *scenario) createUsers(n, concurrency int) error {
	var mu sync.Mutex
	next := 0
	var firstErr error
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				if err := s.createUser(fmt.Sprintf("u-%d", i)); err != nil {
					s.t.Errorf("cannot create a User: %v", err)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// createUser creates one User, retrying for up to a minute while the API server does not answer.
func (s *scenario) createUser(name string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := s.w.CreateUser(context.Background(), name)
		if err == nil || isAlreadyExists(err) {
			s.liveMu.Lock()
			s.live = append(s.live, name)
			s.liveMu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// countReady counts the Users of the world that are Ready at their generation, and those whose
// Ready condition has the reason.
func (s *scenario) countReady(reason string) (ready, withReason int, err error) {
	var list v1.UserList
	if err := k8s.List(context.Background(), &list, client.InNamespace(s.w.Namespace)); err != nil {
		return 0, 0, err
	}
	for _, u := range list.Items {
		if readyNow(u.Status.Conditions, u.Status.ObservedGeneration, u.Generation) {
			ready++
		}
		if reason != "" && hasReason(u.Status.Conditions, reason) {
			withReason++
		}
	}
	return ready, withReason, nil
}

// waitReadyCount polls until at least n Users are Ready, failing after timeout.
func (s *scenario) waitReadyCount(n int, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ready, _, err := s.countReady("")
		if err == nil && ready >= n {
			return
		}
		if s.t.Failed() || time.Now().After(deadline) {
			s.t.Fatalf("%d Users Ready after %s, want at least %d (%v)", ready, timeout, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// figures logs a scenario's figures in the one line docs/reliability.md copies.
func (s *scenario) figures(format string, args ...any) {
	s.t.Logf("FIGURES %s (%s): %s", s.t.Name(), size("reduced", "full"), fmt.Sprintf(format, args...))
}
