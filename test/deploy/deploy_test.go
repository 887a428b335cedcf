// Package deploy_test checks the deployment manifests: config/default and the config/namespaced
// overlay render with kustomize and the real API server accepts every object (server-side dry
// run), the Deployment is hardened, the shipped PanelAccessPolicy grants the operator's own
// namespace only, the manager's RBAC stays within an explicit allow-list in both renderings, and a
// manager deployed by the overlay works with nothing but what the overlay grants it.
package deploy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

var (
	k8s        client.Client // system:masters
	restConfig *rest.Config  // system:masters
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	env, err := testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start the test control plane:", err)
		return 1
	}
	if restConfig, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start kube-apiserver and etcd:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "cannot stop the test control plane:", err)
		}
	}()
	if k8s, err = client.New(restConfig, client.Options{Scheme: env.Scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create a client:", err)
		return 1
	}
	return m.Run()
}

// The renderings a cluster admin deploys: everything across the cluster, or the overlay for a
// manager that watches only the namespaces listed in config/namespaced/namespaces.yaml.
const (
	defaultDir    = "config/default"
	namespacedDir = "config/namespaced"
	// selfManagedCertsDir is config/default without cert-manager: the webhook's certificate is a
	// Secret the cluster admin creates.
	selfManagedCertsDir = "config/self-managed-certs"
)

// operatorNamespace is where config/default deploys the manager.
var operatorNamespace = testenv.Manager.Namespace

// watchedNamespaces are the namespaces config/namespaced/namespaces.yaml lists as its example.
var watchedNamespaces = []string{"team-a", "team-b"}

func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := testenv.Kustomize(filepath.Join(testenv.RepoRoot(), dir))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestKustomizationsRenderAndTheAPIServerAcceptsThem(t *testing.T) {
	for _, tc := range []struct {
		dir       string
		minKinds  map[string]int
		namespace string // the --namespace the manager gets; "" for none
	}{
		{defaultDir, map[string]int{"Namespace": 1, "CustomResourceDefinition": 3, "Deployment": 1, "ServiceAccount": 1,
			"ClusterRole": 10, "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1, "Service": 2, "PanelAccessPolicy": 1,
			"ValidatingWebhookConfiguration": 1, "Certificate": 1, "Issuer": 1}, ""},
		{namespacedDir, map[string]int{"Namespace": 1, "CustomResourceDefinition": 3, "Deployment": 1, "ServiceAccount": 1,
			"ClusterRole": 10, "ClusterRoleBinding": 2, "Role": 3, "RoleBinding": 3, "Service": 2, "PanelAccessPolicy": 1,
			"ValidatingWebhookConfiguration": 1, "Certificate": 1, "Issuer": 1},
			strings.Join(watchedNamespaces, ",")},
		// Without cert-manager: every object, the webhook configuration included, is dry-run.
		{selfManagedCertsDir, map[string]int{"Namespace": 1, "CustomResourceDefinition": 3, "Deployment": 1,
			"ServiceAccount": 1, "ClusterRole": 10, "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1, "Service": 2,
			"PanelAccessPolicy": 1, "ValidatingWebhookConfiguration": 1}, ""},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			objs := render(t, tc.dir)
			ctx := context.Background()
			// The namespaces are created for real: the dry run of namespaced objects needs them. The
			// overlay's watched namespaces are the tenants' own, which exist before it is applied.
			for _, o := range objs {
				if o.GetKind() == "Namespace" {
					ensureNamespace(t, o.GetName())
				}
			}
			if tc.namespace != "" {
				for _, ns := range watchedNamespaces {
					ensureNamespace(t, ns)
				}
			}
			// cert-manager's objects are dry-run too, against its CRDs (pinned, from its Go module).
			installChartCRDs(t, k8s)
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetKind()]++
				err := k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.DryRunAll,
					client.FieldOwner("deploy-test"), client.ForceOwnership)
				if err != nil {
					t.Errorf("server-side dry run of %s %s: %v", o.GetKind(), o.GetName(), err)
				}
			}
			for kind, want := range tc.minKinds {
				if kinds[kind] < want {
					t.Errorf("%s renders %d %s, want at least %d", tc.dir, kinds[kind], kind, want)
				}
			}
			if tc.dir == selfManagedCertsDir && kinds["Certificate"]+kinds["Issuer"] != 0 {
				t.Errorf("%s renders cert-manager objects: %v", tc.dir, kinds)
			}
			if kinds["ConfigMap"] != 0 {
				t.Errorf("%s renders %d ConfigMaps, want none (namespaces.yaml's list is local to kustomize)", tc.dir,
					kinds["ConfigMap"])
			}
			for _, o := range objs {
				if o.GetKind() == "Deployment" {
					checkDeployment(t, o, tc.namespace)
				}
			}
		})
	}
}

