package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"

	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// toLua turns a JSON-shaped value into Lua values, as Argo CD hands objects to health scripts.
func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, e := range x {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range x {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(x)
	case bool:
		return lua.LBool(x)
	case int64:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case nil:
		return lua.LNil
	}
	panic("unexpected type")
}

func argoHealth(t *testing.T, script string, obj map[string]any) (string, string) {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	fn, err := L.LoadString(script)
	if err != nil {
		t.Fatalf("the health script does not compile: %v", err)
	}
	L.Push(fn)
	if err := L.PCall(0, 1, nil); err != nil {
		t.Fatalf("the health script failed: %v", err)
	}
	hs, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatal("the health script did not return a table")
	}
	return hs.RawGetString("status").String(), hs.RawGetString("message").String()
}

func user(generation int64, observed any, conds ...map[string]any) map[string]any {
	return object("User", generation, observed, conds...)
}

func policy(generation int64, observed any, conds ...map[string]any) map[string]any {
	obj := object("PanelAccessPolicy", generation, observed, conds...)
	delete(obj["metadata"].(map[string]any), "namespace") // cluster-scoped
	return obj
}

func object(kind string, generation int64, observed any, conds ...map[string]any) map[string]any {
	obj := map[string]any{
		"apiVersion": "panel.puqcloud.com/v1alpha1", "kind": kind,
		"metadata": map[string]any{"name": "jane", "namespace": "team", "generation": generation},
	}
	if observed != nil || len(conds) > 0 {
		st := map[string]any{}
		if observed != nil {
			st["observedGeneration"] = observed
		}
		list := make([]any, 0, len(conds))
		for _, c := range conds {
			list = append(list, c)
		}
		st["conditions"] = list
		obj["status"] = st
	}
	return obj
}

func cond(typ, st, reason, msg string, gen int64) map[string]any {
	return map[string]any{"type": typ, "status": st, "reason": reason, "message": msg, "observedGeneration": gen,
		"lastTransitionTime": "2026-11-27T10:00:00Z"}
}

func TestArgoCDHealthAndKstatusAgree(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "argocd", "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	script := string(raw)
	cases := []struct {
		name        string
		obj         map[string]any
		argo        string
		message     string
		kstatusWant status.Status // "" where kstatus has no say (an object the API server never returns)
	}{
		{"ready", user(2, int64(2), cond("Ready", "True", "Reconciled", "The panel user matches the spec.", 2)),
			"Healthy", "Reconciled", status.CurrentStatus},
		// What the API server returns before the operator has seen the object: the CRD defaults it.
		{"new, not yet seen", user(1, int64(0)), "Progressing", "observe generation 1", status.InProgressStatus},
		{"stale generation", user(3, int64(2), cond("Ready", "True", "Reconciled", "ok", 2)),
			"Progressing", "observe generation 3", status.InProgressStatus},
		{"database down", user(2, int64(1), cond("Ready", "False", "DatabaseUnavailable", "cannot reach", 2),
			cond("Reconciling", "True", "DatabaseUnavailable", "cannot reach", 2)),
			"Progressing", "DatabaseUnavailable: cannot reach", status.InProgressStatus},
		{"weak password", user(2, int64(2), cond("Ready", "False", "WeakPassword", "too weak", 2),
			cond("Stalled", "True", "WeakPassword", "too weak", 2)),
			"Degraded", "WeakPassword: too weak", status.FailedStatus},
		{"duplicate email", user(4, int64(4), cond("Ready", "False", "DuplicateEmail", "held by team/first", 4),
			cond("Stalled", "True", "DuplicateEmail", "held by team/first", 4)),
			"Degraded", "DuplicateEmail: held by team/first", status.FailedStatus},
		{"policy in force", policy(2, int64(2), cond("Ready", "True", "Reconciled", "The policy is in force for 2 namespaces.", 2)),
			"Healthy", "Reconciled: The policy is in force for 2 namespaces.", status.CurrentStatus},
		{"policy not yet seen", policy(1, int64(0)), "Progressing", "observe generation 1", status.InProgressStatus},
		// The CRD defaults status.observedGeneration, so the API server never returns a policy
		// without status; Argo CD still reads one, from git, as not yet seen.
		{"policy without status", policy(1, nil), "Progressing", "observe generation 1", ""},
		{"policy changed, not yet judged", policy(3, int64(2),
			cond("Ready", "True", "Reconciled", "The policy is in force for 2 namespaces.", 2)),
			"Progressing", "observe generation 3", status.InProgressStatus},
		{"policy with an invalid selector", policy(2, int64(2), cond("Ready", "False", "InvalidSelector", "cannot be parsed", 2),
			cond("Stalled", "True", "InvalidSelector", "cannot be parsed", 2)),
			"Degraded", "InvalidSelector: cannot be parsed", status.FailedStatus},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := argoHealth(t, script, tc.obj)
			if got != tc.argo || !strings.Contains(msg, tc.message) {
				t.Errorf("Argo CD health = %s (%q), want %s containing %q", got, msg, tc.argo, tc.message)
			}
			if tc.kstatusWant == "" {
				return
			}
			res, err := status.Compute(&unstructured.Unstructured{Object: tc.obj})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tc.kstatusWant {
				t.Errorf("kstatus = %s (%s), want %s", res.Status, res.Message, tc.kstatusWant)
			}
		})
	}
}

func TestArgoCDConfigMapCarriesTheSameScriptForEveryKind(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(), "config", "argocd")
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "argocd-cm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	// Every kind the CRDs define has the health check, a kind added later included.
	crds, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "*.yaml"))
	if err != nil || len(crds) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	for _, path := range crds {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			t.Fatal(err)
		}
		key := "resource.customizations.health." + crd.Spec.Group + "_" + crd.Spec.Names.Kind
		if cm.Data[key] != string(script) {
			t.Errorf("%s in argocd-cm.yaml differs from health.lua", key)
		}
	}
}
