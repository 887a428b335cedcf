package puqctl

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// panelRow is one users row and what hangs off it, as a test writes it into an SQLite panel.
type panelRow struct {
	email, status, hash  string
	disable, twoFactor   bool
	lastname, language   any // nil is NULL
	phone                any
	noEmailRow           bool
	totpRows             int
	memberOwner          bool
	memberPermissions    string
	boundTo              string // "namespace/name"
	emailVerified        bool
	wantProblem          string // "" means imported
	wantMembershipsCount int
}

// The panel user every case starts from: one the spec says exactly.
func goodRow() panelRow {
	return panelRow{email: "jane@acme.io", status: "active", lastname: "Doe", language: "en", emailVerified: true,
		memberPermissions: `["manage-services"]`, wantMembershipsCount: 1}
}

func TestImportReportsUsersTheSpecCannotSayExactly(t *testing.T) {
	hash, err := password.Hash("plum-Harbor-7-lantern", 10)
	if err != nil {
		t.Fatal(err)
	}
	cheap, err := password.Hash("plum-Harbor-7-lantern", 4)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*panelRow){
		"a user the spec says exactly is imported": func(*panelRow) {},
		"closed status":       func(r *panelRow) { r.status, r.wantProblem = "closed", "status closed" },
		"active but disabled": func(r *panelRow) { r.disable, r.wantProblem = true, "status active with disable true" },
		"no last name":        func(r *panelRow) { r.lastname, r.wantProblem = nil, "lastname is empty" },
		"non-E.164 phone":     func(r *panelRow) { r.phone, r.wantProblem = "0501234567", `phone "0501234567" is not E.164` },
		"a language the operator does not offer": func(r *panelRow) {
			r.language, r.wantProblem = "de", `language "de" is not one of the operator's --languages (en, uk)`
		},
		"language unset while the operator would write one": func(r *panelRow) {
			r.language, r.wantProblem = nil, "language is unset in the panel: applying would write language = en once"
		},
		"no verification row for the email": func(r *panelRow) {
			r.noEmailRow, r.wantProblem = true, "would rewrite emailVerification"
		},
		"two authenticator rows": func(r *panelRow) {
			r.twoFactor, r.totpRows, r.wantProblem = true, 2, "would rewrite totp"
		},
		"2FA by email on an unverified address": func(r *panelRow) {
			r.twoFactor, r.emailVerified, r.wantProblem = true, false, "email is not verified"
		},
		"malformed hash": func(r *panelRow) { r.hash, r.wantProblem = "$2y$12$short", "not a bcrypt hash" },
		"hash of cost 4": func(r *panelRow) { r.hash, r.wantProblem = cheap, "cost 4" },
		"owner lacking permissions": func(r *panelRow) {
			r.memberOwner, r.wantProblem = true, "the owner lacks some permissions"
		},
		"unknown permission key": func(r *panelRow) {
			r.memberPermissions, r.wantProblem = `["manage-services","manage-moon"]`, "keys the spec does not know"
		},
		"bound to another User":          func(r *panelRow) { r.boundTo, r.wantProblem = "other/jane", "already managed by User other/jane" },
		"a namespace that may not adopt": func(r *panelRow) { r.email, r.wantProblem = "jane@other.io", "may not adopt" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			row := goodRow()
			row.hash = hash
			mutate(&row)
			ctx := context.Background()
			store, err := panel.Open(ctx, panel.Options{DSN: "sqlite://" + filepath.Join(t.TempDir(), "panel.db")})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = store.Close() }()
			insertRow(t, store, row)

			grants := tenancy.For([]v1.PanelAccessPolicy{{ObjectMeta: metav1.ObjectMeta{Name: "acme"},
				Spec: v1.PanelAccessPolicySpec{Namespaces: v1.PolicyNamespaces{Names: []string{"tenant"}},
					Emails: []v1.EmailPattern{"*@acme.io", "*@other.io"}, Adoption: &v1.AdoptionGrant{
						Mode: v1.AdoptionModeIfEmailAllowed, Emails: []v1.EmailPattern{"*@acme.io"}},
					Clients:        &v1.ClientGrant{Ownership: v1.OwnershipAllowed, UUIDs: []string{clientUUID}},
					MaxPermissions: v1.AllPermissions}}}, "tenant", nil)
			records, err := store.Records(ctx)
			if err != nil {
				t.Fatal(err)
			}
			o := &ImportOptions{Languages: []string{"en", "uk"}, HashCosts: password.DefaultCostRange}
			res, err := o.decide(ctx, store, "tenant", grants, o.selectRecords(records))
			if err != nil {
				t.Fatal(err)
			}
			if row.wantProblem == "" {
				if len(res.users) != 1 || len(res.skipped) != 0 || res.memberships != row.wantMembershipsCount {
					t.Fatalf("imported %d users and %d memberships, skipped %+v; want the user and its membership",
						len(res.users), res.memberships, res.skipped)
				}
				return
			}
			if len(res.users) != 0 || len(res.skipped) != 1 {
				t.Fatalf("imported %d users, skipped %d: want the user skipped whole", len(res.users), len(res.skipped))
			}
			if got := strings.Join(res.skipped[0].problems, "; "); !strings.Contains(got, row.wantProblem) {
				t.Errorf("the report says %q, want it to name %q", got, row.wantProblem)
			}
			if got := strings.Join(res.skipped[0].problems, "; "); strings.Contains(got, "$2y$") {
				t.Errorf("the report prints the hash: %q", got)
			}
		})
	}
}