// The webhook's certificate reaches the manager and the API server by names that kustomize's
// prefixes and replacements must keep in step: the Certificate names the webhook Service's DNS
// names, writes the Secret the Deployment mounts at --webhook-cert-path, and is the one
// cert-manager's CA injector copies into the ValidatingWebhookConfiguration; that configuration
// calls the Service, which reaches the manager's webhook port even while the manager is not
// Ready (its readyz includes the panel database).
func TestWebhookCertificateWiring(t *testing.T) {
	for _, dir := range []string{defaultDir, namespacedDir} {
		t.Run(dir, func(t *testing.T) {
			byKind := map[string][]*unstructured.Unstructured{}
			for _, o := range render(t, dir) {
				byKind[o.GetKind()] = append(byKind[o.GetKind()], o)
			}
			one := func(kind, nameSuffix string) *unstructured.Unstructured {
				for _, o := range byKind[kind] {
					if strings.HasSuffix(o.GetName(), nameSuffix) {
						return o
					}
				}
				t.Fatalf("%s renders no %s *%s", dir, kind, nameSuffix)
				return nil
			}
			svc, cert := one("Service", "webhook-service"), one("Certificate", "serving-cert")
			issuer, vwc, deploy := one("Issuer", "selfsigned-issuer"), one("ValidatingWebhookConfiguration", ""), one("Deployment", "")

			dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
			wantDNS := []string{svc.GetName() + "." + svc.GetNamespace() + ".svc",
				svc.GetName() + "." + svc.GetNamespace() + ".svc.cluster.local"}
			if !slices.Equal(dns, wantDNS) {
				t.Errorf("the Certificate's dnsNames are %v, want %v", dns, wantDNS)
			}
			if ref, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name"); ref != issuer.GetName() {
				t.Errorf("the Certificate's issuer is %q, want %q", ref, issuer.GetName())
			}
			if got, want := vwc.GetAnnotations()["cert-manager.io/inject-ca-from"], cert.GetNamespace()+"/"+cert.GetName(); got != want {
				t.Errorf("the webhook configuration injects the CA of %q, want %q", got, want)
			}
			if notReady, _, _ := unstructured.NestedBool(svc.Object, "spec", "publishNotReadyAddresses"); notReady {
				t.Error("the webhook Service sends requests to replicas that are not Ready: a crash-looping or starting " +
					"replica would refuse applies")
			}
			webhooks, _, _ := unstructured.NestedSlice(vwc.Object, "webhooks")
			if len(webhooks) != 2 {
				t.Fatalf("the webhook configuration has %d webhooks, want 2 (User, ClientMembership)", len(webhooks))
			}
			for _, w := range webhooks {
				s, _, _ := unstructured.NestedMap(w.(map[string]any), "clientConfig", "service")
				if s["name"] != svc.GetName() || s["namespace"] != svc.GetNamespace() {
					t.Errorf("a webhook calls Service %v/%v, want %s/%s", s["namespace"], s["name"], svc.GetNamespace(), svc.GetName())
				}
			}

			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(deploy.Object, &d); err != nil {
				t.Fatal(err)
			}
			secret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
			mounted := ""
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Secret != nil && v.Secret.SecretName == secret {
					mounted = v.Name
				}
			}
			c := d.Spec.Template.Spec.Containers[0]
			// A panel database outage must keep the replicas Ready, that is in the webhook Service
			// (TestReadinessLeavesThePanelDatabaseOut in test/e2e proves the binary's side).
			if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz?exclude=panel-database" {
				t.Errorf("the manager's readiness probe is %+v, want /readyz?exclude=panel-database", p)
			}
			var mountPath string
			for _, m := range c.VolumeMounts {
				if m.Name == mounted && mounted != "" {
					mountPath = m.MountPath
				}
			}
			if mountPath == "" || !slices.Contains(c.Args, "--webhook-cert-path="+mountPath) {
				t.Errorf("the manager does not read its webhook certificate from Secret %s (volumes %v, args %v)", secret,
					d.Spec.Template.Spec.Volumes, c.Args)
			}
			target, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
			port := target[0].(map[string]any)["targetPort"]
			if !slices.Contains(c.Args, fmt.Sprintf("--webhook-port=%v", port)) || !slices.Contains(c.Args, "--enable-webhooks") {
				t.Errorf("the manager does not serve webhooks on the Service's target port %v: args %v", port, c.Args)
			}
		})
	}
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	ensureNamespaceWith(t, k8s, name)
}

func ensureNamespaceWith(t *testing.T, c client.Client, name string) {
	t.Helper()
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	if err := c.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(ns),
		client.FieldOwner("deploy-test")); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

