// Package testenv starts the real control plane the tests run against: a kube-apiserver and etcd
// built from source by hack/build-control-plane.sh, with the project's CRDs installed.
package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

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

// ServiceAccount names a ServiceAccount: the identity a deployed manager runs as.
type ServiceAccount struct {
	Namespace, Name string
}

// Manager is the manager's ServiceAccount as config/default deploys it: controller-manager with
// the puq-user-operator- prefix, in namespace puq-user-operator-system.
var Manager = ServiceAccount{Namespace: "puq-user-operator-system", Name: "puq-user-operator-controller-manager"}

// UserName is the name the API server authenticates the ServiceAccount as.
func (sa ServiceAccount) UserName() string {
	return "system:serviceaccount:" + sa.Namespace + ":" + sa.Name
}

// Groups are the groups the API server puts the ServiceAccount in.
func (sa ServiceAccount) Groups() []string {
	return []string{"system:serviceaccounts", "system:serviceaccounts:" + sa.Namespace, "system:authenticated"}
}

// Subject is the ServiceAccount as the subject of a binding.
func (sa ServiceAccount) Subject() rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: sa.Namespace, Name: sa.Name}
}

// Impersonate returns a copy of cfg whose requests the API server authorizes as the
// ServiceAccount; cfg's own user must be allowed to impersonate (system:masters is).
func (sa ServiceAccount) Impersonate(cfg *rest.Config) *rest.Config {
	as := rest.CopyConfig(cfg)
	as.Impersonate = rest.ImpersonationConfig{UserName: sa.UserName(), Groups: sa.Groups()}
	return as
}

// Kubeconfig creates the ServiceAccount (and its namespace) when missing, asks the API server at
// cfg for a token of it (TokenRequest, valid for an hour) and writes a kubeconfig holding that
// token to path, readable by its owner only. It returns the token, a secret a test may want to
// keep out of what it prints. A process given the kubeconfig authenticates as the ServiceAccount
// itself, as a deployed manager does, and holds no other credential.
func (sa ServiceAccount) Kubeconfig(ctx context.Context, c client.Client, cfg *rest.Config, path string) (string, error) {
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sa.Namespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: sa.Name}},
	} {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("cannot create %T %s: %w", obj, obj.GetName(), err)
		}
	}
	account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: sa.Name}}
	hour := int64(3600)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &hour}}
	if err := c.SubResource("token").Create(ctx, account, req); err != nil {
		return "", fmt.Errorf("cannot request a token for %s: %w", sa.UserName(), err)
	}
	if req.Status.Token == "" {
		return "", fmt.Errorf("the API server returned an empty token for %s", sa.UserName())
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[sa.Name] = &clientcmdapi.AuthInfo{Token: req.Status.Token}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: sa.Name}
	kc.CurrentContext = "envtest"
	raw, err := clientcmd.Write(*kc)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return "", err
	}
	return req.Status.Token, nil
}

// ManagerRole is the manager's ClusterRole as config/rbac/role.yaml holds it on disk.
func ManagerRole() (*rbacv1.ClusterRole, error) {
	role := &rbacv1.ClusterRole{}
	if err := readRBAC("role.yaml", "ClusterRole", role); err != nil {
		return nil, err
	}
	return role, nil
}

// LeaderElectionRole is the manager's leader election Role as
// config/rbac/leader_election_role.yaml holds it on disk.
func LeaderElectionRole() (*rbacv1.Role, error) {
	role := &rbacv1.Role{}
	if err := readRBAC("leader_election_role.yaml", "Role", role); err != nil {
		return nil, err
	}
	return role, nil
}

func readRBAC(file, kind string, into interface {
	k8sruntime.Object
	metav1.Object
}) error {
	raw, err := os.ReadFile(filepath.Join(RepoRoot(), "config", "rbac", file))
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(raw, into); err != nil {
		return fmt.Errorf("cannot decode config/rbac/%s: %w", file, err)
	}
	if got := into.GetObjectKind().GroupVersionKind().Kind; got != kind {
		return fmt.Errorf("config/rbac/%s holds a %s, want a %s", file, got, kind)
	}
	return nil
}