const clientUUID = "5a1c2a44-0000-4000-8000-000000000001"

func insertRow(t *testing.T, store *panel.Store, r panelRow) {
	t.Helper()
	db := store.DB()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	const at = "2025-11-02 10:00:00"
	id := uuid.NewString()
	exec("INSERT INTO users (uuid, email, phone_number, password, status, two_factor, disable, firstname, lastname, "+
		"email_verified, phone_verified, language, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'Jane', ?, ?, 0, ?, ?, ?)",
		id, r.email, r.phone, r.hash, r.status, r.twoFactor, r.disable, r.lastname, r.emailVerified, r.language, at, at)
	if !r.noEmailRow {
		exec("INSERT INTO verifications (uuid, user_uuid, type, value, secret, device_name, verified, `default`, "+
			"created_at, updated_at) VALUES (?, ?, 'email', ?, '123456', 'system', ?, ?, ?, ?)",
			uuid.NewString(), id, r.email, r.emailVerified, r.totpRows == 0, at, at)
	}
	for i := range r.totpRows {
		exec("INSERT INTO verifications (uuid, user_uuid, type, value, secret, device_name, verified, `default`, "+
			"created_at, updated_at) VALUES (?, ?, 'totp', 'Phone', ?, 'Phone', 1, ?, ?, ?)",
			uuid.NewString(), id, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PX"+string(rune('A'+i)), i == 0, at, at)
	}
	exec("INSERT INTO clients (uuid, firstname, lastname, company_name, status, created_at, updated_at) "+
		"VALUES (?, 'Ann', 'Smith', 'Acme', 'active', ?, ?)", clientUUID, at, at)
	perms := r.memberPermissions
	if r.memberOwner {
		perms = `["manage-services"]`
	}
	exec("INSERT INTO client_x_user (client_uuid, user_uuid, owner, permissions, created_at, updated_at) "+
		"VALUES (?, ?, ?, ?, ?, ?)", clientUUID, id, r.memberOwner, perms, at, at)
	if r.boundTo != "" {
		ns, name, _ := strings.Cut(r.boundTo, "/")
		exec("INSERT INTO puq_operator_bindings (user_uuid, namespace, name, resource_uid, instance_id, cluster_id, "+
			"created_at, updated_at) VALUES (?, ?, ?, ?, 'x', '', ?, ?)", id, ns, name, uuid.NewString(), at, at)
	}
}

func TestImportSelectsUsersByEmailPatternClientAndStatus(t *testing.T) {
	records := []panel.Record{
		{UUID: "1", Email: "Jane@Acme.io", Status: "active", Memberships: []panel.RecordMembership{{ClientUUID: "C-1"}}},
		{UUID: "2", Email: "bob@acme.io", Status: "new"},
		{UUID: "3", Email: "eve@other.io", Status: "active", Memberships: []panel.RecordMembership{{ClientUUID: "c-2"}}},
	}
	for _, tc := range []struct {
		name string
		o    ImportOptions
		want string
	}{
		{"every user by default", ImportOptions{}, "Jane@Acme.io bob@acme.io eve@other.io"},
		{"an email pattern, compared as the panel compares", ImportOptions{Emails: []string{"jane@acme.io", "*@other.io"}},
			"Jane@Acme.io eve@other.io"},
		{"a client UUID in any case", ImportOptions{Clients: []string{"c-1"}}, "Jane@Acme.io"},
		{"a status", ImportOptions{Statuses: []string{"new"}}, "bob@acme.io"},
		{"all of them at once", ImportOptions{Emails: []string{"*@acme.io"}, Statuses: []string{"active"}, Clients: []string{"C-2"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range tc.o.selectRecords(records) {
				got = append(got, r.Email)
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("selected %q, want %q", strings.Join(got, " "), tc.want)
			}
		})
	}
}

func TestImportDirectoryKeepsUsersOutsideTheSelectionAndDropsThoseItSpeaksFor(t *testing.T) {
	dir := t.TempDir()
	user := func(name, email string, clients ...string) *imported {
		u := &v1.User{TypeMeta: metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "User"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "tenant"}, Spec: v1.UserSpec{Email: email}}
		in := &imported{user: u}
		for _, c := range clients {
			in.memberships = append(in.memberships, &v1.ClientMembership{
				TypeMeta:   metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "ClientMembership"},
				ObjectMeta: metav1.ObjectMeta{Name: name + "-" + c, Namespace: "tenant"},
				Spec:       v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: name}}})
		}
		return in
	}
	set := func(emails ...string) map[string]bool {
		out := map[string]bool{}
		for _, e := range emails {
			out[panel.NormalizeEmail(e)] = true
		}
		return out
	}
	files := func() string {
		var out []string
		for _, sub := range []string{usersDir, membershipsDir} {
			entries, _ := os.ReadDir(filepath.Join(dir, sub))
			for _, e := range entries {
				out = append(out, filepath.Join(sub, e.Name()))
			}
		}
		return strings.Join(out, " ")
	}
	inPanel := set("jane@acme.io", "bob@beta.io")
	// One domain, then the other, into the same directory: both stay.
	jane := set("jane@acme.io")
	if _, err := writeDirectory(dir, "tenant", []*imported{user("jane", "jane@acme.io", "c1", "c2")}, jane, inPanel); err != nil {
		t.Fatal(err)
	}
	if _, err := writeDirectory(dir, "tenant", []*imported{user("bob", "bob@beta.io", "c1")}, set("bob@beta.io"), inPanel); err != nil {
		t.Fatal(err)
	}
	if got, want := files(), "users/bob.yaml users/jane.yaml clientmemberships/bob-c1.yaml clientmemberships/jane-c1.yaml "+
		"clientmemberships/jane-c2.yaml"; got != want {
		t.Fatalf("files %q, want %q", got, want)
	}
	k, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil || !strings.Contains(string(k), "users/jane.yaml") || !strings.Contains(string(k), "users/bob.yaml") {
		t.Errorf("the kustomization does not list both users (%v):\n%s", err, k)
	}
	// jane again, with one association less: her other membership goes.
	if _, err := writeDirectory(dir, "tenant", []*imported{user("jane", "jane@acme.io", "c1")}, jane, inPanel); err != nil {
		t.Fatal(err)
	}
	if got, want := files(), "users/bob.yaml users/jane.yaml clientmemberships/bob-c1.yaml clientmemberships/jane-c1.yaml"; got != want {
		t.Fatalf("files %q, want %q", got, want)
	}
	// bob selected but skipped this time, and jane gone from the panel: both go.
	removed, err := writeDirectory(dir, "tenant", nil, set("bob@beta.io"), set("bob@beta.io"))
	if err != nil {
		t.Fatal(err)
	}
	if got := files(); got != "" {
		t.Errorf("files %q left, want none (removed %v)", got, removed)
	}
}

