package v1alpha1_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

var k8s client.Client

func TestMain(m *testing.M) { testenv.Main(m, &k8s) }

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "api-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

func validUser(ns, name string) *v1.User {
	return &v1.User{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.UserSpec{
			Email:             name + "@example.com",
			PasswordSecretRef: v1.SecretKeyReference{Name: name + "-password"},
			FirstName:         "Jane",
			LastName:          "Doe",
			Phone:             "+48123456789",
			Language:          "en",
		},
	}
}

func validMembership(ns, name string) *v1.ClientMembership {
	return &v1.ClientMembership{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.ClientMembershipSpec{
			UserRef:     v1.LocalUserReference{Name: "jane"},
			Client:      v1.ClientSelector{CompanyName: "Acme Hosting Ltd"},
			Permissions: []v1.Permission{v1.PermissionManageServices},
		},
	}
}

func TestAPIServerRejectsBadObjectsNamingTheField(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name   string
		obj    func(name string) client.Object
		field  string // the field path the API server must name
		detail string // a fragment of the reason
	}{
		{"email without at sign", userWith(func(u *v1.User) { u.Spec.Email = "not-an-email" }), "spec.email", "email"},
		{"email of 256 characters", userWith(func(u *v1.User) { u.Spec.Email = strings.Repeat("a", 244) + "@example.com" }), "spec.email", "255"},
		{"empty email", userWith(func(u *v1.User) { u.Spec.Email = "" }), "spec.email", ""},
		{"password secret without name", userWith(func(u *v1.User) { u.Spec.PasswordSecretRef.Name = "" }), "spec.passwordSecretRef.name", ""},
		{"password secret key not a password key", userWith(func(u *v1.User) { u.Spec.PasswordSecretRef.Key = "token" }), "spec.passwordSecretRef.key", "password"},
		{"phone with spaces", userWith(func(u *v1.User) { u.Spec.Phone = "+48 123 456 789" }), "spec.phone", ""},
		{"phone without plus", userWith(func(u *v1.User) { u.Spec.Phone = "48123456789" }), "spec.phone", ""},
		{"phone too short", userWith(func(u *v1.User) { u.Spec.Phone = "+123456" }), "spec.phone", ""},
		{"phone too long", userWith(func(u *v1.User) { u.Spec.Phone = "+1234567890123456" }), "spec.phone", ""},
		{"language as a word", userWith(func(u *v1.User) { u.Spec.Language = "english" }), "spec.language", ""},
		{"language upper case", userWith(func(u *v1.User) { u.Spec.Language = "EN" }), "spec.language", ""},
		{"language with a hyphen", userWith(func(u *v1.User) { u.Spec.Language = "en-US" }), "spec.language", ""},
		{"first name of 256 characters", userWith(func(u *v1.User) { u.Spec.FirstName = strings.Repeat("x", 256) }), "spec.firstName", "255"},
		{"last name of 256 characters", userWith(func(u *v1.User) { u.Spec.LastName = strings.Repeat("x", 256) }), "spec.lastName", "255"},
		{"no first name", userWith(func(u *v1.User) { u.Spec.FirstName = "" }), "spec.firstName", ""},
		{"no last name", userWith(func(u *v1.User) { u.Spec.LastName = "" }), "spec.lastName", ""},
		{"email two-factor on an unverified address", userWith(func(u *v1.User) {
			u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodEmail}
		}), "spec.twoFactor", "emailVerified: true"},
		{"two-factor without method on an unverified address", userWith(func(u *v1.User) {
			u.Spec.TwoFactor = v1.TwoFactor{Enabled: true}
		}), "spec.twoFactor", "emailVerified: true"},
		{"admin notes over 64 KiB", userWith(func(u *v1.User) { u.Spec.AdminNotes = strings.Repeat("x", 65536) }), "spec.adminNotes", "65535"},
		{"unknown two-factor method", userWith(func(u *v1.User) { u.Spec.TwoFactor.Method = "SMS" }), "spec.twoFactor.method", "Email"},
		{"unknown state", userWith(func(u *v1.User) { u.Spec.State = "Suspended" }), "spec.state", "Active"},
		{"unknown adoption", userWith(func(u *v1.User) { u.Spec.Adoption = "Always" }), "spec.adoption", "IfExists"},
		{"unknown user deletion policy", userWith(func(u *v1.User) { u.Spec.DeletionPolicy = "Orphan" }), "spec.deletionPolicy", "Disable"},
		{"unknown permission", membershipWith(func(m *v1.ClientMembership) {
			m.Spec.Permissions = []v1.Permission{"manage-everything"}
		}), "spec.permissions[0]", "manage-orders"},
		{"duplicate permission", membershipWith(func(m *v1.ClientMembership) {
			m.Spec.Permissions = []v1.Permission{v1.PermissionManageUsers, v1.PermissionManageUsers}
		}), "spec.permissions[1]", "Duplicate"},
		{"client by uuid and by company name", membershipWith(func(m *v1.ClientMembership) {
			m.Spec.Client = v1.ClientSelector{UUID: "0b8f2a4e-3c1d-4e5f-8a9b-0c1d2e3f4a5b", CompanyName: "Acme"}
		}), "spec.client", "exactly one"},
		{"client with neither uuid nor company name", membershipWith(func(m *v1.ClientMembership) {
			m.Spec.Client = v1.ClientSelector{}
		}), "spec.client", "exactly one"},
		{"client uuid not a uuid", membershipWith(func(m *v1.ClientMembership) {
			m.Spec.Client = v1.ClientSelector{UUID: "ACME-1"}
		}), "spec.client.uuid", ""},
		{"membership without user name", membershipWith(func(m *v1.ClientMembership) { m.Spec.UserRef.Name = "" }), "spec.userRef.name", ""},
		{"membership deletion policy Disable", membershipWith(func(m *v1.ClientMembership) {
			m.Spec.DeletionPolicy = "Disable"
		}), "spec.deletionPolicy", "Retain"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := tc.obj(fmt.Sprintf("bad-%d", i))
			obj.SetNamespace(ns)
			err := k8s.Create(context.Background(), obj)
			assertInvalid(t, err, tc.field, tc.detail)
		})
	}
}