func checkDeployment(t *testing.T, o *unstructured.Unstructured, namespace string) {
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
	namespaceArgs := slices.DeleteFunc(slices.Clone(c.Args), func(a string) bool { return !strings.HasPrefix(a, "--namespace") })
	switch {
	case namespace == "" && len(namespaceArgs) > 0:
		t.Errorf("the manager watches only %v, want every namespace", namespaceArgs)
	case namespace != "" && !slices.Equal(namespaceArgs, []string{"--namespace=" + namespace}):
		t.Errorf("the manager's namespace flags are %v, want --namespace=%s", namespaceArgs, namespace)
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

// managerAllowed is everything the manager may do across the cluster; a rule beyond it fails the
// test, and so does an entry the rendering no longer grants.
var managerAllowed = map[string][]string{
	"/secrets":                                        {"create", "delete", "get", "list", "patch", "watch"},
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

// leaderElectionAllowed is what the manager may do in its own namespace, where its Lease lives.
var leaderElectionAllowed = map[string][]string{
	"coordination.k8s.io/leases": {"create", "delete", "get", "list", "patch", "update", "watch"},
	"/events":                    {"create", "patch"},
}

// metricsAuthAllowed is what the manager needs to authenticate and authorize the scrapes of its
// HTTPS metrics endpoint (config/rbac/metrics_auth_role.yaml), across the cluster.
var metricsAuthAllowed = map[string][]string{
	"authentication.k8s.io/tokenreviews":        {"create"},
	"authorization.k8s.io/subjectaccessreviews": {"create"},
}

// with is allowed plus more, less the resources in drop.
func with(allowed, more map[string][]string, drop ...string) map[string][]string {
	out := map[string][]string{}
	for _, m := range []map[string][]string{allowed, more} {
		for k, v := range m {
			if !slices.Contains(drop, k) {
				out[k] = v
			}
		}
	}
	return out
}

// In config/default the manager holds its ClusterRole across the cluster, Secrets included; in
// config/namespaced the ClusterRole grants no Secrets and each watched namespace grants exactly
// the Secrets rule, through a Role of its own. Either way the leader election Role holds in the
// operator's namespace only. The Helm chart grants the same: with its defaults as config/default,
// with watchNamespaces as config/namespaced.
func TestManagerRBACStaysWithinTheAllowList(t *testing.T) {
	secrets := map[string][]string{"/secrets": managerAllowed["/secrets"]}
	namespaced := map[string]map[string][]string{
		"": with(managerAllowed, metricsAuthAllowed, "/secrets"), operatorNamespace: leaderElectionAllowed}
	for _, ns := range watchedNamespaces {
		namespaced[ns] = secrets
	}
	everywhere := map[string]map[string][]string{"": with(managerAllowed, metricsAuthAllowed),
		operatorNamespace: leaderElectionAllowed}
	for _, tc := range []struct {
		name string
		objs func(t *testing.T) []*unstructured.Unstructured
		want map[string]map[string][]string // namespace ("" across the cluster) -> resource -> verbs
	}{
		{defaultDir, func(t *testing.T) []*unstructured.Unstructured { return render(t, defaultDir) }, everywhere},
		{namespacedDir, func(t *testing.T) []*unstructured.Unstructured { return render(t, namespacedDir) }, namespaced},
		{"helm chart", func(t *testing.T) []*unstructured.Unstructured { return renderChart(t, nil) }, everywhere},
		{"helm chart with watchNamespaces", func(t *testing.T) []*unstructured.Unstructured {
			return renderChart(t, map[string]any{"watchNamespaces": watchedNamespaces})
		}, namespaced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := tc.objs(t)
			got := managerGrants(t, objs)
			for ns, granted := range got {
				for key, verbs := range granted {
					for _, v := range verbs {
						if !slices.Contains(tc.want[ns][key], v) {
							t.Errorf("%s grants the manager %s on %s %s beyond the allow-list", tc.name, v, key, where(ns))
						}
					}
				}
			}
			// The allow-list is not looser than what the manager needs either: every entry is granted.
			for ns, allowed := range tc.want {
				for key, verbs := range allowed {
					for _, v := range verbs {
						if !slices.Contains(got[ns][key], v) {
							t.Errorf("the allow-list has %s on %s %s, which %s no longer grants: tighten the list", v, key,
								where(ns), tc.name)
						}
					}
				}
			}
			if len(tc.want) > 2 { // Secrets from the watched namespaces' Roles only
				for _, o := range objs {
					if o.GetKind() == "ClusterRole" && grantsSecrets(t, o) {
						t.Errorf("ClusterRole %s of %s grants Secrets: with --namespace they come from Roles in the "+
							"watched namespaces only", o.GetName(), tc.name)
					}
				}
			}
		})
	}
}

func where(ns string) string {
	if ns == "" {
		return "across the cluster"
	}
	return "in namespace " + ns
}

// managerGrants is what the rendered bindings grant the manager's ServiceAccount: per namespace
// ("" across the cluster), each group/resource with its verbs.
func managerGrants(t *testing.T, objs []*unstructured.Unstructured) map[string]map[string][]string {
	t.Helper()
	roles := map[string][]rbacv1.PolicyRule{} // "ClusterRole/name" or "Role/namespace/name"
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			roles["ClusterRole/"+o.GetName()] = rulesOf(t, o)
		case "Role":
			roles["Role/"+o.GetNamespace()+"/"+o.GetName()] = rulesOf(t, o)
		}
	}
	got := map[string]map[string][]string{}
	add := func(ns string, rules []rbacv1.PolicyRule) {
		for _, r := range rules {
			if len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
				t.Errorf("unexpected rule form: %+v", r)
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						if g == "*" || res == "*" || v == "*" {
							t.Errorf("wildcard in rule %+v", r)
						}
						if got[ns] == nil {
							got[ns] = map[string][]string{}
						}
						got[ns][g+"/"+res] = append(got[ns][g+"/"+res], v)
					}
				}
			}
		}
	}
	for _, o := range objs {
		if o.GetKind() != "ClusterRoleBinding" && o.GetKind() != "RoleBinding" {
			continue
		}
		var b rbacv1.RoleBinding // a ClusterRoleBinding has the same fields
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Name == testenv.Manager.Name && s.Namespace == operatorNamespace
		}) {
			continue
		}
		ref := b.RoleRef.Kind + "/" + b.RoleRef.Name
		if b.RoleRef.Kind == "Role" {
			ref = "Role/" + b.Namespace + "/" + b.RoleRef.Name
		}
		rules, ok := roles[ref]
		if !ok {
			t.Errorf("%s %s/%s binds %s, which the rendering does not hold", o.GetKind(), b.Namespace, b.Name, ref)
		}
		add(b.Namespace, rules) // "" for a ClusterRoleBinding
	}
	if len(got) == 0 {
		t.Fatal("the rendering grants the manager nothing")
	}
	return got
}

