package deploy_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// The Helm chart `make helm-chart` generates from config/default, installed as release
// puq-user-operator into the namespace config/default deploys into, so that its objects are named
// as config/default names them and the two renderings can be compared object by object.
const (
	chartDir    = "dist/chart"
	releaseName = "puq-user-operator"
)

// chartNonDefault sets every knob the chart has away from its default; watchNamespaces as
// config/namespaced lists them.
func chartNonDefault() map[string]any {
	v := map[string]any{
		"panelDatabase":   map[string]any{"secretName": "panel-db", "dsnKey": "url", "passwordKey": "pw"},
		"watchNamespaces": watchedNamespaces,
		"tenancy": map[string]any{"ownNamespacePolicy": false, "allowAllNamespaces": true,
			"policiesAsHooks": false},
		"manager": map[string]any{"replicas": 3, "args": []string{"--default-language=en"},
			"resources": map[string]any{"requests": map[string]any{"cpu": "200m", "memory": "128Mi"},
				"limits": map[string]any{"cpu": "2", "memory": "512Mi"}},
			"nodeSelector":     map[string]any{"kubernetes.io/os": "linux"},
			"env":              []map[string]any{{"name": "TZ", "value": "UTC"}},
			"image":            map[string]any{"repository": "registry.example.com/puq-user-operator", "tag": "v0.1.0"},
			"imagePullSecrets": []map[string]any{{"name": "registry"}}},
		"prometheus":    map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus"}},
		"certManager":   map[string]any{"enabled": true},
		"networkPolicy": map[string]any{"enabled": true},
		// The controllers alone refuse what the webhook would (after the apply, as conditions).
		"webhook": map[string]any{"enabled": false},
	}
	return v
}

// tool is the path of a binary the Makefile installs under bin/; a missing one fails the test
// with the command that installs it.
func tool(t *testing.T, name, target string) string {
	t.Helper()
	path := filepath.Join(testenv.RepoRoot(), "bin", name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing (%v): run `make %s` (`make test` does), which installs it through the Go module proxy",
			path, err, target)
	}
	return path
}

// runHelm runs helm in the repository root with values written to a file.
func runHelm(t *testing.T, values map[string]any, args ...string) (string, error) {
	t.Helper()
	helm := tool(t, "helm", "helm")
	if values != nil {
		b, err := yaml.Marshal(values)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--values", f)
	}
	var out bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(),
		"HELM_DATA_HOME="+t.TempDir())
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// renderChart is `helm template` of the chart with values (nil for the defaults).
func renderChart(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	out, err := runHelm(t, values, "template", releaseName, chartDir, "--namespace", operatorNamespace)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("helm template printed YAML that does not parse: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

func TestHelmChartLints(t *testing.T) {
	for name, values := range map[string]map[string]any{"defaults": nil, "non-default values": chartNonDefault()} {
		if out, err := runHelm(t, values, "lint", "--strict", chartDir); err != nil {
			t.Errorf("helm lint --strict with %s: %v\n%s", name, err, out)
		}
	}
}

// installChartCRDs creates the CRDs of cert-manager and prometheus-operator that
// `make chart-test-deps` takes from their Go modules, and waits until the API server serves them.
func installChartCRDs(t *testing.T, k8s client.Client) {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(), "bin", "chart-crds")
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 {
		t.Fatalf("no CRDs in %s: run `make chart-test-deps` (`make test` does); it takes cert-manager's and "+
			"prometheus-operator's CRDs from their Go modules", dir)
	}
	ctx := context.Background()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(b, crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(crd)
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{Object: u}
		obj.SetAPIVersion("apiextensions.k8s.io/v1")
		obj.SetKind("CustomResourceDefinition")
		unstructured.RemoveNestedField(obj.Object, "status")
		if err := k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("deploy-test"),
			client.ForceOwnership); err != nil {
			t.Fatalf("create CRD %s: %v", crd.Name, err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !established(t, k8s, crd.Name) {
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s is not Established after 30s", crd.Name)
			}
			time.Sleep(50 * time.Millisecond) // polls a condition; not a wait for things to settle
		}
	}
}

func established(t *testing.T, k8s client.Client, name string) bool {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, crd); err != nil {
		t.Fatal(err)
	}
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

func TestHelmChartRendersAndTheAPIServerAcceptsIt(t *testing.T) {
	installChartCRDs(t, k8s)
	type testCase struct {
		name      string
		values    map[string]any
		minKinds  map[string]int
		namespace string // the --namespace the manager gets; "" for none
		policies  []string
		secret    string
		tlsSecret string // the webhook's serving certificate Secret, when provided
	}
	cases := []testCase{
		{"defaults", nil, map[string]int{"CustomResourceDefinition": 3, "Deployment": 1, "ServiceAccount": 1,
			"ClusterRole": 10, "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1, "Service": 2, "PanelAccessPolicy": 1,
			"Issuer": 1, "Certificate": 1, "ValidatingWebhookConfiguration": 1},
			"", []string{"puq-user-operator-own-namespace"}, "puq-user-operator-panel-db", ""},
		{"non-default values", chartNonDefault(), map[string]int{"CustomResourceDefinition": 3, "Deployment": 1,
			"ServiceAccount": 1, "ClusterRole": 10, "ClusterRoleBinding": 2, "Role": 3, "RoleBinding": 3, "Service": 1,
			"PanelAccessPolicy": 1, "ServiceMonitor": 1, "NetworkPolicy": 1, "Issuer": 1},
			strings.Join(watchedNamespaces, ","), []string{"puq-user-operator-all-namespaces"}, "panel-db", ""},
		// Without cert-manager: the serving certificate from a Secret the admin provides.
		{"webhook with a provided certificate", map[string]any{
			"certManager": map[string]any{"enabled": false},
			"webhook": map[string]any{"enabled": true, "certificate": map[string]any{"secretName": "webhook-tls",
				"caBundle": base64.StdEncoding.EncodeToString([]byte("the admin's CA"))}}},
			map[string]int{"ValidatingWebhookConfiguration": 1, "Deployment": 1}, "",
			[]string{"puq-user-operator-own-namespace"}, "puq-user-operator-panel-db", "webhook-tls"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := renderChart(t, tc.values)
			ctx := context.Background()
			ensureNamespace(t, operatorNamespace)
			for _, ns := range watchedNamespaces {
				ensureNamespace(t, ns)
			}
			kinds := map[string]int{}
			var policies []string
			for _, o := range objs {
				kinds[o.GetKind()]++
				if o.GetKind() == "PanelAccessPolicy" {
					policies = append(policies, o.GetName())
				}
				err := k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.DryRunAll,
					client.FieldOwner("deploy-test"), client.ForceOwnership)
				if err != nil {
					t.Errorf("server-side dry run of %s %s: %v", o.GetKind(), o.GetName(), err)
				}
			}
			for kind, want := range tc.minKinds {
				if kinds[kind] < want {
					t.Errorf("the chart renders %d %s, want at least %d", kinds[kind], kind, want)
				}
			}
			if !slices.Equal(policies, tc.policies) {
				t.Errorf("the chart renders the PanelAccessPolicies %v, want %v", policies, tc.policies)
			}
			for _, o := range objs {
				if o.GetKind() == "Deployment" {
					checkDeployment(t, o, tc.namespace)
					if got := dsnSecret(t, o); got != tc.secret {
						t.Errorf("the manager reads the panel DSN from Secret %q, want %q", got, tc.secret)
					}
					if tc.tlsSecret != "" && !mountsSecret(t, o, tc.tlsSecret) {
						t.Errorf("the manager does not mount the webhook's certificate Secret %s", tc.tlsSecret)
					}
				}
				if o.GetKind() == "ValidatingWebhookConfiguration" && tc.tlsSecret != "" {
					hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
					for _, h := range hooks {
						if ca, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "caBundle"); ca == "" {
							t.Errorf("webhook %v has no caBundle: the API server cannot trust the provided certificate", h.(map[string]any)["name"])
						}
					}
				}
			}
		})
	}
}