// TestImportDirectoryAppliesUsersBeforeTheirMemberships renders the directory as `kubectl apply
// -k` does: every User comes before every ClientMembership, so no membership is created before
// its User (each one that is waits once more, UserNotFound, and patches its status once more).
func TestImportDirectoryAppliesUsersBeforeTheirMemberships(t *testing.T) {
	dir := t.TempDir()
	names := []string{"zoe", "adam", "mia"}
	users := make([]*imported, 0, len(names))
	for _, name := range names {
		u := &v1.User{TypeMeta: metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "User"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "tenant"}, Spec: v1.UserSpec{Email: name + "@acme.io"}}
		m := &v1.ClientMembership{TypeMeta: metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "ClientMembership"},
			ObjectMeta: metav1.ObjectMeta{Name: name + "-c1", Namespace: "tenant"},
			Spec:       v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: name}}}
		users = append(users, &imported{user: u, memberships: []*v1.ClientMembership{m}})
	}
	all := map[string]bool{"zoe@acme.io": true, "adam@acme.io": true, "mia@acme.io": true}
	if _, err := writeDirectory(dir, "tenant", users, all, all); err != nil {
		t.Fatal(err)
	}
	objs, err := testenv.Kustomize(dir)
	if err != nil {
		t.Fatal(err)
	}
	kinds := make([]string, 0, len(objs))
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
	}
	if got, want := strings.Join(kinds, " "), "User User User ClientMembership ClientMembership ClientMembership"; got != want {
		t.Errorf("kustomize build gives %s, want %s", got, want)
	}
}

