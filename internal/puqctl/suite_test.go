package puqctl

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

var (
	// kubeconfig is an admin kubeconfig of the suite's API server, as an admin's kubectl has.
	kubeconfig string
	restConfig *rest.Config
	k8s        client.Client
	// mariadb is started by the first test that needs a panel (mariaDB).
	mariadb *testdb.MariaDB
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	env, err := testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start the test control plane:", err)
		return 1
	}
	if restConfig, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start kube-apiserver and etcd:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	dir, err := os.MkdirTemp("", "puqctl-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if kubeconfig, _, err = testenv.AdminKubeconfig(env, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if k8s, err = client.New(restConfig, client.Options{Scheme: env.Scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create a client:", err)
		return 1
	}
	code := m.Run()
	if mariadb != nil {
		mariadb.Close()
	}
	return code
}

// mariaDB starts the suite's MariaDB the first time a test needs one.
func mariaDB(t *testing.T) *testdb.MariaDB {
	t.Helper()
	if mariadb == nil {
		var err error
		if mariadb, err = testdb.StartMariaDB(); err != nil {
			t.Fatalf("cannot start MariaDB for the tests: %v", err)
		}
	}
	return mariadb
}

// result is what a command printed.
type result struct {
	out, errOut string
	err         error
}

// run runs one subcommand as kubectl would run the plugin: with the admin kubeconfig, namespace
// ns ("" for the kubeconfig's) and the args, its output captured (not a terminal).
func run(t *testing.T, ns string, newCmd func(*Factory) *cobra.Command, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	if ns != "" {
		flags.Namespace = &ns
	}
	f := &Factory{ConfigFlags: flags, IOStreams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}}
	cmd := newCmd(f)
	cmd.SetArgs(append([]string{}, args...)) // never nil: cobra would read os.Args
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage = true
	err := cmd.ExecuteContext(context.Background())
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

// mustRun is run for a command that must succeed.
func mustRun(t *testing.T, ns string, newCmd func(*Factory) *cobra.Command, args ...string) string {
	t.Helper()
	r := run(t, ns, newCmd, args...)
	if r.err != nil {
		t.Fatalf("%v: %v\nstderr: %s", args, r.err, r.errOut)
	}
	return r.out
}

// Dates and ages the API server picks differ from run to run; they are normalised, keeping the
// width of the date, so the columns of the golden tables stay aligned as printed.
var (
	dateRE = regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}\b`)
	ageRE  = regexp.MustCompile(`\(\S+ ago\)`)
)

func normalise(s string) string {
	return ageRE.ReplaceAllString(dateRE.ReplaceAllString(s, "YYYY-MM-DD"), "(AGE ago)")
}

// golden compares got with testdata/name.golden, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = normalise(got)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./internal/puqctl/ -update` to write it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (rerun with -update if the change is meant):\n--- want\n%s--- got\n%s", path, want, got)
	}
}

// namespace creates a namespace with a fixed name, so the golden output names it.
func namespace(t *testing.T, name string) string {
	t.Helper()
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// user creates a User, then writes the status through the status subresource, as the operator
// does.
func user(t *testing.T, ns, name string, spec v1.UserSpec, status *v1.UserStatus) *v1.User {
	t.Helper()
	ctx := context.Background()
	if spec.PasswordSecretRef.Name == "" {
		spec.PasswordSecretRef.Name = name + "-password"
	}
	if spec.FirstName == "" {
		spec.FirstName, spec.LastName = "Jane", "Doe"
	}
	u := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	if err := k8s.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	if status != nil {
		u.Status = *status
		u.Status.ObservedGeneration = u.Generation
		for i := range u.Status.Conditions {
			u.Status.Conditions[i].ObservedGeneration = u.Generation
			u.Status.Conditions[i].LastTransitionTime = metav1.Now()
		}
		if err := k8s.Status().Update(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// newMembership creates a ClientMembership and writes its status.
func newMembership(t *testing.T, ns, name string, spec v1.ClientMembershipSpec, status *v1.ClientMembershipStatus) {
	t.Helper()
	ctx := context.Background()
	m := &v1.ClientMembership{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	if err := k8s.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	if status != nil {
		m.Status = *status
		m.Status.ObservedGeneration = m.Generation
		for i := range m.Status.Conditions {
			m.Status.Conditions[i].ObservedGeneration = m.Generation
			m.Status.Conditions[i].LastTransitionTime = metav1.Now()
		}
		if err := k8s.Status().Update(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// event records an event about the User as the operator's recorder does (events.k8s.io/v1).
func event(t *testing.T, u *v1.User, typ, reason, note string, at time.Time) {
	t.Helper()
	e := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: u.Namespace, GenerateName: u.Name + "-"},
		EventTime:  metav1.NewMicroTime(at), ReportingController: "puq-user-operator", ReportingInstance: "test",
		Action: "Reconcile", Reason: reason, Note: note, Type: typ,
		Regarding: corev1.ObjectReference{APIVersion: v1.GroupVersion.String(), Kind: "User", Namespace: u.Namespace,
			Name: u.Name, UID: u.UID},
	}
	if err := k8s.Create(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

// secret creates a Secret.
func secret(t *testing.T, s *corev1.Secret) {
	t.Helper()
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

func ready() []metav1.Condition {
	return []metav1.Condition{{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1.ReasonReconciled,
		Message: "The panel user matches the spec."}}
}

// stalled is the conditions of an object waiting for a person to fix reason.
func stalled(reason, message string) []metav1.Condition {
	return []metav1.Condition{
		{Type: v1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: message},
		{Type: v1.ConditionStalled, Status: metav1.ConditionTrue, Reason: reason, Message: message},
	}
}
