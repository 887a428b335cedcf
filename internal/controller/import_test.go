package controller_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/puqctl"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
	"github.com/puqcloud/puq-user-operator/internal/totp"
)

// seededUser is a panel user made the panel's way: a bcrypt hash of cost 12 ($2y$), its email
// verification row, a TOTP row when it enrolled an authenticator.
type seededUser struct {
	uuid, email, cleartext, seed string
}

// importPanel is a panel database seeded with users of every kind import meets.
type importPanel struct {
	p                      *testdb.Panel
	alice, bob, carol      seededUser
	mallory, frank, dave   seededUser
	acme, beta             string
	allPermissions, member string
}

func seedImportPanel(t *testing.T) *importPanel {
	t.Helper()
	p, err := mariadb.NewPanel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Root.Close() })
	if _, err := p.Root.Exec("SET GLOBAL userstat = ON"); err != nil {
		t.Fatal(err)
	}
	ip := &importPanel{p: p, allPermissions: `["modify-master-profile","manage-users","manage-services","manage-domains",` +
		`"manage-invoices","manage-support-tickets","manage-affiliate","manage-orders"]`,
		member: `["manage-services","manage-invoices"]`}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := p.Root.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	hash12 := func(cleartext string) string {
		t.Helper()
		h, err := password.Hash(cleartext, 12)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	const created = "2025-11-02 10:00:00"
	user := func(email, cleartext, hash, status string, disable, twoFactor, emailVerified bool, phone, lang, notes any) seededUser {
		t.Helper()
		u := seededUser{uuid: newUUID(), email: email, cleartext: cleartext}
		if hash == "" {
			hash = hash12(cleartext)
		}
		exec("INSERT INTO users (uuid, email, phone_number, password, status, two_factor, disable, firstname, lastname, "+
			"email_verified, phone_verified, language, admin_notes, created_at, updated_at) "+
			"VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'Example', ?, ?, ?, ?, ?, ?)",
			u.uuid, email, phone, hash, status, twoFactor, disable, strings.Split(email, "@")[0], emailVerified,
			phone != nil, lang, notes, created, created)
		exec("INSERT INTO verifications (uuid, user_uuid, type, value, secret, device_name, verified, `default`, "+
			"expires_at, created_at, updated_at) VALUES (?, ?, 'email', ?, '483920', 'system', ?, 1, ?, ?, ?)",
			newUUID(), u.uuid, email, emailVerified, created, created, created)
		return u
	}
	ip.alice = user("alice@acme.io", "plum-Harbor-7-lantern", "", "active", false, true, true, "+380501234567", "en", "VIP")
	key, err := totp.Issue("PUQcloud", ip.alice.email)
	if err != nil {
		t.Fatal(err)
	}
	ip.alice.seed = key.Secret
	// Enrolled in the panel: the authenticator row becomes the default.
	exec("UPDATE verifications SET `default` = 0 WHERE user_uuid = ?", ip.alice.uuid)
	exec("INSERT INTO verifications (uuid, user_uuid, type, value, secret, device_name, verified, `default`, "+
		"last_used_at, created_at, updated_at) VALUES (?, ?, 'totp', 'Pixel 9', ?, 'Pixel 9', 1, 1, ?, ?, ?)",
		newUUID(), ip.alice.uuid, ip.alice.seed, created, "2025-11-03 08:00:00", "2025-11-03 08:00:00")
	ip.bob = user("bob@acme.io", "quartz-Meadow-4-violin", "", "new", false, false, false, nil, "uk", nil)
	ip.carol = user("carol@beta.io", "amber-Canyon-9-tulip", "", "inactive", true, true, true, nil, "pl", nil)
	ip.mallory = user("mallory@acme.io", "x", "md5$0cc175b9c0f1b6a831c399e269772661", "active", false, false, true, nil, "en", nil)
	ip.frank = user("frank@acme.io", "river-Stone-2-maple", "", "fraud", true, false, true, nil, "en", nil)
	ip.dave = user("dave@acme.io", "cedar-Lake-5-opal", "", "active", false, false, true, "050 123 4567", "en", nil)
	newClient := func(company string) string {
		id := newUUID()
		exec("INSERT INTO clients (uuid, firstname, lastname, company_name, tax_id, status, created_at, updated_at) "+
			"VALUES (?, 'Ann', 'Smith', ?, ?, 'active', ?, ?)", id, company, "TAX-"+company, created, created)
		return id
	}
	ip.acme, ip.beta = newClient("Acme"), newClient("Beta")
	link := func(c string, u seededUser, owner bool, perms string) {
		exec("INSERT INTO client_x_user (client_uuid, user_uuid, owner, permissions, created_at, updated_at) "+
			"VALUES (?, ?, ?, ?, ?, ?)", c, u.uuid, owner, perms, created, created)
	}
	link(ip.acme, ip.alice, true, ip.allPermissions)
	link(ip.acme, ip.bob, false, ip.member)
	link(ip.beta, ip.bob, false, ip.member)
	link(ip.beta, ip.carol, true, ip.allPermissions)
	link(ip.acme, ip.mallory, false, ip.member)
	return ip
}

