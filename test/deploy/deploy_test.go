// Package deploy_test checks the deployment manifests: config/default renders with kustomize and
// the real API server accepts every object (server-side dry run), the Deployment is hardened, and
// the manager's RBAC stays within an explicit allow-list.
package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

var k8s client.Client

func TestMain(m *testing.M) { testenv.Main(m, &k8s) }

func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(testenv.RepoRoot(), dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out := make([]*unstructured.Unstructured, 0, len(res.Resources()))
	for _, r := range res.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		j, err := yaml.YAMLToJSON(y)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

func TestDefaultKustomizationRendersAndTheAPIServerAcceptsIt(t *testing.T) {
	objs := render(t, "config/default")
	ctx := context.Background()
	kinds := map[string]int{}
	// The namespace is created for real: the dry run of namespaced objects needs it to exist.
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			if err := k8s.Create(ctx, o.DeepCopy()); err != nil {
				t.Fatalf("create namespace %s: %v", o.GetName(), err)
			}
		}
	}
	for _, o := range objs {
		kinds[o.GetKind()]++
		err := k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.DryRunAll,
			client.FieldOwner("deploy-test"), client.ForceOwnership)
		if err != nil {
			t.Errorf("server-side dry run of %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	for kind, want := range map[string]int{"Namespace": 1, "CustomResourceDefinition": 3, "Deployment": 1, "ServiceAccount": 1,
		"ClusterRole": 10, "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1, "Service": 1} {
		if kinds[kind] < want {
			t.Errorf("config/default renders %d %s, want at least %d", kinds[kind], kind, want)
		}
	}
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			checkDeployment(t, o)
		}
	}
}

func checkDeployment(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("the pod does not require a non-root user")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
		*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container security context is not hardened: %+v", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("resources are not set")
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--leader-elect", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if c.LivenessProbe == nil || c.ReadinessProbe == nil {
		t.Error("probes are missing")
	}
	var dsnFromSecret bool
	for _, e := range c.Env {
		if e.Name == "PUQ_PANEL_DSN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			dsnFromSecret = true
		}
		if e.Value != "" && strings.Contains(strings.ToLower(e.Name), "password") {
			t.Errorf("env %s holds a literal value", e.Name)
		}
	}
	if !dsnFromSecret {
		t.Error("the panel DSN does not come from a Secret")
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Error("want at least two replicas behind leader election")
	}
}

func TestPrometheusServiceMonitorRenders(t *testing.T) {
	objs := render(t, "config/prometheus")
	if len(objs) != 1 || objs[0].GetKind() != "ServiceMonitor" {
		t.Fatalf("config/prometheus renders %d objects, want one ServiceMonitor", len(objs))
	}
	if scheme, _, _ := unstructured.NestedSlice(objs[0].Object, "spec", "endpoints"); len(scheme) == 0 {
		t.Error("the ServiceMonitor has no endpoints")
	}
}

// allowed is everything the manager may do; a rule beyond it fails the test.
var allowed = map[string][]string{
	"/secrets":                                        {"create", "delete", "get", "list", "watch"},
	"events.k8s.io/events":                            {"create", "patch"},
	"panel.puqcloud.com/users":                        {"get", "list", "update", "watch"},
	"panel.puqcloud.com/users/status":                 {"patch"},
	"panel.puqcloud.com/users/finalizers":             {"update"},
	"panel.puqcloud.com/clientmemberships":            {"delete", "get", "list", "update", "watch"},
	"panel.puqcloud.com/clientmemberships/status":     {"patch"},
	"panel.puqcloud.com/clientmemberships/finalizers": {"update"},
	// PanelAccessPolicies and namespaces are only read: the policy controller writes nothing but
	// the policies' status.
	"/namespaces":                                   {"get", "list", "watch"},
	"panel.puqcloud.com/panelaccesspolicies":        {"get", "list", "watch"},
	"panel.puqcloud.com/panelaccesspolicies/status": {"patch"},
}

func TestManagerRoleStaysWithinTheAllowList(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(raw, &role); err != nil {
		t.Fatal(err)
	}
	granted := map[string][]string{}
	for _, r := range role.Rules {
		if len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
			t.Errorf("unexpected rule form: %+v", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				key := g + "/" + res
				for _, v := range r.Verbs {
					if g == "*" || res == "*" || v == "*" {
						t.Errorf("wildcard in rule %+v", r)
					}
					if !slices.Contains(allowed[key], v) {
						t.Errorf("role.yaml grants %s on %s beyond the allow-list", v, key)
					}
					granted[key] = append(granted[key], v)
				}
			}
		}
	}
	// The allow-list is not looser than what the manager needs either: every entry is granted.
	for key, verbs := range allowed {
		for _, v := range verbs {
			if !slices.Contains(granted[key], v) {
				t.Errorf("the allow-list has %s on %s, which role.yaml no longer grants: tighten the list", v, key)
			}
		}
	}
	if len(role.Rules) == 0 {
		t.Fatal("role.yaml has no rules")
	}
}