// --include-unset-language imports a panel user whose language is unset, saying the language
// applying writes; a user whose language is set writes none, and any other problem still skips.
func TestImportIncludesUnsetLanguageOnlyWhenAsked(t *testing.T) {
	hash, err := password.Hash("plum-Harbor-7-lantern", 10)
	if err != nil {
		t.Fatal(err)
	}
	grants := tenancy.For([]v1.PanelAccessPolicy{{ObjectMeta: metav1.ObjectMeta{Name: "acme"},
		Spec: v1.PanelAccessPolicySpec{Namespaces: v1.PolicyNamespaces{Names: []string{"tenant"}},
			Emails: []v1.EmailPattern{"*@acme.io"}, Adoption: &v1.AdoptionGrant{Mode: v1.AdoptionModeIfEmailAllowed},
			Clients: &v1.ClientGrant{UUIDs: []string{clientUUID}}, MaxPermissions: v1.AllPermissions}}}, "tenant", nil)
	cases := []struct {
		name         string
		mutate       func(*panelRow)
		include      bool
		setsLanguage string // "-" when skipped
	}{
		{"unset, not asked: skipped", func(r *panelRow) { r.language = nil }, false, "-"},
		{"unset, asked: imported writing the default", func(r *panelRow) { r.language = nil }, true, "uk"},
		{"empty, asked: imported writing the default", func(r *panelRow) { r.language = "" }, true, "uk"},
		{"set, asked: imported writing nothing", func(*panelRow) {}, true, ""},
		{"unset and closed, asked: still skipped", func(r *panelRow) { r.language, r.status = nil, "closed" }, true, "-"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			row := goodRow()
			row.hash = hash
			c.mutate(&row)
			ctx := context.Background()
			store, err := panel.Open(ctx, panel.Options{DSN: "sqlite://" + filepath.Join(t.TempDir(), "panel.db")})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = store.Close() }()
			insertRow(t, store, row)
			records, err := store.Records(ctx)
			if err != nil {
				t.Fatal(err)
			}
			o := &ImportOptions{Languages: []string{"en", "uk"}, DefaultLanguage: "uk", HashCosts: password.DefaultCostRange,
				IncludeUnsetLanguage: c.include}
			res, err := o.decide(ctx, store, "tenant", grants, o.selectRecords(records))
			if err != nil {
				t.Fatal(err)
			}
			got, why := "-", ""
			if len(res.users) == 1 {
				got = res.users[0].setsLanguage
			}
			for _, s := range res.skipped {
				why += strings.Join(s.problems, "; ")
			}
			if got != c.setsLanguage {
				t.Errorf("imported writing language %q (skipped because: %s), want %q", got, why, c.setsLanguage)
			}
		})
	}
}