// panelChecksums are CHECKSUM TABLE of every panel table, the operator's own tables left out.
func panelChecksums(t *testing.T, p *testdb.Panel) map[string]string {
	t.Helper()
	rows, err := p.Root.Query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() " +
		"AND table_name NOT LIKE 'puq\\_operator\\_%'")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	_ = rows.Close()
	out := map[string]string{}
	for _, table := range tables {
		var name, sum string
		if err := p.Root.QueryRow("CHECKSUM TABLE `"+table+"`").Scan(&name, &sum); err != nil {
			t.Fatal(err)
		}
		out[table] = sum
	}
	if len(out) < 5 {
		t.Fatalf("found %d panel tables, want the whole panel schema", len(out))
	}
	return out
}

// adminKubeconfig writes a kubeconfig for the test's own (admin) identity, for the plugin's
// --kubeconfig.
func adminKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: restConfig.Host, CertificateAuthorityData: restConfig.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: restConfig.CertData,
		ClientKeyData: restConfig.KeyData, Token: restConfig.BearerToken}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	cfg.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// runImport runs `kubectl puq import` with the args and returns what it printed.
func runImport(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := puqctl.NewRootCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(append([]string{"import"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("kubectl puq import: %v\n%s%s", err, out.String(), errOut.String())
	}
	return out.String() + errOut.String()
}

// readTree is every file under dir, by relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(dir, path)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// applyKustomization builds dir with kustomize and creates every object it renders, as
// `kubectl apply -k` would on a fresh namespace.
func applyKustomization(t *testing.T, c client.Client, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := testenv.Kustomize(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if err := c.Create(context.Background(), u); err != nil {
			t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	return objs
}

func TestImportedPanelIsAdoptedWithoutWritingToPanelTablesAndEveryoneStillLogsIn(t *testing.T) {
	ip := seedImportPanel(t)
	e := startEnv(t, panel.Options{DSN: ip.p.DSN, PasswordFile: ip.p.PasswordFile}, ip.p.Root)
	kubeconfig := adminKubeconfig(t)
	dir := filepath.Join(t.TempDir(), "users")
	args := []string{"--kubeconfig", kubeconfig, "-n", e.ns, "--panel-dsn", ip.p.DSN, "--panel-password-file",
		ip.p.PasswordFile, "-o", dir}

	before := panelChecksums(t, ip.p)
	statsBefore := e.tableStatistics()
	report := runImport(t, args...)
	if got := panelChecksums(t, ip.p); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("the import itself changed panel tables:\nbefore %v\nafter  %v", before, got)
	}
	for _, want := range []string{
		"Imported 3 users and 4 client memberships",
		"mallory@acme.io (" + ip.mallory.uuid + "): password: the stored value is not a bcrypt hash",
		"frank@acme.io (" + ip.frank.uuid + "): status fraud",
		"dave@acme.io (" + ip.dave.uuid + "): phone \"050 123 4567\" is not E.164",
		"Secrets in namespace " + e.ns + ": 4 created, 0 updated, 0 unchanged",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "md5$") || strings.Contains(report, ip.alice.seed) {
		t.Error("the report prints a stored password hash or a TOTP seed")
	}
	first := readTree(t, dir)
	for path, b := range first {
		if strings.Contains(path, "mallory") || strings.Contains(string(b), "mallory@") {
			t.Errorf("the skipped user mallory is half-imported: %s", path)
		}
		if strings.Contains(string(b), "$2y$") || strings.Contains(string(b), ip.alice.seed) {
			t.Errorf("%s holds a password hash or a TOTP seed: Secrets stay off disk by default", path)
		}
	}

	objs := applyKustomization(t, e.kube(), dir)
	if len(objs) != 7 {
		t.Fatalf("the kustomization renders %d objects, want 3 Users and 4 ClientMemberships", len(objs))
	}
	for _, o := range objs {
		if o.GetKind() == "User" {
			e.waitUser(&v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: o.GetName()}}, v1.ReasonReconciled)
		} else {
			e.waitMembership(&v1.ClientMembership{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: o.GetName()}},
				v1.ReasonReconciled)
		}
	}
	e.settle()

	if got := panelChecksums(t, ip.p); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("applying the import changed panel tables:\nbefore %v\nafter  %v", before, got)
	}
	statsAfter := e.tableStatistics()
	for table, st := range statsAfter {
		if strings.HasPrefix(table, "puq_operator_") {
			continue
		}
		if d := st.changed - statsBefore[table].changed; d != 0 {
			t.Errorf("table %s: %d rows changed by the import and its adoption, want 0", table, d)
		}
	}
	if n := e.count("SELECT COUNT(*) FROM puq_operator_bindings"); n != 3 {
		t.Errorf("%d binding rows, want one per imported user (3)", n)
	}

	// Everyone logs in as before: their old password and their old authenticator.
	e.wantCodeAsked("alice, password only", e.login(ip.alice.email, ip.alice.cleartext, ""), "totp")
	e.wantLogsIn("alice with her authenticator's code", e.login(ip.alice.email, ip.alice.cleartext,
		oathtoolCode(t, ip.alice.seed, loginTime)))
	e.wantLogsIn("bob", e.login(ip.bob.email, ip.bob.cleartext, ""))
	if !e.storedHashVerifies(ip.carol.uuid, ip.carol.cleartext) {
		t.Error("carol's stored hash no longer verifies her password")
	}

	// The imported TOTP Secret is now the User's.
	totpSecret := &corev1.Secret{}
	aliceName := ""
	for _, o := range objs {
		if o.GetKind() == "User" && strings.HasPrefix(o.GetName(), "alice-") {
			aliceName = o.GetName()
		}
	}
	if err := e.kube().Get(e.ctx(), client.ObjectKey{Namespace: e.ns, Name: aliceName + "-totp"}, totpSecret); err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(totpSecret); ref == nil || ref.Kind != "User" || ref.Name != aliceName {
		t.Errorf("alice's imported TOTP Secret is controlled by %+v, want her User", ref)
	}

	// Again: the same bytes, no Secret written, still nothing in the panel.
	report = runImport(t, args...)
	if !strings.Contains(report, "Secrets in namespace "+e.ns+": 0 created, 0 updated, 4 unchanged") {
		t.Errorf("the second import wrote Secrets:\n%s", report)
	}
	second := readTree(t, dir)
	if fmt.Sprint(keys(second)) != fmt.Sprint(keys(first)) {
		t.Errorf("the second import wrote other files: %v, first %v", keys(second), keys(first))
	}
	for path, b := range first {
		if !bytes.Equal(second[path], b) {
			t.Errorf("%s differs on the second import", path)
		}
	}
	if got := panelChecksums(t, ip.p); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("the second import changed panel tables")
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestImportWithSecretsDirWritesOwnerOnlyFilesAndNothingToTheClusterOrThePanel(t *testing.T) {
	ip := seedImportPanel(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "import-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	// The panel is reached the operator's way: the DSN and password from its Secret (--dsn-secret).
	dbPassword, err := os.ReadFile(ip.p.PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	operatorNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "operator-"}}
	if err := k8s.Create(context.Background(), operatorNS); err != nil {
		t.Fatal(err)
	}
	dsnSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS.Name, Name: "panel-db"},
		Data: map[string][]byte{"dsn": []byte(ip.p.DSN), "password": dbPassword}}
	if err := k8s.Create(context.Background(), dsnSecret); err != nil {
		t.Fatal(err)
	}
	before := panelChecksums(t, ip.p)
	dir, secrets := filepath.Join(t.TempDir(), "users"), filepath.Join(t.TempDir(), "secrets")
	t.Setenv(panel.PasswordEnv, "")
	report := runImport(t, "--kubeconfig", adminKubeconfig(t), "-n", ns.Name, "--dsn-secret", operatorNS.Name+"/panel-db",
		"-o", dir, "--secrets-dir", secrets)
	if !strings.Contains(report, "Imported 3 users") {
		t.Errorf("the report: %s", report)
	}
	var list corev1.SecretList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns.Name)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("%d Secrets created in the cluster with --secrets-dir, want none", len(list.Items))
	}
	files := readTree(t, secrets)
	if len(files) != 4 {
		t.Errorf("%d files in --secrets-dir, want 4 (3 password Secrets, 1 TOTP Secret): %v", len(files), keys(files))
	}
	for name, b := range files {
		st, err := os.Stat(filepath.Join(secrets, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, st.Mode().Perm())
		}
		s := &corev1.Secret{}
		if err := yaml.Unmarshal(b, s); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, "-password.yaml") && !strings.HasPrefix(string(s.Data[v1.PasswordKeyHash]), "$2y$12$") {
			t.Errorf("%s does not hold the panel's cost-12 hash under key %s", name, v1.PasswordKeyHash)
		}
		if strings.HasSuffix(name, "-totp.yaml") && string(s.Data["secret"]) != ip.alice.seed {
			t.Errorf("%s does not hold alice's seed", name)
		}
	}
	if st, err := os.Stat(secrets); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("--secrets-dir is %v (%v), want mode 0700", st.Mode().Perm(), err)
	}
	if got := panelChecksums(t, ip.p); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("the import changed panel tables")
	}
	var tables int
	if err := ip.p.Root.QueryRow("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() " +
		"AND table_name LIKE 'puq\\_operator\\_%'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("the import created %d of the operator's tables in the panel database, want none", tables)
	}
}

