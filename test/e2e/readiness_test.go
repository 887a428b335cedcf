package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/puqcloud/puq-user-operator/internal/testdb"
)

// The readiness the Deployment probes (/readyz?exclude=panel-database) stays OK while the panel
// database stops answering, and /readyz (every check) says the database is gone: a database
// outage keeps the replicas in the webhook Service. The outage is real: a proxy in front of
// MariaDB stops forwarding.
func TestReadinessLeavesThePanelDatabaseOut(t *testing.T) {
	p := newPanel(t)
	pw := readPassword(t, p)
	target := regexp.MustCompile(`tcp\(([^)]*)\)`).FindStringSubmatch(p.DSN)
	if target == nil {
		t.Fatal("the test panel's DSN names no tcp address")
	}
	proxy, err := testdb.StartProxy(target[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	ns := namespace(t, "e2e-ready")
	kc, _ := operatorIdentity(t, "e2e-readiness-operator", ns)
	m := startManager(t, "readiness", false, []string{"--kubeconfig=" + kc, "--panel-dsn=" + proxy.DSN(p.DSN),
		"--namespace=" + ns, "--instance-id=e2e-readiness", "--bcrypt-cost=4", "--password-hash-min-cost=4"},
		[]string{"PANEL_DB_PASSWORD=" + pw})
	status := func(path string) int {
		resp, err := http.Get(m.ProbeURL + path)
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	const probe = "/readyz?exclude=panel-database"
	eventually(t, 30*time.Second, func() bool { return status("/readyz") == http.StatusOK && status(probe) == http.StatusOK },
		func() string { return "the manager never became ready:\n" + tail(m.Out.String(), 10) })

	proxy.Stall()
	defer proxy.Resume()
	last := 0
	eventually(t, 30*time.Second, func() bool { last = status("/readyz"); return last == http.StatusInternalServerError },
		func() string {
			return fmt.Sprintf("/readyz answers %d with the panel database unreachable (%d reads held), want 500 (a failed check)", last,
				proxy.Held())
		})
	if got := status(probe); got != http.StatusOK {
		t.Errorf("with the panel database unreachable the Deployment's readiness probe %s answers %d, want 200", probe, got)
	}
	if got := status("/readyz/informers"); got != http.StatusOK {
		t.Errorf("/readyz/informers answers %d, want 200", got)
	}
}