// dsnSecret is the Secret the manager of a rendered Deployment reads the panel DSN from.
func dsnSecret(t *testing.T, o *unstructured.Unstructured) string {
	t.Helper()
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
		t.Fatal(err)
	}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "PUQ_PANEL_DSN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return e.ValueFrom.SecretKeyRef.Name
		}
	}
	return ""
}

// mountsSecret says whether the pods of a rendered Deployment mount a volume of Secret name.
func mountsSecret(t *testing.T, o *unstructured.Unstructured, name string) bool {
	t.Helper()
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Secret != nil && v.Secret.SecretName == name
	})
}

// A misspelt value is refused at install (values.schema.json), where Helm would otherwise ignore
// it and install the defaults; the same values spelt right pass.
func TestHelmValuesTypoFailsTheInstall(t *testing.T) {
	for _, tc := range []struct{ typo, right, key string }{
		{"manger.replicas=3", "manager.replicas=3", "manger"},
		{"panelDatabase.secretNmae=db", "panelDatabase.secretName=db", "secretNmae"},
		{"tenancy.allowAll=true", "tenancy.allowAllNamespaces=true", "allowAll"},
		{"watchNamespace={team-a}", "watchNamespaces={team-a}", "watchNamespace"},
	} {
		out, err := runHelm(t, nil, "template", releaseName, chartDir, "--set", tc.typo)
		if err == nil {
			t.Errorf("helm template --set %s succeeded, want the values schema to refuse it", tc.typo)
		} else if !strings.Contains(out, "additional properties '"+tc.key+"' not allowed") {
			t.Errorf("helm template --set %s failed without naming %q:\n%s", tc.typo, tc.key, out)
		}
		if out, err := runHelm(t, nil, "template", releaseName, chartDir, "--set", tc.right); err != nil {
			t.Errorf("helm template --set %s: %v\n%s", tc.right, err, out)
		}
	}
}

