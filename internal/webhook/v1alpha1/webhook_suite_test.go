package v1alpha1_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
	webhookv1alpha1 "github.com/puqcloud/puq-user-operator/internal/webhook/v1alpha1"
)

var (
	k8s      client.Client // system:masters, straight to the API server
	mgrCache cache.Cache   // the webhook manager's cache: what the webhooks judge from
)

// TestMain starts kube-apiserver and etcd with the CRDs and config/webhook's
// ValidatingWebhookConfiguration (envtest points it at a local port with a certificate it
// generates), and a manager serving the webhooks there, as the operator's ServiceAccount bound to
// config/rbac/role.yaml: the webhooks read nothing the shipped role does not grant.
func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	env, err := testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start the test control plane:", err)
		return 1
	}
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{
		Paths: []string{filepath.Join(testenv.RepoRoot(), "config", "webhook")},
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start kube-apiserver and etcd:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "cannot stop the test control plane:", err)
		}
	}()
	if k8s, err = client.New(cfg, client.Options{Scheme: env.Scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create a client:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs bytes.Buffer
	stopped, err := startManager(ctx, env, cfg, &logs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot start the webhook manager: %v\nits log:\n%s", err, logs.String())
		return 1
	}
	code := m.Run()
	cancel()
	if err := <-stopped; err != nil {
		fmt.Fprintln(os.Stderr, "the webhook manager failed:", err)
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "the webhook manager's log:\n%s", logs.String())
	}
	return code
}

func startManager(ctx context.Context, env *envtest.Environment, cfg *rest.Config, logs io.Writer) (<-chan error, error) {
	if err := testenv.BindManagerRole(ctx, k8s, "webhook-test-manager", testenv.Manager); err != nil {
		return nil, err
	}
	wio := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(testenv.Manager.Impersonate(cfg), ctrl.Options{
		Scheme:                 env.Scheme,
		Logger:                 zap.New(zap.WriteTo(logs)),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
		Client:                 client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		WebhookServer: webhook.NewServer(webhook.Options{Host: wio.LocalServingHost, Port: wio.LocalServingPort,
			CertDir: wio.LocalServingCertDir}),
	})
	if err != nil {
		return nil, err
	}
	// As cmd/main.go wires them: the controllers' indexes, the webhooks' own, the webhooks.
	if err := controller.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}
	if err := webhookv1alpha1.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}
	if err := webhookv1alpha1.SetupUserWebhookWithManager(mgr, nil); err != nil {
		return nil, err
	}
	if err := webhookv1alpha1.SetupClientMembershipWebhookWithManager(mgr, nil); err != nil {
		return nil, err
	}
	mgrCache = mgr.GetCache()
	stopped := make(chan error, 1)
	go func() { stopped <- mgr.Start(ctx) }()
	started := mgr.GetWebhookServer().StartedChecker()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		select {
		case err := <-stopped:
			return false, fmt.Errorf("the manager stopped: %v", err)
		default:
		}
		return started(nil) == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the webhook server did not start: %w", err)
	}
	if !mgrCache.WaitForCacheSync(ctx) {
		return nil, fmt.Errorf("the manager's cache did not sync")
	}
	return stopped, nil
}

var serial atomic.Int64

// namespace creates a namespace of its own for the test.
func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("webhook-%d", serial.Add(1))}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// policy creates a PanelAccessPolicy selecting the namespaces by name, and waits until the
// webhooks' cache holds it.
func policy(t *testing.T, spec v1.PanelAccessPolicySpec, namespaces ...string) *v1.PanelAccessPolicy {
	t.Helper()
	spec.Namespaces.Names = namespaces
	p := &v1.PanelAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("webhook-policy-%d", serial.Add(1))}, Spec: spec}
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })
	waitCached(t, p)
	return p
}

// waitCached waits until the webhooks' cache holds obj at its resourceVersion: what a webhook
// judges next sees it. It counts versions, it does not sleep.
func waitCached(t *testing.T, obj client.Object) {
	t.Helper()
	key := client.ObjectKeyFromObject(obj)
	fresh := obj.DeepCopyObject().(client.Object)
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true,
		func(ctx context.Context) (bool, error) {
			if err := mgrCache.Get(ctx, key, fresh); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			return fresh.GetResourceVersion() == obj.GetResourceVersion(), nil
		})
	if err != nil {
		t.Fatalf("the webhooks' cache never held %T %s at version %s: %v", obj, key, obj.GetResourceVersion(), err)
	}
}

// create creates obj as a kubectl apply would, and when the API server accepts it waits until
// the webhooks' cache holds it.
func create(t *testing.T, obj client.Object) error {
	t.Helper()
	err := k8s.Create(context.Background(), obj)
	if err == nil {
		waitCached(t, obj)
	}
	return err
}

// mustCreate creates obj, failing the test when the API server (its webhook) refuses it.
func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := create(t, obj); err != nil {
		t.Fatalf("creating %T %s was refused: %v", obj, obj.GetName(), err)
	}
}

// refused returns the message of the webhook's refusal of err, failing the test unless err is
// one: the API server's Invalid (422) carrying the webhook's name.
func refused(t *testing.T, err error, webhookName string) string {
	t.Helper()
	if err == nil {
		t.Fatal("the API server accepted the object; want the admission webhook to refuse it")
	}
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), `admission webhook "`+webhookName+`" denied the request`) {
		t.Fatalf("want a refusal by admission webhook %s (Invalid), got: %v", webhookName, err)
	}
	return err.Error()
}

const (
	userWebhook       = "vuser-v1alpha1.kb.io"
	membershipWebhook = "vclientmembership-v1alpha1.kb.io"
)

func user(namespace, name, email string) *v1.User {
	return &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Spec: v1.UserSpec{
		Email: email, FirstName: "Jane", LastName: "Doe",
		PasswordSecretRef: v1.SecretKeyReference{Name: name + "-password"},
	}}
}

func membership(namespace, name, userName string, sel v1.ClientSelector) *v1.ClientMembership {
	return &v1.ClientMembership{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: userName}, Client: sel}}
}

// waitGone waits until the webhooks' cache no longer holds obj.
func waitGone(t *testing.T, obj client.Object) {
	t.Helper()
	fresh := obj.DeepCopyObject().(client.Object)
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true,
		func(ctx context.Context) (bool, error) {
			err := mgrCache.Get(ctx, client.ObjectKeyFromObject(obj), fresh)
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
	if err != nil {
		t.Fatalf("the webhooks' cache still holds %T %s: %v", obj, obj.GetName(), err)
	}
}

// userWebhookCalls is how many admission requests the User webhook has served, by
// controller-runtime's own counter.
func userWebhookCalls(t *testing.T) float64 {
	t.Helper()
	const path = "/validate-panel-puqcloud-com-v1alpha1-user"
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_webhook_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "webhook" && l.GetValue() == path {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
