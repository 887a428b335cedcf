package e2e

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/puqcloud/puq-user-operator/internal/testdb"
)

// A port chosen for a manager's metrics can be taken by another process before the manager binds
// it. launch must then never read that process's answers as the manager's: here the test itself
// holds the port and answers every /metrics request, and launch must report the port taken
// without sending it a single request.
func TestLaunchNeverTrustsAListenerOfAnotherProcess(t *testing.T) {
	var requests atomic.Int32
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		_, _ = w.Write([]byte("# a process that is not the manager\n"))
	}))
	defer foreign.Close()
	probe, err := testdb.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := newPanel(t)
	m, taken := launch(t, "foreign-port", false, []string{"--kubeconfig=" + kubeconfig, "--panel-dsn=" + p.DSN,
		"--panel-password-file=" + p.PasswordFile, "--instance-id=e2e-foreign-port"}, nil,
		[2]int{foreign.Listener.Addr().(*net.TCPAddr).Port, probe})
	if m != nil || !taken {
		t.Errorf("launch returned a manager (%v) and taken=%v for a metrics port another process holds, want none and true",
			m != nil, taken)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("launch sent %d requests to the other process's listener, want 0", n)
	}
}
