package deploy_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// testPassword is the password of the test's User: strong enough for the default policy.
const testPassword = "plum-Harbor-7-lantern"

// The overlay applied for real: the manager binary runs as its ServiceAccount with a token of its
// own and the flags of the rendered Deployment (--namespace=team-a,team-b), holding nothing but
// what config/namespaced grants. It reads a User's password Secret, issues a TOTP Secret and
// deletes it again in a watched namespace, through the Role there; the API server refuses it
// Secrets everywhere else. A verb missing from the overlay's Role, or a Secrets rule left in its
// ClusterRole, fails the test.
func TestNamespacedOverlayManagerWorksWithOnlyItsRoles(t *testing.T) {
	ctx := context.Background()
	objs := render(t, namespacedDir)
	ensureNamespace(t, operatorNamespace)
	for _, ns := range watchedNamespaces {
		ensureNamespace(t, ns)
	}
	var args []string
	var webhooks *unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "ValidatingWebhookConfiguration":
			webhooks = o
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "PanelAccessPolicy":
			if err := k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
				client.FieldOwner("deploy-test"), client.ForceOwnership); err != nil {
				t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		case "Deployment":
			args = deploymentArgs(t, o)
		}
	}
	// The cluster admin's grant to the first watched namespace, as README "Deploying" shows.
	tenant := watchedNamespaces[0]
	policy := &v1.PanelAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deploy-test-" + tenant},
		Spec: v1.PanelAccessPolicySpec{Namespaces: v1.PolicyNamespaces{Names: []string{tenant}}, AllowAll: true}}
	if err := k8s.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}

	sa := testenv.Manager
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	token, err := sa.Kubeconfig(ctx, k8s, restConfig, kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	testenv.KeepSecret(token)
	// The authorizer learns of the bindings from its informers, a moment after they are created.
	for _, ns := range watchedNamespaces {
		for _, verb := range []string{"get", "list", "watch", "create", "patch", "delete"} {
			waitAllowed(t, sa, verb, "secrets", ns)
		}
	}
	waitAllowed(t, sa, "watch", "users", tenant)
	waitAllowed(t, sa, "update", "leases", operatorNamespace)
	for _, ns := range []string{"", "default", operatorNamespace} {
		for _, verb := range []string{"get", "list", "watch", "create", "patch", "delete"} {
			if review(t, sa, verb, "secrets", ns) {
				t.Errorf("the overlay lets the manager %s Secrets %s: want only in %v", verb, where(ns), watchedNamespaces)
			}
		}
	}

	dbPath := filepath.Join(dir, "panel.db")
	store, err := panel.Open(ctx, panel.Options{DSN: "sqlite://" + dbPath})
	if err != nil {
		t.Fatalf("cannot prepare the panel database: %v", err)
	}
	_ = store.Close()
	bin, err := testenv.BuildManager(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The Deployment's webhook flags, with a certificate and port of the test's own: the rendered
	// ValidatingWebhookConfiguration, pointed at them, makes the API server call the binary.
	webhookArgs, hostPort, ca := localWebhookServer(t, dir)
	testenv.KeepSecret(testPassword)
	testenv.StartManager(t, bin, "namespaced", false, append(append(args, webhookArgs...), "--kubeconfig="+kubeconfig,
		"--panel-dsn=sqlite://"+dbPath, "--leader-election-namespace="+operatorNamespace), nil)
	installWebhooks(t, webhooks, hostPort, ca)

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "jane-password"},
		StringData: map[string]string{"password": testPassword}}
	if err := k8s.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	user := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "jane"}, Spec: v1.UserSpec{
		Email: "jane@team-a.example", PasswordSecretRef: v1.SecretKeyReference{Name: secret.Name},
		FirstName: "Jane", LastName: "Doe", Language: "en",
		TwoFactor: v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP},
	}}
	if err := k8s.Create(ctx, user); err != nil {
		t.Fatal(err)
	}
	got := waitUserReady(t, user)
	// The deployed webhook refuses a second User with the email at create.
	second := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "jane-again"}, Spec: user.Spec}
	if err := k8s.Create(ctx, second); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "DuplicateEmail") {
		t.Errorf("a second User with jane's email was not refused DuplicateEmail by the webhook: %v", err)
	}
	if got.Status.TOTPSecretName == "" {
		t.Fatal("the User is Ready with TOTP but names no TOTP Secret")
	}
	totp := client.ObjectKey{Namespace: tenant, Name: got.Status.TOTPSecretName}
	if err := k8s.Get(ctx, totp, &corev1.Secret{}); err != nil {
		t.Fatalf("the manager did not create the TOTP Secret %s: %v", totp, err)
	}

	// Turning two-factor off makes the manager delete the TOTP Secret it issued.
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.TwoFactor = v1.TwoFactor{}
	if err := k8s.Patch(ctx, got, patch); err != nil {
		t.Fatal(err)
	}
	waitUserReady(t, got)
	if err := k8s.Get(ctx, totp, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("the TOTP Secret %s is still there after two-factor was turned off (%v)", totp, err)
	}
}

