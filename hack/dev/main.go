// Command dev runs the operator end to end on this machine, with nothing else installed: a real
// kube-apiserver and etcd on loopback (through envtest, from bin/k8s), the CRDs, the real manager
// binary against an embedded SQLite panel database with a demo client, and config/samples. It
// prints what a person needs to keep using it and stays up until Ctrl-C. `make dev` runs it.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
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
	_, statErr := os.Stat(dbPath)
	kept := statErr == nil
	step("Preparing the embedded panel database %s (contract schema and demo client %q)", dbPath, demoClient.CompanyName)
	previous, err := prepareDatabase(dbPath, filepath.Join(devDir, "cluster-id"), kept)
	if err != nil {
		return err
	}
	cluster, err := clusterID(cl)
	if err != nil {
		return err
	}
	// The admission webhooks, served on loopback with a certificate made for this run; the API
	// server calls them at https://127.0.0.1:<port> (installed below, once they answer).
	certDir := filepath.Join(devDir, "webhook-certs")
	ca, err := testenv.ServingCert(certDir)
	if err != nil {
		return err
	}
	webhookPort, err := testdb.FreePort()
	if err != nil {
		return err
	}
	webhookAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(webhookPort))
	args := []string{"--panel-dsn=sqlite://" + dbPath, "--health-probe-bind-address=127.0.0.1:0", "--metrics-bind-address=0",
		"--cluster-id=" + cluster, "--enable-webhooks", "--webhook-host=127.0.0.1",
		"--webhook-port=" + strconv.Itoa(webhookPort), "--webhook-cert-path=" + certDir}
	if previous != "" && previous != cluster {
		// A fresh etcd on the kept database: every object has a new UID, so the bindings of the
		// previous run are claimed by name, explicitly.
		step("Claiming the bindings of the previous run's cluster %s (--previous-cluster-id)", previous)
		args = append(args, "--previous-cluster-id="+previous)
	}

	step("Starting the manager (bin/manager) against sqlite://%s", dbPath)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logFile, err := os.Create(filepath.Join(devDir, "manager.log"))
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	mgr := exec.Command(manager, args...)
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

	step("Installing the admission webhooks (https://%s, failurePolicy Fail)", webhookAddr)
	if err := installWebhooks(ctx, cl, webhookAddr, ca, exited); err != nil {
		return fmt.Errorf("%w (manager log: %s)", err, logFile.Name())
	}

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
	// Recorded once the samples are Ready, so their bindings carry this cluster: the next run
	// claims them from it. A run that fails before keeps the previous identity for the next.
	if err := os.WriteFile(filepath.Join(devDir, "cluster-id"), []byte(cluster+"\n"), 0o644); err != nil {
		return err
	}
	step("Applying a second User with jane-doe's email (server-side dry run): the webhook refuses it")
	duplicate := filepath.Join(devDir, "duplicate-user.yaml")
	if err := os.WriteFile(duplicate, []byte(duplicateUser), 0o644); err != nil {
		return err
	}
	out, err := kubectlRun(kubectl, kubeconfig, "apply", "-n", "default", "--dry-run=server", "-f", duplicate)
	if err == nil || !strings.Contains(out, "DuplicateEmail") {
		return fmt.Errorf("the admission webhook did not refuse a duplicate email:\n%s", out)
	}
	fmt.Print(out)
	out, _ = kubectlRun(kubectl, kubeconfig, "get", "panelaccesspolicies")
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
  kubectl apply -f %s    # refused at apply time: the email is taken
Manager log: %s. Panel database: %s. Press Ctrl-C to stop and tear everything down.
`, kubeconfig, env.BinaryAssetsDirectory, duplicate, logFile.Name(), dbPath)

	select {
	case <-ctx.Done():
		fmt.Println()
		return nil
	case err := <-exited:
		return fmt.Errorf("the manager exited: %v (log: %s)", err, logFile.Name())
	}
}

// duplicateUser asks for the sample User's email again: the admission webhook refuses it.
const duplicateUser = `apiVersion: panel.puqcloud.com/v1alpha1
kind: User
metadata:
  name: jane-doe-again
  namespace: default
spec:
  email: Jane.Doe@example.com
  passwordSecretRef:
    name: jane-doe-password
  firstName: Jane
  lastName: Doe
