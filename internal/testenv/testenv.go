// Package testenv starts the real control plane the tests run against: a kube-apiserver and etcd
// built from source by hack/build-control-plane.sh, with the project's CRDs installed.
package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	panelv1alpha1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// RepoRoot is the directory holding the project's go.mod.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Scheme has the built-in kinds, the CRD kind and this project's kinds.
func Scheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{
		clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, panelv1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// AssetsDir is where kube-apiserver, etcd and kubectl live: $KUBEBUILDER_ASSETS, or
// bin/k8s/<version> with the version from hack/control-plane.env. It fails, saying how to get
// them, when a binary is missing.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		version, err := controlPlaneVersion()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(RepoRoot(), "bin", "k8s", version)
	}
	for _, name := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make control-plane` (builds kube-apiserver, "+
				"etcd and kubectl from source through the Go module proxy, about 6 minutes the first time) "+
				"or set KUBEBUILDER_ASSETS to a directory holding them", name, dir)
		}
	}
	return dir, nil
}

func controlPlaneVersion() (string, error) {
	f, err := os.Open(filepath.Join(RepoRoot(), "hack", "control-plane.env"))
	if err != nil {
		return "", fmt.Errorf("cannot read the control plane version: %w", err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "KUBERNETES_VERSION="); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("hack/control-plane.env has no KUBERNETES_VERSION")
}

// New returns an environment with the project's CRDs, on the binaries from AssetsDir.
//
// Its kube-apiserver enforces OwnerReferencesPermissionEnforcement on top of the admission
// plugins enabled by default, as many production clusters do (OpenShift among them): an owner
// reference with blockOwnerDeletion needs the update verb on the owner's finalizers subresource,
// so a role.yaml without it fails the test that creates such a reference.
func New() (*envtest.Environment, error) {
	dir, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: dir,
		Scheme:                Scheme(),
	}
	// Append keeps the flags envtest sets itself (it disables the ServiceAccount plugin).
	env.ControlPlane.GetAPIServer().Configure().Append("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
	return env, nil
}

// Main is a TestMain for packages that need only the control plane: it starts kube-apiserver and
// etcd with the CRDs, sets *c to a client of them, runs the tests, stops them and exits.
func Main(m *testing.M, c *client.Client) {
	env, err := New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start the test control plane:", err)
		os.Exit(1)
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start kube-apiserver and etcd:", err)
		os.Exit(1)
	}
	code := 1
	if *c, err = client.New(cfg, client.Options{Scheme: env.Scheme}); err == nil {
		code = m.Run()
	} else {
		fmt.Fprintln(os.Stderr, "cannot create a client:", err)
	}
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot stop the test control plane:", err)
	}
	os.Exit(code)
}

// AdminKubeconfig provisions a system:masters user on a started environment, writes its
// kubeconfig to dir/kubeconfig and returns the path and a REST config for it.
func AdminKubeconfig(env *envtest.Environment, dir string) (string, *rest.Config, error) {
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", nil, fmt.Errorf("cannot provision the admin user: %w", err)
	}
	raw, err := admin.KubeConfig()
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return "", nil, err
	}
	return path, admin.Config(), nil
}