// TestAPIServerAcceptsTwoFactorThatCanSendItsCodes: the lock-out rule refuses only email codes to
// an unverified address; every other combination is a User the panel can log in.
func TestAPIServerAcceptsTwoFactorThatCanSendItsCodes(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name   string
		mutate func(*v1.User)
	}{
		{"TOTP on an unverified address", func(u *v1.User) {
			u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP}
		}},
		{"Email on a verified address", func(u *v1.User) {
			u.Spec.EmailVerified = true
			u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodEmail}
		}},
		{"no method on a verified address", func(u *v1.User) {
			u.Spec.EmailVerified = true
			u.Spec.TwoFactor = v1.TwoFactor{Enabled: true}
		}},
		{"two-factor off with method Email on an unverified address", func(u *v1.User) {
			u.Spec.TwoFactor = v1.TwoFactor{Method: v1.TwoFactorMethodEmail}
		}},
		{"two-factor off on an unverified address", func(u *v1.User) {}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := validUser(ns, fmt.Sprintf("twofactor-%d", i))
			tc.mutate(u)
			if err := k8s.Create(context.Background(), u); err != nil {
				t.Fatalf("the API server refused a User the panel can log in: %v", err)
			}
		})
	}
}

func TestAPIServerRejectsChangesToImmutableMembershipFields(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		mutate func(m *v1.ClientMembership)
		field  string
	}{
		{"user reference", func(m *v1.ClientMembership) { m.Spec.UserRef.Name = "john" }, "spec.userRef"},
		{"client", func(m *v1.ClientMembership) { m.Spec.Client.CompanyName = "Other Ltd" }, "spec.client"},
		{"client selector kind", func(m *v1.ClientMembership) {
			m.Spec.Client = v1.ClientSelector{UUID: "0b8f2a4e-3c1d-4e5f-8a9b-0c1d2e3f4a5b"}
		}, "spec.client"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := validMembership(ns, fmt.Sprintf("immutable-%d", i))
			if err := k8s.Create(ctx, m); err != nil {
				t.Fatalf("create: %v", err)
			}
			tc.mutate(m)
			err := k8s.Update(ctx, m)
			assertInvalid(t, err, tc.field, "immutable")
			// Changing what may change still works.
			fresh := &v1.ClientMembership{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(m), fresh); err != nil {
				t.Fatalf("get: %v", err)
			}
			fresh.Spec.Owner = true
			if err := k8s.Update(ctx, fresh); err != nil {
				t.Fatalf("update of a mutable field was refused: %v", err)
			}
		})
	}
}

func TestAPIServerAppliesDefaults(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	u := validUser(ns, "defaults")
	if err := k8s.Create(ctx, u); err != nil {
		t.Fatalf("create user: %v", err)
	}
	if u.Spec.PasswordSecretRef.Key != v1.PasswordKeyCleartext || u.Spec.Adoption != v1.AdoptionNever ||
		u.Spec.DeletionPolicy != v1.UserDeletionDelete {
		t.Errorf("user defaults = key %q adoption %q deletionPolicy %q, want password Never Delete",
			u.Spec.PasswordSecretRef.Key, u.Spec.Adoption, u.Spec.DeletionPolicy)
	}
	m := validMembership(ns, "defaults")
	if err := k8s.Create(ctx, m); err != nil {
		t.Fatalf("create membership: %v", err)
	}
	if m.Spec.DeletionPolicy != v1.MembershipDeletionDelete {
		t.Errorf("membership deletionPolicy = %q, want Delete", m.Spec.DeletionPolicy)
	}
}

// TestNewObjectsReadAsInProgress: before the operator has seen an object, its status defaults to
// observedGeneration 0, so kstatus (and Flux's wait) read it as InProgress, not Current.
func TestNewObjectsReadAsInProgress(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	for _, obj := range []client.Object{validUser(ns, "fresh"), validMembership(ns, "fresh")} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(v1.GroupVersion.WithKind(map[bool]string{true: "User", false: "ClientMembership"}[isUser(obj)]))
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), u); err != nil {
			t.Fatal(err)
		}
		observed, found, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		if !found || observed != 0 {
			t.Errorf("%s: status.observedGeneration = %d (found %v), want a defaulted 0", u.GetKind(), observed, found)
		}
		res, err := kstatus.Compute(u)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != kstatus.InProgressStatus {
			t.Errorf("%s: kstatus of a new object = %s, want InProgress", u.GetKind(), res.Status)
		}
	}
}

