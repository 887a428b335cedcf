package e2e

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
)

// A manager given nothing on its command line, only PUQ_ variables and PANEL_DB_PASSWORD, runs
// with them; with PUQ_NAMESPACE it reconciles the Users of those namespaces and never looks at
// another: it runs as the operator's ServiceAccount holding the shipped ClusterRole
// (config/rbac/role.yaml) only through RoleBindings in its namespaces, so any read outside them
// would be refused and would keep it from starting; and a User created in another namespace
// before the watched ones stays untouched once the manager has nothing left to do.
func TestManagerConfiguredByEnvironmentAloneReconcilesOnlyItsNamespaces(t *testing.T) {
	a, b, other := namespace(t, "e2e-a"), namespace(t, "e2e-b"), namespace(t, "e2e-other")
	kc, _ := operatorIdentity(t, "e2e-namespaced-operator", a, b)
	p := newPanel(t)
	pw := readPassword(t, p)

	m := startManager(t, "namespaced", true, nil, []string{
		"PUQ_KUBECONFIG=" + kc, "PUQ_PANEL_DSN=" + p.DSN, "PANEL_DB_PASSWORD=" + pw, "PUQ_NAMESPACE=" + a + ", " + b,
		"PUQ_INSTANCE_ID=e2e-namespaced", "PUQ_BCRYPT_COST=4", "PUQ_PASSWORD_HASH_MIN_COST=4", "PUQ_MAX_CONCURRENT_RECONCILES=2",
	})
	outside := createUser(t, other, "olga", "olga@example.com")
	inA := createUser(t, a, "anna", "anna@example.com")
	inB := createUser(t, b, "bert", "bert@example.com")
	waitReady(t, 60*time.Second, inA, inB)
	// Nothing queued and nothing running: every event the manager received has been handled.
	eventually(t, 30*time.Second, func() bool {
		return m.Exported("workqueue_depth", "name", "user") == 0 &&
			m.Exported("controller_runtime_active_workers", "controller", "user") == 0
	}, func() string { return "the user controller still has work" })
	if n := m.Metric("controller_runtime_reconcile_total", "controller", "user"); n < 2 {
		t.Errorf("the manager counted %v User reconciles, want at least the 2 in its namespaces", n)
	}

	var got v1.User
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(outside), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.UUID != "" || len(got.Status.Conditions) != 0 {
		t.Errorf("the User in namespace %s, which the manager does not watch, was reconciled: %+v", other, got.Status)
	}
	for email, want := range map[string]int{"anna@example.com": 1, "bert@example.com": 1, "olga@example.com": 0} {
		if n := count(t, p, "SELECT COUNT(*) FROM users WHERE email = ?", email); n != want {
			t.Errorf("%d panel users with %s, want %d", n, email, want)
		}
	}
	if out := m.Out.String(); strings.Contains(out, "forbidden") {
		t.Errorf("the manager was refused a request outside its namespaces:\n%s", tail(out, 20))
	}
}

// The panel database password comes from --panel-password-file, or else PANEL_DB_PASSWORD; a
// wrong one keeps the manager from starting; a DSN holding a password is refused without
// repeating it.
func TestPanelPasswordComesFromTheFileOrTheEnvironmentNeverTheDSN(t *testing.T) {
	p := newPanel(t)
	pw := readPassword(t, p)
	const wrong = "not-the-password-7f3a"
	keepSecret(wrong)

	t.Run("the file wins over PANEL_DB_PASSWORD", func(t *testing.T) {
		m := startManager(t, "password-file", false, []string{"--kubeconfig=" + kubeconfig, "--panel-dsn=" + p.DSN,
			"--panel-password-file=" + p.PasswordFile, "--instance-id=e2e-password"}, []string{"PANEL_DB_PASSWORD=" + wrong})
		waitPanelReady(t, m)
	})
	t.Run("PANEL_DB_PASSWORD without a file", func(t *testing.T) {
		m := startManager(t, "password-env", false, []string{"--kubeconfig=" + kubeconfig, "--panel-dsn=" + p.DSN,
			"--instance-id=e2e-password"}, []string{"PANEL_DB_PASSWORD=" + pw})
		waitPanelReady(t, m)
	})
	t.Run("a wrong password keeps the manager from starting", func(t *testing.T) {
		code, out := runToExit(t, []string{"--kubeconfig=" + kubeconfig, "--panel-dsn=" + p.DSN,
			"--health-probe-bind-address=0"}, []string{"PANEL_DB_PASSWORD=" + wrong})
		if strings.Contains(out, wrong) {
			t.Error("the output repeats the password")
		}
		if code != 1 || !strings.Contains(out, "cannot open the panel database") || !strings.Contains(out, "Access denied") {
			t.Errorf("exit code %d, output:\n%s", code, tail(out, 10))
		}
	})
	t.Run("a password in the DSN is refused", func(t *testing.T) {
		// An obviously fake password: the refusal needs none that works, and whatever is given
		// on a command line is visible to every user of the machine (ps).
		const inDSN = "fake-dsn-password-0b5e"
		keepSecret(inDSN)
		dsn := strings.Replace(p.DSN, "mysql://puq@", "mysql://puq:"+inDSN+"@", 1)
		if dsn == p.DSN {
			t.Fatalf("cannot put a password into %s", p.DSN)
		}
		code, out := runToExit(t, []string{"--kubeconfig=" + kubeconfig, "--panel-dsn=" + dsn,
			"--health-probe-bind-address=0"}, nil)
		if strings.Contains(out, inDSN) {
			t.Error("the output repeats the password")
		}
		if code != 1 || !strings.Contains(out, "must not hold a password") {
			t.Errorf("exit code %d, output:\n%s", code, tail(out, 10))
		}
	})
}

// waitPanelReady waits until the manager's readiness check, a ping of the panel database, passes.
func waitPanelReady(t *testing.T, m *manager) {
	t.Helper()
	var last string
	eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get(m.ProbeURL + "/readyz")
		if err != nil {
			last = err.Error()
			return false
		}
		_ = resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK
	}, func() string { return "manager " + m.Name + " is not ready: " + last })
}

func newPanel(t *testing.T) *testdb.Panel {
	t.Helper()
	p, err := mariadb.NewPanel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Root.Close() })
	readPassword(t, p) // keeps it out of what the test prints
	return p
}

// readPassword is the panel database's password, kept out of anything the test prints.
func readPassword(t *testing.T, p *testdb.Panel) string {
	t.Helper()
	raw, err := os.ReadFile(p.PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	pw := strings.TrimSpace(string(raw))
	keepSecret(pw)
	return pw
}

func count(t *testing.T, p *testdb.Panel, query string, args ...any) int {
	t.Helper()
	var n int
	if err := p.Root.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
