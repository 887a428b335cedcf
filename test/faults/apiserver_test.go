package faults

import (
	"context"
	"testing"
	"time"

	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// kube-apiserver is killed (SIGKILL) in the middle of a sync and started again on the same etcd,
// port and keys, as after a crash; Users are still being created on either side of the gap. The
// manager, its watches and requests cut, must stay up and converge once the API server is back.
func TestAPIServerRestartedMidSyncConverges(t *testing.T) {
	users, down := size(40, 300), size(5*time.Second, 20*time.Second)
	s := newScenario(t, "apiserver")
	m := s.start()
	pid := m.PID()
	created := make(chan error, 1)
	go func() { created <- s.createUsers(users, 4) }()
	s.waitReadyCount(users/4, 2*time.Minute)

	if err := testenv.KillAPIServer(env); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	t.Cleanup(func() { _ = testenv.StartAPIServer(env) }) // a no-op once it runs
	time.Sleep(down)                                      // the fault itself: the API server is away this long
	if err := testenv.StartAPIServer(env); err != nil {
		t.Fatal(err)
	}
	gap := time.Since(stopped)
	// Until its authorizer has read the RBAC bindings again, the new API server refuses what the
	// shipped role grants: those refusals are its own, not a rule missing from config/rbac.
	if err := testenv.WaitManagerGranted(context.Background(), k8s, s.sa, s.w.Namespace); err != nil {
		t.Fatal(err)
	}
	// A refusal is logged when its reconcile returns, which can be a moment after the grant for a
	// request the API server refused before it (the log's timestamps are whole seconds, too).
	m.TolerateForbiddenUntil(time.Now().Add(5 * time.Second))
	if err := <-created; err != nil {
		t.Fatalf("cannot create the Users: %v", err)
	}
	f := CheckInvariant(t, s.w, size(2*time.Minute, 4*time.Minute))
	if m.Exited() || m.PID() != pid {
		t.Errorf("the manager did not stay up through the API server's restart:\n%s", testenv.Tail(m.Out.String(), 20))
	}
	if len(f.NotReady) > 0 {
		t.Errorf("Users not Ready at the end: %v", f.NotReady)
	}
	s.figures("%d Users (%d+ Ready before); kube-apiserver killed (SIGKILL) and started again, away %.1fs; manager PID "+
		"unchanged: %v; %s", users, users/4, gap.Seconds(), m.PID() == pid && !m.Exited(), f)
}