// BindManagerRole creates the ClusterRole of config/rbac/role.yaml, as read from disk, under
// name, and grants it to sa: across the cluster through a ClusterRoleBinding, or, when namespaces
// are given, through a RoleBinding named name in each of them only (a manager started with
// --namespace). A RoleBinding grants nothing on cluster-scoped resources (namespaces,
// PanelAccessPolicies), which a manager reads whatever namespaces it watches; so with namespaces,
// the rules of role.yaml on cluster-scoped resources go into a ClusterRole name-cluster bound
// across the cluster, and nothing namespaced is granted outside the namespaces. It returns once
// the API server's authorizer grants every rule, so that a manager started next is never refused
// for a binding still on its way. A verb missing from role.yaml then fails the test that needs
// it, as it would fail the deployed manager.
func BindManagerRole(ctx context.Context, c client.Client, name string, sa ServiceAccount, namespaces ...string) error {
	role, err := ManagerRole()
	if err != nil {
		return err
	}
	if len(role.Rules) == 0 {
		return errors.New("config/rbac/role.yaml has no rules")
	}
	rules, clusterRules := role.Rules, []rbacv1.PolicyRule(nil)
	role.ObjectMeta = metav1.ObjectMeta{Name: name}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}
	objs := []client.Object{role}
	if len(namespaces) == 0 {
		objs = append(objs, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, RoleRef: ref,
			Subjects: []rbacv1.Subject{sa.Subject()}})
		namespaces = []string{""}
	} else {
		for _, ns := range namespaces {
			objs = append(objs, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				RoleRef: ref, Subjects: []rbacv1.Subject{sa.Subject()}})
		}
		var err error
		if rules, clusterRules, err = splitClusterScoped(c, rules); err != nil {
			return err
		}
		if len(clusterRules) > 0 {
			clusterName := name + "-cluster"
			objs = append(objs, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: clusterName}, Rules: clusterRules},
				&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: clusterName},
					RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterName},
					Subjects: []rbacv1.Subject{sa.Subject()}})
		}
	}
	if err := createAll(ctx, c, objs); err != nil {
		return err
	}
	if err := waitGranted(ctx, c, sa, clusterRules, []string{""}); err != nil {
		return err
	}
	return waitGranted(ctx, c, sa, rules, namespaces)
}

// splitClusterScoped splits rules into those on namespaced resources and those on cluster-scoped
// ones, as the API server's REST mapping says, one resource (and its subresources) at a time.
func splitClusterScoped(c client.Client, rules []rbacv1.PolicyRule) (namespaced, clusterScoped []rbacv1.PolicyRule, err error) {
	for _, r := range rules {
		for _, group := range r.APIGroups {
			for _, res := range r.Resources {
				resource, _, _ := strings.Cut(res, "/")
				gvk, err := c.RESTMapper().KindFor(schema.GroupVersionResource{Group: group, Resource: resource})
				if err != nil {
					return nil, nil, fmt.Errorf("cannot map %s/%s of role.yaml to a kind: %w", group, resource, err)
				}
				mapping, err := c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
				if err != nil {
					return nil, nil, fmt.Errorf("cannot map %s of role.yaml: %w", gvk, err)
				}
				one := rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{res}, Verbs: r.Verbs}
				if mapping.Scope.Name() == meta.RESTScopeNameRoot {
					clusterScoped = append(clusterScoped, one)
				} else {
					namespaced = append(namespaced, one)
				}
			}
		}
	}
	return namespaced, clusterScoped, nil
}

// BindLeaderElectionRole creates the Role of config/rbac/leader_election_role.yaml, as read from
// disk, under name in namespace, the one the manager's Lease lives in, and binds it to sa there.
// It returns once the API server's authorizer grants every rule.
func BindLeaderElectionRole(ctx context.Context, c client.Client, namespace, name string, sa ServiceAccount) error {
	role, err := LeaderElectionRole()
	if err != nil {
		return err
	}
	if len(role.Rules) == 0 {
		return errors.New("config/rbac/leader_election_role.yaml has no rules")
	}
	rules := role.Rules
	role.ObjectMeta = metav1.ObjectMeta{Namespace: namespace, Name: name}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{sa.Subject()}}
	if err := createAll(ctx, c, []client.Object{role, binding}); err != nil {
		return err
	}
	return waitGranted(ctx, c, sa, rules, []string{namespace})
}

// WaitManagerGranted returns once the API server's authorizer grants sa every rule of
// config/rbac/role.yaml in each of the namespaces ("" or none: across the cluster), as after a
// restart of kube-apiserver, whose authorizer reads the bindings again.
func WaitManagerGranted(ctx context.Context, c client.Client, sa ServiceAccount, namespaces ...string) error {
	role, err := ManagerRole()
	if err != nil {
		return err
	}
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	return waitGranted(ctx, c, sa, role.Rules, namespaces)
}

func createAll(ctx context.Context, c client.Client, objs []client.Object) error {
	for _, obj := range objs {
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("cannot create %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

// waitGranted asks the API server (SubjectAccessReview) whether sa may use every verb on every
// resource of rules in each namespace ("" is cluster-wide), until it may: the authorizer learns
// of new bindings from its informers, a moment after they are created.
func waitGranted(ctx context.Context, c client.Client, sa ServiceAccount, rules []rbacv1.PolicyRule, namespaces []string) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, ns := range namespaces {
		for _, r := range rules {
			for _, group := range r.APIGroups {
				for _, res := range r.Resources {
					resource, sub, _ := strings.Cut(res, "/")
					for _, verb := range r.Verbs {
						attrs := &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: group,
							Resource: resource, Subresource: sub}
						for {
							review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
								ResourceAttributes: attrs, User: sa.UserName(), Groups: sa.Groups()}}
							if err := c.Create(ctx, review); err != nil {
								return fmt.Errorf("cannot review the access of %s: %w", sa.UserName(), err)
							}
							if review.Status.Allowed {
								break
							}
							if time.Now().After(deadline) {
								return fmt.Errorf("%s still may not %s %+v after 30s: %s", sa.UserName(), verb, *attrs,
									review.Status.Reason)
							}
							time.Sleep(50 * time.Millisecond)
						}
					}
				}
			}
		}
	}
	return nil
}
