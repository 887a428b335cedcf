package crdvalidation_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	celconfig "k8s.io/apiserver/pkg/apis/cel"

	"github.com/puqcloud/puq-user-operator/internal/crdvalidation"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

const apiVersion = "panel.puqcloud.com/v1alpha1"

func load(t testing.TB, plural string) *crdvalidation.Validator {
	t.Helper()
	v, err := crdvalidation.Load(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "panel.puqcloud.com_"+plural+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// slot is a place in an object a fuzz input can set: a field holding a value, or an object
// holding fields.
type slot struct {
	path  []string
	value any // nil for an object
}

// odd replaces a value with one of another kind: null, a number, a boolean, a list, an object (a
// string where the slot holds a boolean or an object).
func odd(kind uint8, was any) any {
	switch kind % 5 {
	case 0:
		return nil
	case 1:
		return 7
	case 2:
		if _, isBool := was.(bool); isBool {
			return "true"
		}
		return true
	case 3:
		return []any{"x"}
	}
	if _, isString := was.(string); isString {
		return map[string]any{"x": "y"}
	}
	return "x"
}

// build makes the request body of an object of kind with the slots whose bit is set in present
// (bit i for slot i), the slot numbered oddSlot (1-based; 0: none) given an odd value.
func build(kind string, slots []slot, present uint64, oddSlot, oddKind uint8) []byte {
	obj := map[string]any{"apiVersion": apiVersion, "kind": kind,
		"metadata": map[string]any{"name": "fuzzed", "namespace": "default"}}
slots:
	for i, s := range slots {
		if present&(1<<i) == 0 && int(oddSlot) != i+1 {
			continue
		}
		parent := obj
		for _, p := range s.path[:len(s.path)-1] {
			child, ok := parent[p].(map[string]any)
			if !ok {
				if _, set := parent[p]; set {
					continue slots // an odd value stands where the object would be
				}
				child = map[string]any{}
				parent[p] = child
			}
			parent = child
		}
		last := s.path[len(s.path)-1]
		v := s.value
		if s.value == nil {
			if _, set := parent[last]; set {
				continue
			}
			v = map[string]any{}
		}
		if int(oddSlot) == i+1 {
			v = odd(oddKind, v)
		}
		parent[last] = v
	}
	body, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	return body
}

// userSlots are the slots of a User: spec, its fields and its objects' fields.
func userSlots(email, secretName, secretKey, firstName, lastName, phone, language, adminNotes, method, state, adoption,
	deletionPolicy string, flags uint8) []slot {
	return []slot{
		{[]string{"spec"}, nil},
		{[]string{"spec", "email"}, email},
		{[]string{"spec", "passwordSecretRef"}, nil},
		{[]string{"spec", "passwordSecretRef", "name"}, secretName},
		{[]string{"spec", "passwordSecretRef", "key"}, secretKey},
		{[]string{"spec", "firstName"}, firstName},
		{[]string{"spec", "lastName"}, lastName},
		{[]string{"spec", "phone"}, phone},
		{[]string{"spec", "language"}, language},
		{[]string{"spec", "adminNotes"}, adminNotes},
		{[]string{"spec", "emailVerified"}, flags&1 != 0},
		{[]string{"spec", "phoneVerified"}, flags&2 != 0},
		{[]string{"spec", "twoFactor"}, nil},
		{[]string{"spec", "twoFactor", "enabled"}, flags&4 != 0},
		{[]string{"spec", "twoFactor", "method"}, method},
		{[]string{"spec", "state"}, state},
		{[]string{"spec", "adoption"}, adoption},
		{[]string{"spec", "deletionPolicy"}, deletionPolicy},
	}
}

// FuzzUserSpec: the validation the API server builds from the generated User CRD accepts a User
// exactly when userSpecValid (the rules the API documents, written out in Go) does; for any body,
// including nulls and values of the wrong kind in any field.
func FuzzUserSpec(f *testing.F) {
	v := load(f, "users")
	f.Fuzz(func(t *testing.T, email, secretName, secretKey, firstName, lastName, phone, language, adminNotes, method,
		state, adoption, deletionPolicy string, present uint32, flags, oddSlot, oddKind uint8, notesRepeat uint16) {
		slots := userSlots(email, secretName, secretKey, firstName, lastName, phone, language, notes(adminNotes, notesRepeat), method, state,
			adoption, deletionPolicy, flags)
		body := build("User", slots, uint64(present), oddSlot, oddKind)
		verdict(t, v, body, nil, userSpecValid)
	})
}

// notes repeats s, so that the fuzzer reaches adminNotes' limit of 65535 characters, up to about
// 70000 bytes.
func notes(s string, repeat uint16) string {
	n := int(repeat%2048) + 1
	if len(s) > 0 {
		n = max(1, min(n, 70000/len(s)))
	}
	return strings.Repeat(s, n)
}

// membershipSlots are the slots of a ClientMembership; permissions is a comma-separated list.
func membershipSlots(userName, clientUUID, companyName, permissions, deletionPolicy string, owner bool) []slot {
	perms := []any{}
	if permissions != "" {
		for p := range strings.SplitSeq(permissions, ",") {
			perms = append(perms, p)
		}
	}
	return []slot{
		{[]string{"spec"}, nil},
		{[]string{"spec", "userRef"}, nil},
		{[]string{"spec", "userRef", "name"}, userName},
		{[]string{"spec", "client"}, nil},
		{[]string{"spec", "client", "uuid"}, clientUUID},
		{[]string{"spec", "client", "companyName"}, companyName},
		{[]string{"spec", "owner"}, owner},
		{[]string{"spec", "permissions"}, perms},
		{[]string{"spec", "deletionPolicy"}, deletionPolicy},
	}
}

// FuzzClientMembershipSpec: the validation the API server builds from the generated
// ClientMembership CRD (schema and CEL rules) accepts a membership exactly when membershipSpecValid
// does, and, when update is set, a change from an old membership exactly when the new one is valid
// and keeps userRef and client (when the old one is valid itself: an invalid old one is only
// checked not to panic). The CEL rules stay within the API server's cost budget.
func FuzzClientMembershipSpec(f *testing.F) {
	v := load(f, "clientmemberships")
	f.Fuzz(func(t *testing.T, userName, clientUUID, companyName, permissions, deletionPolicy string, present uint16,
		owner bool, oddSlot, oddKind uint8, update bool, oldUserName, oldClientUUID, oldCompanyName string) {
		body := build("ClientMembership", membershipSlots(userName, clientUUID, companyName, permissions, deletionPolicy, owner),
			uint64(present), oddSlot, oddKind)
		var oldBody []byte
		if update {
			oldBody = oldMembership(oldUserName, oldClientUUID, oldCompanyName)
		}
		verdict(t, v, body, oldBody, membershipSpecValid)
	})
}

// oldMembership is the body of the membership an update starts from: userRef and client, by
// uuid, companyName, both or neither (those set).
func oldMembership(userName, clientUUID, companyName string) []byte {
	present := uint64(0b1111) // spec, userRef, userRef.name, client
	if clientUUID != "" {
		present |= 1 << 4
	}
	if companyName != "" {
		present |= 1 << 5
	}
	return build("ClientMembership", membershipSlots(userName, clientUUID, companyName, "", "", false), present, 0, 0)
}

// verdict decodes body (and oldBody, for an update) as the API server does, validates it, and
// compares the verdict with the oracle's on the body as sent.
func verdict(t *testing.T, v *crdvalidation.Validator, body, oldBody []byte, valid func(spec any) bool) {
	t.Helper()
	ctx := context.Background()
	sent, oldSent := plain(t, body), plain(t, oldBody)
	obj, err := v.Decode(body)
	if err != nil {
		t.Fatalf("cannot decode %s: %v", body, err)
	}
	want := valid(sent["spec"])
	var r crdvalidation.Result
	if oldBody == nil {
		r = v.Create(ctx, obj)
	} else {
		old, err := v.Decode(oldBody)
		if err != nil {
			t.Fatalf("cannot decode %s: %v", oldBody, err)
		}
		if !valid(oldSent["spec"]) || len(v.Create(ctx, copyOf(t, old)).Errors) > 0 {
			v.Update(ctx, obj, old) // only checked not to panic
			return
		}
		r = v.Update(ctx, obj, old)
		newSpec, _ := sent["spec"].(map[string]any)
		oldSpec := oldSent["spec"].(map[string]any)
		want = want && reflect.DeepEqual(withoutNulls(newSpec["userRef"]), withoutNulls(oldSpec["userRef"])) &&
			reflect.DeepEqual(withoutNulls(newSpec["client"]), withoutNulls(oldSpec["client"]))
	}
	if r.CELRun && (r.CELBudgetLeft < 0 || r.CELCost > celconfig.PerCallLimit) {
		t.Fatalf("the CEL rules cost %d (budget left %d) for %s", r.CELCost, r.CELBudgetLeft, body)
	}
	if got := len(r.Errors) == 0; got != want {
		t.Fatalf("the CRD's validation says accepted=%v, the documented rules %v, for %s (old: %s): %v", got, want, body, oldBody, r.Errors)
	}
}

// withoutNulls is v with the fields set to null left out: a field set to null is a field not set.
func withoutNulls(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := make(map[string]any, len(m))
	for k, x := range m {
		if x != nil {
			out[k] = withoutNulls(x)
		}
	}
	return out
}

// plain is the body as JSON carries it (invalid UTF-8 already replaced by the encoder), before
// any of the API server's decoding.
func plain(t *testing.T, body []byte) map[string]any {
	t.Helper()
	if body == nil {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func copyOf(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return plain(t, raw)
}
