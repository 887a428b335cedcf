package faults

import (
	"context"
	"testing"
	"time"

	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// leaseName is the manager's leader election Lease (cmd/main.go).
const leaseName = "puq-user-operator.panel.puqcloud.com"

// Two managers elect a leader; the leader is killed with SIGKILL in the middle of a sync (no
// lease released, transactions cut off); the other takes the lease over and finishes. Nothing
// may be written twice: one create activity row per User, and no update row at all (nothing
// was edited), besides the invariant's own count.
func TestLeaderKilledMidSyncTheOtherFinishesWithoutDoubleWrites(t *testing.T) {
	users := size(40, 300)
	s := newScenario(t, "leader")
	args := []string{"--leader-elect", "--leader-election-namespace=" + s.leaseNS,
		"--leader-election-lease-duration=6s", "--leader-election-renew-deadline=5s",
		"--leader-election-retry-period=500ms"}
	replicas := []*testenv.Process{s.start(args...), s.start(args...)}
	leading := func(m *testenv.Process) bool {
		v, _, err := m.Series("leader_election_master_status", "name", leaseName)
		return err == nil && v == 1
	}
	var leader, follower *testenv.Process
	deadline := time.Now().Add(60 * time.Second)
	for leader == nil {
		switch l0, l1 := leading(replicas[0]), leading(replicas[1]); {
		case l0 && !l1:
			leader, follower = replicas[0], replicas[1]
		case l1 && !l0:
			leader, follower = replicas[1], replicas[0]
		case time.Now().After(deadline):
			t.Fatal("no single replica leads after 60s")
		default:
			time.Sleep(100 * time.Millisecond)
		}
	}

	created := make(chan error, 1)
	go func() { created <- s.createUsers(users, 4) }()
	s.waitReadyCount(users/4, 2*time.Minute)
	followerBefore := follower.Metric("controller_runtime_reconcile_total")
	leader.Kill()
	killed := time.Now()
	deadline = killed.Add(60 * time.Second)
	for !leading(follower) {
		if time.Now().After(deadline) {
			t.Fatal("the remaining replica did not take the lease over within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	takeover := time.Since(killed)
	if err := <-created; err != nil {
		t.Fatalf("cannot create the Users: %v", err)
	}
	f := CheckInvariant(t, s.w, size(2*time.Minute, 4*time.Minute))

	if followerBefore != 0 {
		t.Errorf("the replica that did not lead counted %v reconciles before the takeover, want 0", followerBefore)
	}
	creates, updates := countActivity(t, s.w, "create"), countActivity(t, s.w, "update")
	if creates != users || updates != 0 {
		t.Errorf("%d create and %d update activity rows for %d Users created once and never changed, want %d and 0",
			creates, updates, users, users)
	}
	if len(f.NotReady) > 0 {
		t.Errorf("Users not Ready at the end: %v", f.NotReady)
	}
	s.figures("%d Users; leader killed (SIGKILL) with %d+ Ready; the other led %.1fs later; %d create and %d update "+
		"activity rows; %s", users, users/4, takeover.Seconds(), creates, updates, f)
}

// countActivity counts the activity rows of an action about panel users.
func countActivity(t *testing.T, w *World, action string) int {
	t.Helper()
	var n int
	if err := w.Panel.Root.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM activity_logs WHERE action = ?",
		action).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
