// Command dev runs the operator end to end on this machine, with nothing else installed: a real
// kube-apiserver and etcd on loopback (through envtest, from bin/k8s), the CRDs, the real manager
// binary against an embedded SQLite panel database with a demo client, and config/samples. It
// prints what a person needs to keep using it and stays up until Ctrl-C. `make dev` runs it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// demoClient is the client the sample ClientMembership names.
var demoClient = panel.Client{UUID: "0b8f2a4e-3c1d-4e5f-8a9b-0c1d2e3f4a5b", Name: "Ann Smith",
	CompanyName: "Acme Hosting Ltd", TaxID: "PL5260001234", Status: "active"}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "make dev:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run() error {
	root := testenv.RepoRoot()
	devDir := filepath.Join(root, "bin", "dev")
	if err := os.MkdirAll(devDir, 0o755); err != nil {
		return err
	}
	manager := filepath.Join(root, "bin", "manager")
	if _, err := os.Stat(manager); err != nil {
		return fmt.Errorf("%s is missing: run `make dev`, which builds it", manager)
	}

	step("Starting kube-apiserver and etcd on 127.0.0.1")
	env, err := testenv.New()
	if err != nil {
		return err
	}
	if _, err := env.Start(); err != nil {
		return fmt.Errorf("cannot start the control plane: %w", err)
	}
	defer func() {
		step("Stopping kube-apiserver and etcd")
		_ = env.Stop()
	}()
	kubeconfig, _, err := testenv.AdminKubeconfig(env, devDir)
	if err != nil {
		return err
	}
	cl, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		return err
	}

	dbPath := filepath.Join(devDir, "panel.db")
	step("Preparing the embedded panel database %s (contract schema and demo client %q)", dbPath, demoClient.CompanyName)
	if err := prepareDatabase(dbPath); err != nil {
		return err
	}

	step("Starting the manager (bin/manager) against sqlite://%s", dbPath)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logFile, err := os.Create(filepath.Join(devDir, "manager.log"))
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	mgr := exec.Command(manager, "--panel-dsn=sqlite://"+dbPath, "--health-probe-bind-address=127.0.0.1:0",
		"--metrics-bind-address=0")
	mgr.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	mgr.Stdout, mgr.Stderr = logFile, logFile
	if err := mgr.Start(); err != nil {
		return fmt.Errorf("cannot start the manager: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- mgr.Wait() }()
	defer func() {
		step("Stopping the manager")
		_ = mgr.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = mgr.Process.Kill()
		}
	}()

	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	// The grant comes first: a namespace no PanelAccessPolicy selects may do nothing in the panel,
	// so Users applied before their policy is in force would start out NotPermitted.
	step("Applying the PanelAccessPolicy for namespace default (%s)", samplePolicy)
	if out, err := kubectlRun(kubectl, kubeconfig, "apply", "-f", filepath.Join(root, samplePolicy)); err != nil {
		return fmt.Errorf("kubectl apply: %w\n%s", err, out)
	}
	if err := waitPolicyReady(ctx, cl, exited); err != nil {
		return fmt.Errorf("%w (manager log: %s)", err, logFile.Name())
	}
	step("Applying config/samples")
	if out, err := kubectlRun(kubectl, kubeconfig, "apply", "-n", "default", "-k", filepath.Join(root, "config", "samples")); err != nil {
		return fmt.Errorf("kubectl apply: %w\n%s", err, out)
	}
	step("Waiting for the samples to be Ready")
	if err := waitReady(ctx, cl, exited); err != nil {
		return fmt.Errorf("%w (manager log: %s)", err, logFile.Name())
	}
	out, _ := kubectlRun(kubectl, kubeconfig, "get", "panelaccesspolicies")
	fmt.Println()
	fmt.Print(out)
	out, _ = kubectlRun(kubectl, kubeconfig, "get", "users,clientmemberships", "-n", "default")
	fmt.Println()
	fmt.Print(out)
	fmt.Printf(`
The operator is running. In another shell:
  export KUBECONFIG=%s PATH=%s:$PATH
  kubectl describe user jane-doe
  kubectl get pap    # the PanelAccessPolicies: what each namespace may do in the panel
Manager log: %s. Panel database: %s. Press Ctrl-C to stop and tear everything down.
`, kubeconfig, env.BinaryAssetsDirectory, logFile.Name(), dbPath)

	select {
	case <-ctx.Done():
		fmt.Println()
		return nil
	case err := <-exited:
		return fmt.Errorf("the manager exited: %v (log: %s)", err, logFile.Name())
	}
}

// samplePolicy grants namespace default, where the samples go, their emails and the demo client.
const samplePolicy = "config/samples/panel_v1alpha1_panelaccesspolicy.yaml"

// waitPolicyReady waits until the manager has judged every PanelAccessPolicy (Ready at its
// generation): it then holds them in its cache, and the Users applied next are judged by them.
func waitPolicyReady(ctx context.Context, cl client.Client, exited <-chan error) error {
	deadline := time.After(time.Minute)
	for {
		var policies v1.PanelAccessPolicyList
		err := cl.List(ctx, &policies)
		pending := []string{}
		for _, p := range policies.Items {
			c := meta.FindStatusCondition(p.Status.Conditions, v1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionTrue || p.Status.ObservedGeneration != p.Generation {
				pending = append(pending, "PanelAccessPolicy "+p.Name)
			}
		}
		if err == nil && len(policies.Items) > 0 && len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("the manager exited: %v", err)
		case <-deadline:
			return errors.New("not Ready after a minute: " + strings.Join(pending, "; "))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func prepareDatabase(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := panel.Open(ctx, panel.Options{DSN: "sqlite://" + path})
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	_, err = store.CreateDemoClient(ctx, demoClient)
	return err
}

func kubectlRun(kubectl, kubeconfig string, args ...string) (string, error) {
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitReady waits until every User and ClientMembership in default is Ready.
func waitReady(ctx context.Context, cl client.Client, exited <-chan error) error {
	deadline := time.After(2 * time.Minute)
	for {
		pending, err := notReady(ctx, cl)
		if err == nil && len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("the manager exited: %v", err)
		case <-deadline:
			return errors.New("not Ready after 2 minutes: " + strings.Join(pending, "; "))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func notReady(ctx context.Context, cl client.Client) ([]string, error) {
	var users v1.UserList
	var ms v1.ClientMembershipList
	if err := cl.List(ctx, &users, client.InNamespace("default")); err != nil {
		return nil, err
	}
	if err := cl.List(ctx, &ms, client.InNamespace("default")); err != nil {
		return nil, err
	}
	var pending []string
	check := func(kind, name string, conds []metav1.Condition) {
		c := meta.FindStatusCondition(conds, v1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue {
			msg := "no status yet"
			if c != nil {
				msg = c.Reason + ": " + c.Message
			}
			pending = append(pending, kind+" "+name+" ("+msg+")")
		}
	}
	for _, u := range users.Items {
		check("User", u.Name, u.Status.Conditions)
	}
	clients := map[string]map[string]bool{}
	for _, u := range users.Items {
		clients[u.Name] = map[string]bool{}
		for _, c := range u.Status.Clients {
			clients[u.Name][c.UUID] = true
		}
	}
	for _, m := range ms.Items {
		check("ClientMembership", m.Name, m.Status.Conditions)
		if id := m.Status.ClientUUID; id != "" && !clients[m.Spec.UserRef.Name][id] {
			pending = append(pending, "User "+m.Spec.UserRef.Name+" (client list not updated yet)")
		}
	}
	return pending, nil
}