`

// installWebhooks waits until the manager's webhook server answers TLS at addr with the
// certificate ca signed, then installs config/webhook's ValidatingWebhookConfiguration pointed at
// it: from then on the API server refuses at apply time what the webhooks refuse.
func installWebhooks(ctx context.Context, cl client.Client, addr string, ca []byte, exited <-chan error) error {
	err := poll(ctx, exited, time.Minute, 100*time.Millisecond, func() ([]string, error) {
		if err := testenv.ServesTLS(ctx, addr, ca); err != nil {
			return []string{"the webhook server at " + addr + " (" + err.Error() + ")"}, nil
		}
		return nil, nil
	})
	if err != nil {
		return err
	}
	vwc, err := testenv.LocalWebhooks(addr, ca)
	if err != nil {
		return err
	}
	return cl.Create(ctx, vwc)
}

// samplePolicy grants namespace default, where the samples go, their emails and the demo client.
const samplePolicy = "config/samples/panel_v1alpha1_panelaccesspolicy.yaml"

// waitPolicyReady waits until the manager has judged every PanelAccessPolicy (Ready at its
// generation): it then holds them in its cache, and the Users applied next are judged by them.
func waitPolicyReady(ctx context.Context, cl client.Client, exited <-chan error) error {
	return poll(ctx, exited, time.Minute, 200*time.Millisecond, func() ([]string, error) {
		var policies v1.PanelAccessPolicyList
		if err := cl.List(ctx, &policies); err != nil {
			return nil, err
		}
		pending := []string{}
		for _, p := range policies.Items {
			c := meta.FindStatusCondition(p.Status.Conditions, v1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionTrue || p.Status.ObservedGeneration != p.Generation {
				pending = append(pending, "PanelAccessPolicy "+p.Name)
			}
		}
		if len(policies.Items) == 0 {
			pending = append(pending, "no PanelAccessPolicy yet")
		}
		return pending, nil
	})
}

// poll calls check every `every` until it reports nothing pending, the manager exits, ctx ends or
// timeout passes (then the error lists what was still pending).
func poll(ctx context.Context, exited <-chan error, timeout, every time.Duration, check func() ([]string, error)) error {
	deadline := time.After(timeout)
	for {
		pending, err := check()
		if err == nil && len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("the manager exited: %v", err)
		case <-deadline:
			return fmt.Errorf("not Ready after %s: %s", timeout, strings.Join(pending, "; "))
		case <-time.After(every):
		}
	}
}

// beforeClusterIDs names, in a database kept from a run before bindings recorded their cluster,
// the cluster of those bindings, so that they are claimed like any previous run's.
const beforeClusterIDs = "make-dev-before-cluster-ids"

// prepareDatabase creates the panel database and its demo client, and returns the cluster the
// kept database's bindings were written in ("" for a new database): the identity the last run
// recorded in idFile.
func prepareDatabase(path, idFile string, kept bool) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := panel.Open(ctx, panel.Options{DSN: "sqlite://" + path})
	if err != nil {
		return "", err
	}
	defer func() { _ = store.Close() }()
	if _, err := store.CreateDemoClient(ctx, demoClient); err != nil {
		return "", err
	}
	raw, err := os.ReadFile(idFile)
	switch {
	case err == nil:
		return strings.TrimSpace(string(raw)), nil
	case !errors.Is(err, os.ErrNotExist) || !kept:
		return "", nil
	}
	// Kept from a run before bindings recorded their cluster: name it, to claim its bindings.
	for _, table := range []string{"puq_operator_bindings", "puq_operator_membership_bindings"} {
		if _, err := store.DB().ExecContext(ctx, "UPDATE "+table+" SET cluster_id = ? WHERE cluster_id = ''",
			beforeClusterIDs); err != nil {
			return "", fmt.Errorf("cannot name the cluster of the kept bindings: %w", err)
		}
	}
	return beforeClusterIDs, nil
}

// clusterID is the UID of the kube-system namespace: the cluster's identity in the bindings.
func clusterID(cl client.Client) (string, error) {
	ns := &corev1.Namespace{}
	var err error
	// The control plane creates kube-system a moment after it answers.
	pollErr := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 30*time.Second, true,
		func(ctx context.Context) (bool, error) {
			err = cl.Get(ctx, client.ObjectKey{Name: metav1.NamespaceSystem}, ns)
			return !apierrors.IsNotFound(err), nil
		})
	if err == nil {
		err = pollErr
	}
	if err != nil {
		return "", fmt.Errorf("cannot read the kube-system namespace: %w", err)
	}
	return string(ns.UID), nil
}

func kubectlRun(kubectl, kubeconfig string, args ...string) (string, error) {
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitReady waits until every User and ClientMembership in default is Ready.
func waitReady(ctx context.Context, cl client.Client, exited <-chan error) error {
	return poll(ctx, exited, 2*time.Minute, 500*time.Millisecond, func() ([]string, error) { return notReady(ctx, cl) })
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