// A panel user whose language is unset (never visited the client area) is skipped by default,
// the report naming the flag; with --include-unset-language it is imported, the report says
// applying writes language = en once, and applying writes exactly that: one changed users row
// (its language) and one activity row, nothing else in any panel table.
func TestImportOfAUserWithUnsetLanguageSaysTheOneWriteApplyingMakes(t *testing.T) {
	ip := seedImportPanel(t)
	e := startEnv(t, panel.Options{DSN: ip.p.DSN, PasswordFile: ip.p.PasswordFile}, ip.p.Root)
	const created = "2025-11-02 10:00:00"
	h, err := password.Hash("linen-Harbor-3-comet", 12)
	if err != nil {
		t.Fatal(err)
	}
	nora := newUUID()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO users (uuid, email, password, status, two_factor, disable, firstname, lastname, email_verified, " +
			"phone_verified, language, created_at, updated_at) VALUES (?, 'nora@acme.io', ?, 'new', 0, 0, 'Nora', " +
			"'Example', 1, 0, NULL, ?, ?)", []any{nora, h, created, created}},
		{"INSERT INTO verifications (uuid, user_uuid, type, value, secret, device_name, verified, `default`, expires_at, " +
			"created_at, updated_at) VALUES (?, ?, 'email', 'nora@acme.io', '483920', 'system', 1, 1, ?, ?, ?)",
			[]any{newUUID(), nora, created, created, created}},
	} {
		if _, err := ip.p.Root.Exec(q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "users")
	args := make([]string, 0, 14)
	args = append(args, "--kubeconfig", adminKubeconfig(t), "-n", e.ns, "--panel-dsn", ip.p.DSN, "--panel-password-file",
		ip.p.PasswordFile, "--email", "nora@acme.io", "-o", dir)

	report := runImport(t, args...)
	want := "nora@acme.io (" + nora + "): language is unset in the panel: applying would write language = en once"
	if !strings.Contains(report, want) || !strings.Contains(report, "--include-unset-language") ||
		!strings.Contains(report, "Imported 0 users") {
		t.Errorf("without the flag the report lacks %q and the flag's name:\n%s", want, report)
	}

	report = runImport(t, append(args, "--include-unset-language")...)
	for _, want := range []string{"Imported 1 users", "applying writes 1 users their language once",
		"nora@acme.io (" + nora + "): language = en"} {
		if !strings.Contains(report, want) {
			t.Errorf("with --include-unset-language the report lacks %q:\n%s", want, report)
		}
	}
	stats, activity := e.tableStatistics(), e.count("SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ?", nora)
	for _, o := range applyKustomization(t, e.kube(), dir) {
		if o.GetKind() == "User" {
			e.waitUser(&v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: o.GetName()}}, v1.ReasonReconciled)
		}
	}
	e.settle()
	if got := e.str("SELECT language FROM users WHERE uuid = ?", nora); got != "en" {
		t.Errorf("nora's language = %q, want en", got)
	}
	if n := e.count("SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ?", nora) - activity; n != 1 {
		t.Errorf("%d activity rows for nora, want 1", n)
	}
	for table, st := range e.tableStatistics() {
		want := int64(0)
		switch {
		case strings.HasPrefix(table, "puq_operator_"):
			continue
		case table == "users", table == "activity_logs":
			want = 1
		}
		if d := st.changed - stats[table].changed; d != want {
			t.Errorf("table %s: %d rows changed by applying, want %d", table, d, want)
		}
	}
}
