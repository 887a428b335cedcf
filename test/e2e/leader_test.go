package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// leaseName is the manager's leader election Lease (cmd/main.go).
const leaseName = "puq-user-operator.panel.puqcloud.com"

// Two replicas against one API server and one panel database: only the leader reconciles and
// runs the periodic resync, the other counts nothing; when the leader dies without releasing its
// lease (SIGKILL), the other takes over, reconciles and resyncs, and the Users stay Ready. The
// replicas run as the operator's ServiceAccount with the shipped ClusterRole in the watched
// namespace and the leader election Role in their own, where the Lease lives, as deployed.
func TestOnlyTheLeaderReconcilesAndResyncsAndTheOtherTakesOverWhenItDies(t *testing.T) {
	ns := namespace(t, "e2e-leader")
	kc, leaseNS := operatorIdentity(t, "e2e-leader-operator", ns)
	p := newPanel(t)
	args := []string{"--kubeconfig=" + kc, "--panel-dsn=" + p.DSN, "--panel-password-file=" + p.PasswordFile,
		"--namespace=" + ns, "--instance-id=e2e-leader", "--bcrypt-cost=4", "--password-hash-min-cost=4", "--resync-period=1s",
		"--leader-elect", "--leader-election-namespace=" + leaseNS, "--leader-election-lease-duration=6s",
		"--leader-election-renew-deadline=5s", "--leader-election-retry-period=500ms"}
	replicas := []*manager{startManager(t, "replica-1", false, args, nil), startManager(t, "replica-2", false, args, nil)}

	leading := func(m *manager) bool { return m.Metric("leader_election_master_status", "name", leaseName) == 1 }
	var leader, follower *manager
	eventually(t, 30*time.Second, func() bool {
		l0, l1 := leading(replicas[0]), leading(replicas[1])
		switch {
		case l0 && !l1:
			leader, follower = replicas[0], replicas[1]
		case l1 && !l0:
			leader, follower = replicas[1], replicas[0]
		}
		return leader != nil
	}, func() string { return "no single replica leads" })

	users := make([]*v1.User, 3)
	for i := range users {
		users[i] = createUser(t, ns, fmt.Sprintf("user-%d", i), fmt.Sprintf("user-%d@example.com", i))
	}
	waitReady(t, 60*time.Second, users...)
	// Two resync passes over the three Ready Users, all found in sync.
	eventually(t, 30*time.Second, func() bool {
		return leader.Metric("puq_user_operator_resync_users_total", "result", "in_sync") >= 2*float64(len(users))
	}, func() string { return "the leader's resync did not compare the Users twice" })
	if n := leader.Metric("controller_runtime_reconcile_total", "controller", "user"); n < float64(len(users)) {
		t.Errorf("the leader counted %v User reconciles, want at least %d", n, len(users))
	}
	for name, n := range map[string]float64{
		"puq_user_operator_resync_users_total": follower.Metric("puq_user_operator_resync_users_total"),
		"controller_runtime_reconcile_total":   follower.Metric("controller_runtime_reconcile_total"),
	} {
		if n != 0 {
			t.Errorf("the replica that does not lead counted %s = %v, want 0", name, n)
		}
	}

	leader.Kill()
	eventually(t, 30*time.Second, func() bool { return leading(follower) },
		func() string { return "the remaining replica did not take the lease over" })
	// It reconciles every User once as its controllers start, then resyncs them, all in sync.
	eventually(t, 30*time.Second, func() bool {
		return follower.Metric("controller_runtime_reconcile_total", "controller", "user") >= float64(len(users)) &&
			follower.Metric("puq_user_operator_resync_users_total", "result", "in_sync") >= float64(len(users))
	}, func() string { return "the new leader did not reconcile and resync the Users" })
	if n := follower.Metric("puq_user_operator_resync_users_total", "result", "reconcile"); n != 0 {
		t.Errorf("the new leader's resync found %v Users out of sync, want 0", n)
	}
	for _, u := range users {
		if !ready(t, u) {
			t.Errorf("User %s is not Ready after the takeover", u.Name)
		}
	}
	if n := count(t, p, "SELECT COUNT(*) FROM users"); n != len(users) {
		t.Errorf("%d panel users after the takeover, want %d", n, len(users))
	}
	// And it acts on a change.
	var u v1.User
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(users[0]), &u); err != nil {
		t.Fatal(err)
	}
	u.Spec.FirstName = "Janet"
	if err := k8s.Update(context.Background(), &u); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool {
		return count(t, p, "SELECT COUNT(*) FROM users WHERE email = ? AND firstname = 'Janet'", u.Spec.Email) == 1
	}, func() string { return "the new leader did not apply a changed firstName to the panel" })
}