// deploymentArgs are the manager's arguments in the rendered Deployment, less the listen
// addresses a test process gets its own of (testenv.StartManager).
func deploymentArgs(t *testing.T, o *unstructured.Unstructured) []string {
	t.Helper()
	containers, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if err != nil || len(containers) != 1 {
		t.Fatalf("the Deployment has %d containers (%v), want one", len(containers), err)
	}
	args, _, err := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(args, "--enable-webhooks") {
		t.Fatalf("the Deployment's manager does not serve its webhooks: args %v", args)
	}
	return slices.DeleteFunc(args, func(a string) bool {
		return strings.HasPrefix(a, "--metrics-bind-address") || strings.HasPrefix(a, "--health-probe-bind-address") ||
			strings.HasPrefix(a, "--webhook-port") || strings.HasPrefix(a, "--webhook-cert-path")
	})
}

// localWebhookServer makes a serving certificate in dir and picks a loopback port for a manager's
// webhook server: the flags to give it, its address and the certificate's CA.
func localWebhookServer(t *testing.T, dir string) (args []string, hostPort string, ca []byte) {
	t.Helper()
	certDir := filepath.Join(dir, "webhook-certs")
	ca, err := testenv.ServingCert(certDir)
	if err != nil {
		t.Fatal(err)
	}
	port, err := testdb.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", port), "--webhook-cert-path=" + certDir},
		fmt.Sprintf("127.0.0.1:%d", port), ca
}

// installWebhooks creates the rendered ValidatingWebhookConfiguration pointed at a manager's
// webhook server at hostPort, and removes it when the test ends (with failurePolicy Fail, a
// configuration left behind without its manager would refuse every later User).
func installWebhooks(t *testing.T, rendered *unstructured.Unstructured, hostPort string, ca []byte) {
	t.Helper()
	if rendered == nil {
		t.Fatal("the overlay renders no ValidatingWebhookConfiguration")
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(rendered.Object, vwc); err != nil {
		t.Fatal(err)
	}
	testenv.PointWebhooksAt(vwc, hostPort, ca)
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, time.Minute, true,
		func(ctx context.Context) (bool, error) { return testenv.ServesTLS(ctx, hostPort, ca) == nil, nil })
	if err != nil {
		t.Fatalf("the manager's webhook server never answered at %s: %v", hostPort, err)
	}
	if err := k8s.Create(context.Background(), vwc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k8s.Delete(context.Background(), vwc); err != nil {
			t.Errorf("cannot remove the webhook configuration: %v", err)
		}
	})
}

// review asks the API server whether sa may use verb on resource in ns ("" across the cluster).
func review(t *testing.T, sa testenv.ServiceAccount, verb, resource, ns string) bool {
	t.Helper()
	group := ""
	switch resource {
	case "users":
		group = v1.GroupVersion.Group
	case "leases":
		group = "coordination.k8s.io"
	}
	r := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: sa.UserName(), Groups: sa.Groups(),
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: group, Resource: resource},
	}}
	if err := k8s.Create(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

func waitAllowed(t *testing.T, sa testenv.ServiceAccount, verb, resource, ns string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !review(t, sa, verb, resource, ns) {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s the overlay still does not let the manager %s %s %s", verb, resource, where(ns))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitUserReady waits until the User is Ready at its current generation and returns it.
func waitUserReady(t *testing.T, u *v1.User) *v1.User {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var got v1.User
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(u), &got); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
		if c != nil && c.Status == metav1.ConditionTrue && got.Status.ObservedGeneration == got.Generation {
			return &got
		}
		if time.Now().After(deadline) {
			t.Fatalf("User %s/%s is not Ready after 60s: %+v", u.Namespace, u.Name, got.Status.Conditions)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