func isUser(o client.Object) bool { _, ok := o.(*v1.User); return ok }

func TestSamplesAreAccepted(t *testing.T) {
	ns := newNamespace(t)
	dir := filepath.Join(testenv.RepoRoot(), "config", "samples")
	files, err := filepath.Glob(filepath.Join(dir, "panel_*.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("want the User and ClientMembership samples in %s, found %v (%v)", dir, files, err)
	}
	kinds := map[string]int{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(string(raw)), 4096)
		for {
			obj := &unstructured.Unstructured{}
			err := dec.Decode(&obj.Object)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: cannot decode: %v", filepath.Base(f), err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			obj.SetNamespace(ns)
			if err := k8s.Create(context.Background(), obj); err != nil {
				t.Errorf("%s: %s %s was rejected: %v", filepath.Base(f), obj.GetKind(), obj.GetName(), err)
			}
			kinds[obj.GetKind()]++
		}
	}
	for _, k := range []string{"User", "Secret", "ClientMembership", "PanelAccessPolicy"} {
		if kinds[k] == 0 {
			t.Errorf("the samples hold no %s", k)
		}
	}
}

func TestFieldSelectorOnEmailFindsTheUser(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	for _, name := range []string{"alice", "bob", "carol"} {
		if err := k8s.Create(ctx, validUser(ns, name)); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	var list v1.UserList
	if err := k8s.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{"spec.email": "bob@example.com"}); err != nil {
		t.Fatalf("list with field selector: %v", err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != "bob" {
		names := make([]string, 0, len(list.Items))
		for _, u := range list.Items {
			names = append(names, u.Name)
		}
		t.Fatalf("field selector spec.email=bob@example.com returned %v, want [bob]", names)
	}
}

func TestCRDsCarryKubectlErgonomics(t *testing.T) {
	cases := []struct {
		crd        string
		shortName  string
		columns    []string
		selectable []string
	}{
		{"users.panel.puqcloud.com", "puser", []string{"Email", "Status", "2FA", "Clients", "Ready", "Age"}, []string{".spec.email"}},
		{"clientmemberships.panel.puqcloud.com", "pcm", []string{"User", "Client", "Owner", "Ready", "Age"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.crd, func(t *testing.T) {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := k8s.Get(context.Background(), client.ObjectKey{Name: tc.crd}, crd); err != nil {
				t.Fatalf("get CRD: %v", err)
			}
			if crd.Spec.Scope != apiextensionsv1.NamespaceScoped {
				t.Errorf("scope = %s, want Namespaced", crd.Spec.Scope)
			}
			if got := crd.Spec.Names.ShortNames; len(got) != 1 || got[0] != tc.shortName {
				t.Errorf("short names = %v, want [%s]", got, tc.shortName)
			}
			if got := crd.Spec.Names.Categories; len(got) != 1 || got[0] != "puqcloud" {
				t.Errorf("categories = %v, want [puqcloud]", got)
			}
			version := crd.Spec.Versions[0]
			columns := make([]string, 0, len(version.AdditionalPrinterColumns))
			for _, c := range version.AdditionalPrinterColumns {
				columns = append(columns, c.Name)
			}
			if strings.Join(columns, ",") != strings.Join(tc.columns, ",") {
				t.Errorf("printer columns = %v, want %v", columns, tc.columns)
			}
			selectable := make([]string, 0, len(version.SelectableFields))
			for _, f := range version.SelectableFields {
				selectable = append(selectable, f.JSONPath)
			}
			if strings.Join(selectable, ",") != strings.Join(tc.selectable, ",") {
				t.Errorf("selectable fields = %v, want %v", selectable, tc.selectable)
			}
			if version.Subresources == nil || version.Subresources.Status == nil {
				t.Error("the status subresource is not enabled")
			}
		})
	}
}

func userWith(mutate func(*v1.User)) func(string) client.Object {
	return func(name string) client.Object {
		u := validUser("", name)
		mutate(u)
		return u
	}
}

func membershipWith(mutate func(*v1.ClientMembership)) func(string) client.Object {
	return func(name string) client.Object {
		m := validMembership("", name)
		mutate(m)
		return m
	}
}

func assertInvalid(t *testing.T, err error, field, detail string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the API server accepted the object; want a rejection naming %s", field)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want an Invalid error naming %s, got %v", field, err)
	}
	status, ok := err.(apierrors.APIStatus)
	if !ok || status.Status().Details == nil {
		t.Fatalf("the rejection carries no field details: %v", err)
	}
	for _, cause := range status.Status().Details.Causes {
		if cause.Field == field && strings.Contains(cause.Message, detail) {
			return
		}
	}
	t.Fatalf("the rejection does not name field %s with %q: %v", field, detail, err)
}
