package crdvalidation_test

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/puqcloud/puq-user-operator/internal/crdvalidation"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// TestOfflineValidationAgreesWithAPIServer sends every seed of the spec fuzz targets (the
// accepted and rejected cases written by hand and those the fuzzer found) to a real kube-apiserver
// with the CRDs installed, and checks that it accepts exactly the bodies the offline validation
// accepts, creates and updates alike: the fuzz targets test the validation that is deployed.
func TestOfflineValidationAgreesWithAPIServer(t *testing.T) {
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("cannot start kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "crd-"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}

	users, memberships := load(t, "users"), load(t, "clientmemberships")
	accepted, total := 0, 0
	check := func(seed string, v *crdvalidation.Validator, body, oldBody []byte) {
		total++
		name := fmt.Sprintf("seed-%d", total)
		var offline, online error
		if oldBody == nil {
			offline = offlineVerdict(t, v, body, nil)
			online = c.Create(ctx, object(t, body, ns.Name, name))
		} else {
			if err := offlineVerdict(t, v, oldBody, nil); err != nil {
				t.Logf("%s: the old object is invalid (%v); not an update test", seed, err)
				return
			}
			old := object(t, oldBody, ns.Name, name)
			if err := c.Create(ctx, old); err != nil {
				t.Errorf("%s: the API server refused the old object the offline validation accepts: %v", seed, err)
				return
			}
			offline = offlineVerdict(t, v, body, oldBody)
			updated := object(t, body, ns.Name, name)
			updated.SetResourceVersion(old.GetResourceVersion())
			online = c.Update(ctx, updated)
		}
		if online != nil && !apierrors.IsInvalid(online) && !apierrors.IsBadRequest(online) {
			t.Fatalf("%s: the API server failed: %v", seed, online)
		}
		if (offline == nil) != (online == nil) {
			t.Errorf("%s: offline accepted=%v (%v), the API server accepted=%v (%v); body %s", seed, offline == nil, offline,
				online == nil, online, body)
		}
		if online == nil {
			accepted++
		}
		t.Logf("%s: accepted=%v", seed, online == nil)
	}
	for _, seed := range seeds(t, "FuzzUserSpec") {
		a := seed.args
		slots := userSlots(a[0].(string), a[1].(string), a[2].(string), a[3].(string), a[4].(string), a[5].(string),
			a[6].(string), notes(a[7].(string), a[16].(uint16)), a[8].(string), a[9].(string),
			a[10].(string), a[11].(string), a[13].(uint8))
		check(seed.name, users, build("User", slots, uint64(a[12].(uint32)), a[14].(uint8), a[15].(uint8)), nil)
	}
	for _, seed := range seeds(t, "FuzzClientMembershipSpec") {
		a := seed.args
		body := build("ClientMembership", membershipSlots(a[0].(string), a[1].(string), a[2].(string), a[3].(string),
			a[4].(string), a[6].(bool)), uint64(a[5].(uint16)), a[7].(uint8), a[8].(uint8))
		var oldBody []byte
		if a[9].(bool) {
			oldBody = oldMembership(a[10].(string), a[11].(string), a[12].(string))
		}
		check(seed.name, memberships, body, oldBody)
	}
	t.Logf("%d seeds: %d accepted and %d refused by both the API server and the offline validation", total, accepted,
		total-accepted)
}

// offlineVerdict is the offline validation's verdict: nil (accepted) or its errors.
func offlineVerdict(t *testing.T, v *crdvalidation.Validator, body, oldBody []byte) error {
	t.Helper()
	obj, err := v.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	var r crdvalidation.Result
	if oldBody == nil {
		r = v.Create(context.Background(), obj)
	} else {
		old, err := v.Decode(oldBody)
		if err != nil {
			t.Fatal(err)
		}
		r = v.Update(context.Background(), obj, old)
	}
	if len(r.Errors) == 0 {
		return nil
	}
	return r.Errors.ToAggregate()
}

// object is body as an object in namespace ns named name, sent as it is.
func object(t *testing.T, body []byte, ns, name string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{Object: plain(t, body)}
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

type seed struct {
	name string
	args []any
}

// seeds reads the corpus files of a fuzz target (testdata/fuzz/<target>), in Go's corpus format:
// "go test fuzz v1", then one typed value per line, such as string("x") or uint8(3).
func seeds(t *testing.T, target string) []seed {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("no seeds in %s: %v", dir, err)
	}
	out := make([]seed, 0, len(entries))
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		if lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a corpus file", e.Name())
		}
		s := seed{name: target + "/" + e.Name()}
		for _, line := range lines[1:] {
			v, err := corpusValue(line)
			if err != nil {
				t.Fatalf("%s: %q: %v", s.name, line, err)
			}
			s.args = append(s.args, v)
		}
		out = append(out, s)
	}
	return out
}

// corpusValue reads one line of a corpus file: string, bool, byte, uint8, uint16 or uint32.
func corpusValue(line string) (any, error) {
	expr, err := parser.ParseExpr(line)
	if err != nil {
		return nil, err
	}
	call, ok := expr.(*ast.CallExpr)
	if !ok || len(call.Args) != 1 {
		return nil, fmt.Errorf("want type(value)")
	}
	typ, ok := call.Fun.(*ast.Ident)
	if !ok {
		return nil, fmt.Errorf("want type(value)")
	}
	if typ.Name == "bool" {
		id, ok := call.Args[0].(*ast.Ident)
		if !ok || (id.Name != "true" && id.Name != "false") {
			return nil, fmt.Errorf("want true or false")
		}
		return id.Name == "true", nil
	}
	lit, ok := call.Args[0].(*ast.BasicLit)
	if !ok {
		return nil, fmt.Errorf("want a literal")
	}
	if typ.Name == "string" {
		return strconv.Unquote(lit.Value)
	}
	var n uint64
	switch lit.Kind {
	case token.CHAR:
		r, _, _, err := strconv.UnquoteChar(lit.Value[1:len(lit.Value)-1], '\'')
		if err != nil {
			return nil, err
		}
		n = uint64(r)
	case token.INT:
		if n, err = strconv.ParseUint(lit.Value, 0, 32); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("want a number")
	}
	switch typ.Name {
	case "byte", "uint8":
		return uint8(n), nil
	case "uint16":
		return uint16(n), nil
	case "uint32":
		return uint32(n), nil
	}
	return nil, fmt.Errorf("unknown type %s", typ.Name)
}
