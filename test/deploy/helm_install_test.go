package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// `helm install` on a cluster that has never seen the CRDs installs them and then the shipped
// PanelAccessPolicy (a hook, since Helm cannot map an object of a CRD it has not installed yet);
// `helm upgrade` keeps the policy and adds the watched namespaces' Roles; `helm uninstall` removes
// the manager and keeps the CRDs. On a control plane of its own, started without CRDs.
func TestHelmInstallsUpgradesAndUninstallsOnAFreshCluster(t *testing.T) {
	dir, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{BinaryAssetsDirectory: dir, Scheme: testenv.Scheme()}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("cannot start a second kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("cannot stop the second control plane: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := env.AddUser(envtest.User{Name: "helm", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kcFile := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcFile, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	helm := func(values map[string]any, args ...string) {
		t.Helper()
		args = append(args, "--kubeconfig", kcFile, "--namespace", operatorNamespace)
		if out, err := runHelm(t, values, args...); err != nil {
			t.Fatalf("helm %v: %v\n%s", args, err, out)
		}
	}
	ctx := context.Background()
	exists := func(obj client.Object, namespace, name string) bool {
		t.Helper()
		err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	const policy = "puq-user-operator-own-namespace"
	// The chart's defaults use cert-manager for the webhook's certificate: its CRDs come first, as
	// on any cluster that runs cert-manager.
	installChartCRDs(t, c)

	helm(nil, "install", releaseName, chartDir, "--create-namespace")
	if !exists(&v1.PanelAccessPolicy{}, "", policy) {
		t.Errorf("helm install did not create PanelAccessPolicy %s", policy)
	}
	if !exists(&appsv1.Deployment{}, operatorNamespace, "puq-user-operator-controller-manager") {
		t.Error("helm install did not create the manager's Deployment")
	}

	for _, ns := range watchedNamespaces {
		ensureNamespaceWith(t, c, ns)
	}
	helm(map[string]any{"watchNamespaces": watchedNamespaces}, "upgrade", releaseName, chartDir)
	if !exists(&v1.PanelAccessPolicy{}, "", policy) {
		t.Errorf("helm upgrade lost PanelAccessPolicy %s", policy)
	}
	for _, ns := range watchedNamespaces {
		if !exists(&rbacv1.Role{}, ns, "puq-user-operator-manager-secrets") {
			t.Errorf("helm upgrade with watchNamespaces did not create the Secrets Role in %s", ns)
		}
	}

	helm(nil, "uninstall", releaseName, "--wait")
	if exists(&appsv1.Deployment{}, operatorNamespace, "puq-user-operator-controller-manager") {
		t.Error("helm uninstall left the manager's Deployment")
	}
	if !exists(&apiextensionsv1.CustomResourceDefinition{}, "", "users.panel.puqcloud.com") {
		t.Error("helm uninstall deleted the Users CRD, and with it every User: crd.keep is the default")
	}
}