// dist/chart is what `make helm-chart` generates from config/ and hack/helm: an edit to either
// that was not regenerated, or a hand edit of dist/chart, fails here.
func TestHelmChartIsGeneratedFromConfig(t *testing.T) {
	kubebuilder := tool(t, "kubebuilder", "kubebuilder")
	out := filepath.Join(t.TempDir(), "chart")
	cmd := exec.Command("go", "run", "./hack/helmchart", "-kubebuilder", kubebuilder, "-out", out)
	cmd.Dir = testenv.RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./hack/helmchart: %v\n%s", err, b)
	}
	want, got := map[string][]byte{}, map[string][]byte{}
	readChart(t, out, want)
	readChart(t, filepath.Join(testenv.RepoRoot(), chartDir), got)
	for path, b := range want {
		if g, ok := got[path]; !ok {
			t.Errorf("%s/%s is missing: run `make helm-chart` and commit dist/chart", chartDir, path)
		} else if !bytes.Equal(g, b) {
			t.Errorf("%s/%s differs from what config/ and hack/helm generate: run `make helm-chart` and commit "+
				"dist/chart (edit hack/helm, never dist/chart)", chartDir, path)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("%s/%s is not generated: remove it, or add it to hack/helm and run `make helm-chart`", chartDir, path)
		}
	}
}

func readChart(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)], err = os.ReadFile(path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The chart's RBAC is config/'s: with the release named as config/default's namePrefix, every
// Role, ClusterRole and binding of the kustomize rendering is in the chart's under the same name,
// granting the same verbs to the same subjects, and the chart has none beyond them. Defaults
// compare with config/default, watchNamespaces with config/namespaced.
func TestHelmRBACEqualsKustomizeRBAC(t *testing.T) {
	for _, tc := range []struct {
		dir    string
		values map[string]any
	}{
		{defaultDir, nil},
		{namespacedDir, map[string]any{"watchNamespaces": watchedNamespaces}},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			want, got := rbacOf(t, render(t, tc.dir)), rbacOf(t, renderChart(t, tc.values))
			for key, w := range want {
				if g, ok := got[key]; !ok {
					t.Errorf("the chart lacks %s of %s", key, tc.dir)
				} else if !slices.Equal(g, w) {
					t.Errorf("the chart's %s grants\n  %v\n%s's grants\n  %v", key, g, tc.dir, w)
				}
			}
			for key := range got {
				if _, ok := want[key]; !ok {
					t.Errorf("the chart has %s, which %s does not", key, tc.dir)
				}
			}
		})
	}
}

// rbacOf is each RBAC object of a rendering ("Kind namespace/name") with what it says, flattened
// and sorted: a role's group/resource/verb triples, a binding's role and subjects.
func rbacOf(t *testing.T, objs []*unstructured.Unstructured) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, o := range objs {
		key := o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
		var lines []string
		switch o.GetKind() {
		case "ClusterRole", "Role":
			for _, r := range rulesOf(t, o) {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						for _, v := range r.Verbs {
							lines = append(lines, fmt.Sprintf("%s/%s %s %v %v", g, res, v, r.ResourceNames, r.NonResourceURLs))
						}
					}
				}
				for _, u := range r.NonResourceURLs {
					for _, v := range r.Verbs {
						lines = append(lines, "url "+u+" "+v)
					}
				}
			}
		case "ClusterRoleBinding", "RoleBinding":
			var b rbacv1.RoleBinding
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, "roleRef "+b.RoleRef.Kind+"/"+b.RoleRef.Name)
			for _, s := range b.Subjects {
				lines = append(lines, "subject "+s.Kind+" "+s.Namespace+"/"+s.Name)
			}
		default:
			continue
		}
		slices.Sort(lines)
		out[key] = slices.Compact(lines)
	}
	return out
}

// With watchNamespaces, the chart's webhooks are called only for objects in those namespaces:
// an object elsewhere never waits on this release's webhook (failurePolicy Fail), and the
// default (every namespace) has no selector.
func TestHelmWebhookIsCalledOnlyForTheWatchedNamespaces(t *testing.T) {
	selectors := func(values map[string]any) [][]any {
		var out [][]any
		for _, o := range renderChart(t, values) {
			if o.GetKind() != "ValidatingWebhookConfiguration" {
				continue
			}
			webhooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
			for _, w := range webhooks {
				exprs, _, _ := unstructured.NestedSlice(w.(map[string]any), "namespaceSelector", "matchExpressions")
				out = append(out, exprs)
			}
		}
		return out
	}
	watched := selectors(map[string]any{"watchNamespaces": watchedNamespaces})
	if len(watched) != 2 {
		t.Fatalf("the chart renders %d webhooks, want 2", len(watched))
	}
	for _, exprs := range watched {
		want := []any{map[string]any{"key": "kubernetes.io/metadata.name", "operator": "In",
			"values": []any{watchedNamespaces[0], watchedNamespaces[1]}}}
		if !reflect.DeepEqual(exprs, want) {
			t.Errorf("with watchNamespaces a webhook's namespaceSelector is %v, want %v", exprs, want)
		}
	}
	for _, exprs := range selectors(nil) {
		if len(exprs) != 0 {
			t.Errorf("with every namespace watched a webhook has namespaceSelector %v, want none", exprs)
		}
	}
}
