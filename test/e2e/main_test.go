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
	"context"
	"fmt"
	"os"
	"testing"
	"time"

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
	if managerBin, err = testenv.BuildManager(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
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
	if err = testenv.GrantEverything(context.Background(), k8s); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create the suite's PanelAccessPolicy:", err)
		return 1
	}
	if kubeconfig, err = deployIdentity(context.Background(), testenv.Manager, "e2e-manager", dir); err != nil {
		fmt.Fprintln(os.Stderr, "cannot set up the manager's identity:", err)
		return 1
	}
	keepSecret(testPassword)
	if mariadb, err = testdb.StartMariaDB(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start MariaDB for the tests:", err)
		return 1
	}
	defer mariadb.Close()
	return m.Run()
}

// manager is one manager process.
type manager = testenv.Process

// deployIdentity gives the ServiceAccount sa what config/rbac deploys for it (testenv.DeployIdentity).
func deployIdentity(ctx context.Context, sa testenv.ServiceAccount, name, dir string, namespaces ...string) (string, error) {
	return testenv.DeployIdentity(ctx, k8s, restConfig, sa, name, dir, namespaces...)
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

// startManager starts the binary (testenv.StartManager).
func startManager(t *testing.T, name string, viaEnv bool, args, env []string) *manager {
	t.Helper()
	return testenv.StartManager(t, managerBin, name, viaEnv, args, env)
}

// launch starts the binary on the given ports (testenv.Launch).
func launch(t *testing.T, name string, viaEnv bool, args, env []string, ports [2]int) (*manager, bool) {
	t.Helper()
	return testenv.Launch(t, managerBin, name, viaEnv, args, env, ports)
}

// runToExit runs the binary until it exits by itself and returns its exit code and output.
func runToExit(t *testing.T, args, env []string) (int, string) {
	t.Helper()
	return testenv.RunToExit(t, managerBin, args, env)
}

var (
	keepSecret = testenv.KeepSecret
	tail       = testenv.Tail
)

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
