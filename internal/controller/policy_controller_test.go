package controller_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// policyEnv runs the PanelAccessPolicy controller alone, as the manager's ServiceAccount (the
// ClusterRole of config/rbac/role.yaml), with its cache limited to one namespace as --namespace
// limits it: namespaces and policies are cluster-scoped and must come through all the same.
type policyEnv struct {
	*env
	label string // a label key only this test's namespaces carry
}

func newPolicyEnv(t *testing.T) *policyEnv {
	t.Helper()
	watched := createNamespace(t, "policy-watched-", nil)
	e := &env{t: t, ns: watched, logs: &testenv.Output{}}
	skip := true
	mgr, err := ctrl.NewManager(managerConfig, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Logger:                 zap.New(zap.WriteTo(e.logs), zap.UseDevMode(true)),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{watched: {}},
			DefaultTransform: cache.TransformStripManagedFields()},
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&controller.PanelAccessPolicyReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stop, e.done = cancel, make(chan struct{})
	go func() {
		defer close(e.done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(e.shutdown)
	return &policyEnv{env: e, label: "policy-test.puqcloud.com/" + watched}
}

func createNamespace(t *testing.T, prefix string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix, Labels: labels}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func (e *policyEnv) policy(name string, ns v1.PolicyNamespaces) *v1.PanelAccessPolicy {
	e.t.Helper()
	p := &v1.PanelAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PanelAccessPolicySpec{Namespaces: ns, Emails: []v1.EmailPattern{"*@acme.io"}}}
	e.create(p)
	e.t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })
	return p
}

func (e *policyEnv) setLabels(ns string, labels map[string]string) {
	e.t.Helper()
	update(e.env, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, func(n *corev1.Namespace) { n.Labels = labels })
}

// waitCoverage waits until the policy's status lists exactly the namespaces, counts them, and
// says Ready (reason Reconciled) for the current generation.
func (e *policyEnv) waitCoverage(p *v1.PanelAccessPolicy, want ...string) *v1.PanelAccessPolicy {
	e.t.Helper()
	slices.Sort(want)
	got := &v1.PanelAccessPolicy{}
	e.eventually(30*time.Second, func() string {
		if err := k8s.Get(e.ctx(), client.ObjectKeyFromObject(p), got); err != nil {
			return err.Error()
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
		if !slices.Equal(got.Status.Namespaces, want) || got.Status.NamespaceCount != int32(len(want)) || c == nil ||
			c.Status != metav1.ConditionTrue || c.Reason != v1.ReasonReconciled || got.Status.ObservedGeneration != got.Generation {
			return fmt.Sprintf("policy %s status: namespaces %v (count %d), Ready %+v, observed generation %d of %d; want %v",
				p.Name, got.Status.Namespaces, got.Status.NamespaceCount, c, got.Status.ObservedGeneration, got.Generation, want)
		}
		return ""
	})
	return got
}

// A policy's status lists the namespaces it selects, by name and by labels, and follows a
// namespace losing and gaining the label and a new namespace, while the manager's own cache is
// limited to another namespace.
func TestPolicyStatusFollowsNamespaceLabelsAndNewNamespaces(t *testing.T) {
	e := newPolicyEnv(t)
	byName := createNamespace(t, "policy-named-", nil)
	labelled := createNamespace(t, "policy-labelled-", map[string]string{e.label: "a"})
	createNamespace(t, "policy-other-", map[string]string{e.label: "b"})
	p := e.policy("cover-"+e.ns, v1.PolicyNamespaces{Names: []string{byName},
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{e.label: "a"}}})
	e.waitCoverage(p, byName, labelled)

	e.setLabels(labelled, map[string]string{e.label: "b"})
	e.waitCoverage(p, byName)

	added := createNamespace(t, "policy-added-", map[string]string{e.label: "a"})
	e.waitCoverage(p, byName, added)

	e.setLabels(labelled, map[string]string{e.label: "a", "unrelated": "x"})
	e.waitCoverage(p, byName, added, labelled)
}

// A policy whose selector the API server accepts but cannot be parsed grants nothing and says
// why; fixing the selector puts it in force.
func TestPolicyWithAnInvalidSelectorSaysInvalidSelectorAndCoversNothing(t *testing.T) {
	e := newPolicyEnv(t)
	named := createNamespace(t, "policy-named-", nil)
	p := e.policy("invalid-"+e.ns, v1.PolicyNamespaces{Names: []string{named},
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"not a label key!": "a"}}})
	got := &v1.PanelAccessPolicy{}
	e.eventually(30*time.Second, func() string {
		if err := k8s.Get(e.ctx(), client.ObjectKeyFromObject(p), got); err != nil {
			return err.Error()
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
		stalled := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionStalled)
		if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != v1.ReasonInvalidSelector ||
			stalled == nil || stalled.Status != metav1.ConditionTrue || got.Status.ObservedGeneration != got.Generation {
			return fmt.Sprintf("conditions %+v, observed generation %d of %d; want Ready=False InvalidSelector and Stalled",
				got.Status.Conditions, got.Status.ObservedGeneration, got.Generation)
		}
		return ""
	})
	if len(got.Status.Namespaces) != 0 || got.Status.NamespaceCount != 0 {
		t.Errorf("a policy with an invalid selector covers %v (count %d), want nothing", got.Status.Namespaces,
			got.Status.NamespaceCount)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady); !strings.Contains(c.Message,
		"spec.namespaces.selector") || !strings.Contains(c.Message, "grants nothing") {
		t.Errorf("the InvalidSelector message does not name the field and its effect: %q", c.Message)
	}

	update(e.env, p, func(p *v1.PanelAccessPolicy) {
		p.Spec.Namespaces.Selector.MatchLabels = map[string]string{e.label: "a"}
	})
	e.waitCoverage(p, named)
}

// A namespace change that leaves the policy's coverage as it was is reconciled and writes nothing.
func TestPolicyStatusIsPatchedOnlyWhenItChanges(t *testing.T) {
	e := newPolicyEnv(t)
	selected := createNamespace(t, "policy-selected-", map[string]string{e.label: "a"})
	p := e.policy("unchanged-"+e.ns, v1.PolicyNamespaces{Selector: &metav1.LabelSelector{
		MatchLabels: map[string]string{e.label: "a"}}})
	before := e.waitCoverage(p, selected)

	reconciled := policyReconciles(t)
	patches := apiRequests(t)["PATCH"]
	e.setLabels(selected, map[string]string{e.label: "a", "unrelated": "changed"})
	e.eventually(30*time.Second, func() string {
		if n := policyReconciles(t); n <= reconciled {
			return fmt.Sprintf("no PanelAccessPolicy reconcile after the label change yet (%v)", n)
		}
		return ""
	})
	if n := apiRequests(t)["PATCH"] - patches; n != 0 {
		t.Errorf("the manager sent %v PATCH requests for a reconcile that changed nothing, want 0", n)
	}
	after := &v1.PanelAccessPolicy{}
	if err := k8s.Get(e.ctx(), client.ObjectKeyFromObject(p), after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("the policy's resourceVersion moved from %s to %s", before.ResourceVersion, after.ResourceVersion)
	}
}

// policyReconciles counts the PanelAccessPolicy reconciles that ended Ready.
func policyReconciles(t *testing.T) float64 {
	t.Helper()
	return metricValue(t, "puq_user_operator_reconcile_outcomes_total",
		map[string]string{"kind": "PanelAccessPolicy", "reason": v1.ReasonReconciled})
}