func rulesOf(t *testing.T, o *unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var role rbacv1.ClusterRole // a Role has the same rules
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role); err != nil {
		t.Fatal(err)
	}
	return role.Rules
}

// grantsSecrets reports whether a role grants anything on Secrets, by name or by wildcard.
func grantsSecrets(t *testing.T, o *unstructured.Unstructured) bool {
	t.Helper()
	for _, r := range rulesOf(t, o) {
		if (slices.Contains(r.APIGroups, "") || slices.Contains(r.APIGroups, "*")) &&
			(slices.Contains(r.Resources, "secrets") || slices.Contains(r.Resources, "*")) {
			return true
		}
	}
	return false
}

// The shipped deployment is secure by default and still one command: it grants everything to the
// operator's own namespace and nothing to any other, as Gateway API's allowedRoutes defaults to
// the Gateway's namespace. Both renderings ship the same policy, and so does the Helm chart with
// its defaults.
func TestShippedPolicyGrantsOnlyTheOperatorNamespace(t *testing.T) {
	for _, dir := range []string{defaultDir, namespacedDir, chartDir} {
		t.Run(dir, func(t *testing.T) {
			var policies []v1.PanelAccessPolicy
			objs := renderChart
			if dir != chartDir {
				objs = func(t *testing.T, _ map[string]any) []*unstructured.Unstructured { return render(t, dir) }
			}
			for _, o := range objs(t, nil) {
				if o.GetKind() != "PanelAccessPolicy" {
					continue
				}
				if o.GetNamespace() != "" {
					t.Errorf("PanelAccessPolicy %s has namespace %q: it is cluster-scoped", o.GetName(), o.GetNamespace())
				}
				var p v1.PanelAccessPolicy
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &p); err != nil {
					t.Fatal(err)
				}
				policies = append(policies, p)
			}
			if len(policies) != 1 {
				t.Fatalf("%s renders %d PanelAccessPolicies, want the one for the operator's namespace", dir, len(policies))
			}
			if p := policies[0]; !p.Spec.AllowAll || !slices.Equal(p.Spec.Namespaces.Names, []string{operatorNamespace}) ||
				p.Spec.Namespaces.Selector != nil {
				t.Errorf("the shipped policy grants %+v, want allowAll to namespace %s by name only", p.Spec, operatorNamespace)
			}
			const email = "anyone@anywhere.example"
			if err := tenancy.For(policies, operatorNamespace, nil).Adoption(email); err != nil {
				t.Errorf("the operator's namespace may not adopt %s: %v", email, err)
			}
			for _, ns := range append([]string{"default", "kube-system"}, watchedNamespaces...) {
				if err := tenancy.For(policies, ns, map[string]string{"kubernetes.io/metadata.name": ns}).Email(email); err == nil {
					t.Errorf("the shipped policy grants namespace %s the email %s, want nothing", ns, email)
				}
			}
		})
	}
}
