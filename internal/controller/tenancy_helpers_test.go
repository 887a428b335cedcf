package controller_test

// Helpers for the tenant attack suite (tenancy_attacks_test.go): tenant namespaces and identities,
// the policies an admin writes, and the panel rows a tenant must not touch.

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// asTenantNamespace labels the env's namespace with testenv.TenantLabel before its manager starts: the
// suite-wide policy no longer selects it, and it gets only the policies its test writes.
func asTenantNamespace(e *env) { e.labelNamespace(e.ns, testenv.TenantLabel, "true") }

// labelNamespace sets a label of the namespace, as the cluster admin.
func (e *env) labelNamespace(name, key, value string) {
	e.t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	update(e, ns, func(ns *corev1.Namespace) { metav1.SetMetaDataLabel(&ns.ObjectMeta, key, value) })
}

// alsoWatching makes the env's manager watch more namespaces than its own, as a manager started
// with several --namespace flags does.
func alsoWatching(namespaces ...string) envOption {
	return func(e *env) { e.opts.Namespaces = append(e.opts.Namespaces, namespaces...) }
}

// withHashCosts sets the bcrypt costs the manager accepts (and its own cost, which must be in them).
func withHashCosts(r password.CostRange) envOption {
	return func(e *env) { e.opts.HashCosts, e.opts.BcryptCost = r, r.Min }
}

// newTenantNamespace creates a namespace carrying testenv.TenantLabel.
func newTenantNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "tenant-",
		Labels: map[string]string{testenv.TenantLabel: "true"}}}
	if err := k8s.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// tenant is a team as a cluster admin sets it up: a ServiceAccount holding, in its namespace
// only, the shipped user-editor and clientmembership-editor roles and a Role for Secrets. Every
// object the team makes goes through c, which the API server authorizes as that ServiceAccount.
type tenant struct {
	e  *env
	ns string
	c  client.Client
}

// tenantOf sets up the tenant of namespace ns (on the env's manager: its own namespace, or one
// given to alsoWatching).
func (e *env) tenantOf(ns string) *tenant {
	e.t.Helper()
	sa := testenv.ServiceAccount{Namespace: ns, Name: "team"}
	if err := testenv.BindTenant(e.ctx(), k8s, sa); err != nil {
		e.t.Fatal(err)
	}
	c, err := client.New(sa.Impersonate(restConfig), client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		e.t.Fatal(err)
	}
	return &tenant{e: e, ns: ns, c: c}
}

func (tn *tenant) secret(name string, data map[string]string) {
	tn.e.t.Helper()
	if err := tn.c.Create(tn.e.ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tn.ns, Name: name},
		StringData: data}); err != nil {
		tn.e.t.Fatal(err)
	}
}

// user is a User of the tenant's namespace (not yet created) whose Secret holds testPassword.
func (tn *tenant) user(name, email string, mutate ...func(*v1.User)) *v1.User {
	u := tn.e.newUser(name, email, mutate...)
	u.Namespace = tn.ns
	return u
}

// createUser creates the User's password Secret (key password, cleartext testPassword) and the
// User, both as the tenant.
func (tn *tenant) createUser(u *v1.User) {
	tn.e.t.Helper()
	tn.secret(u.Spec.PasswordSecretRef.Name, map[string]string{"password": testPassword})
	tn.create(u)
}

func (tn *tenant) create(obj client.Object) {
	tn.e.t.Helper()
	obj.SetNamespace(tn.ns)
	if err := tn.c.Create(tn.e.ctx(), obj); err != nil {
		tn.e.t.Fatal(err)
	}
}

func (tn *tenant) delete(obj client.Object) {
	tn.e.t.Helper()
	if err := tn.c.Delete(tn.e.ctx(), obj); err != nil {
		tn.e.t.Fatal(err)
	}
}

// events are the Events in the tenant's namespace: what the team can read there.
func (tn *tenant) events() []eventsv1.Event {
	tn.e.t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(tn.e.ctx(), &list, client.InNamespace(tn.ns)); err != nil {
		tn.e.t.Fatal(err)
	}
	return list.Items
}

// waitEvent waits until an Event with the reason is recorded about obj.
func (tn *tenant) waitEvent(obj client.Object, reason string) {
	tn.e.t.Helper()
	tn.e.eventually(20*time.Second, func() string {
		for _, ev := range tn.events() {
			if ev.Regarding.UID == obj.GetUID() && ev.Reason == reason {
				return ""
			}
		}
		return fmt.Sprintf("no %s event about %s/%s yet", reason, tn.ns, obj.GetName())
	})
}

// grant creates a PanelAccessPolicy, as the cluster admin, and deletes it when the test ends.
func (e *env) grant(spec v1.PanelAccessPolicySpec) *v1.PanelAccessPolicy {
	e.t.Helper()
	p := &v1.PanelAccessPolicy{ObjectMeta: metav1.ObjectMeta{GenerateName: "tenancy-"}, Spec: spec}
	if err := k8s.Create(e.ctx(), p); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = k8s.Delete(e.ctx(), p) })
	return p
}

// emailsFor is a policy spec granting the namespaces these email patterns.
func emailsFor(namespaces []string, patterns ...v1.EmailPattern) v1.PanelAccessPolicySpec {
	return v1.PanelAccessPolicySpec{Namespaces: v1.PolicyNamespaces{Names: namespaces}, Emails: patterns}
}

// readyMessage is the message of the User's Ready condition once its reason is reason.
func (e *env) readyMessage(u *v1.User, reason string) string {
	e.t.Helper()
	return meta.FindStatusCondition(e.waitUser(u, reason).Status.Conditions, v1.ConditionReady).Message
}

// waitNotPermitted waits until the User's Ready condition says NotPermitted with a message
// containing words: one denial after another is told apart by its message.
func (e *env) waitNotPermitted(u *v1.User, words string) *v1.User {
	const reason = v1.ReasonNotPermitted
	e.t.Helper()
	got := &v1.User{}
	e.eventually(30*time.Second, func() string {
		if err := k8s.Get(e.ctx(), client.ObjectKeyFromObject(u), got); err != nil {
			return err.Error()
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
		if c == nil || c.Reason != reason || !strings.Contains(c.Message, words) || c.ObservedGeneration != got.Generation {
			return fmt.Sprintf("User %s Ready condition = %+v, want reason %s saying %q", u.Name, c, reason, words)
		}
		return ""
	})
	return got
}

// victim is a panel user made in the panel UI, as a tenant would find one to take over: an
// admin disabled it and marked it fraud; it has an email verification, an enrolled
// authenticator, and activity.
type victim struct {
	uuid, email string
}

// insertVictim writes the victim's rows as the panel does, straight into its database.
func (e *env) insertVictim(email string) victim {
	e.t.Helper()
	hash, err := password.Hash("victims-own-Password-9", 4)
	if err != nil {
		e.t.Fatal(err)
	}
	v := victim{uuid: newUUID(), email: email}
	const at = "2026-01-02 03:04:05"
	exec := func(query string, args ...any) {
		e.t.Helper()
		if _, err := e.db.Exec(query, args...); err != nil {
			e.t.Fatal(err)
		}
	}
	exec("INSERT INTO users (uuid, email, password, status, two_factor, `disable`, firstname, lastname, email_verified, "+
		"language, admin_notes, created_at, updated_at) VALUES (?, ?, ?, 'fraud', 1, 1, 'Vera', 'Victim', 1, 'en', "+
		"'chargeback 2026-01', ?, ?)", v.uuid, email, hash, at, at)
	exec("INSERT INTO verifications (uuid, user_uuid, type, value, secret, device_name, verified, `default`, "+
		"created_at, updated_at) VALUES (?, ?, 'email', ?, '', 'system', 1, 0, ?, ?)", newUUID(), v.uuid, email, at, at)
	exec("INSERT INTO verifications (uuid, user_uuid, type, value, secret, device_name, verified, `default`, "+
		"last_used_at, created_at, updated_at) VALUES (?, ?, 'totp', 'Phone', 'JBSWY3DPEHPK3PXPJBSWY3DP', 'Phone', 1, 1, ?, ?, ?)",
		newUUID(), v.uuid, at, at, at)
	for _, action := range []string{"login", "disabled by admin"} {
		exec("INSERT INTO activity_logs (uuid, user_uuid, level, action, description, ip_address, created_at, updated_at) "+
			"VALUES (?, ?, 'info', ?, 'from the panel UI', '203.0.113.7', ?, ?)", newUUID(), v.uuid, action, at, at)
	}
	return v
}

// victimTables are the rows of a panel user, by table: the column naming the user, and the order.
var victimTables = []struct{ table, column, order string }{
	{"users", "uuid", "uuid"},
	{"verifications", "user_uuid", "uuid"},
	{"client_x_user", "user_uuid", "client_uuid"},
	{"activity_logs", "user_uuid", "uuid"},
}

// rowsOf is every column of every row of the panel user in victimTables, as the database returns
// them (NULL apart from the empty string), keyed by table, row and column: two reads compare byte
// for byte, and a difference is named by key, never by value (a row holds a hash and a seed).
func (e *env) rowsOf(userUUID string) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, vt := range victimTables {
		e.rowsWhere(out, vt.table, vt.column, userUUID, vt.order)
	}
	return out
}

// clientColumns is every column of the client's row and of its client_x_user rows (see rowsOf).
func (e *env) clientColumns(clientUUID string) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	e.rowsWhere(out, "clients", "uuid", clientUUID, "uuid")
	e.rowsWhere(out, "client_x_user", "client_uuid", clientUUID, "user_uuid")
	return out
}

// rowsWhere adds to out every column of the table's rows whose column equals value. table,
// column and order are the test's own constants.
func (e *env) rowsWhere(out map[string]string, table, column, value, order string) {
	e.t.Helper()
	rows, err := e.db.Query("SELECT * FROM "+table+" WHERE "+column+" = ? ORDER BY "+order, value)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	cols, err := rows.Columns()
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			e.t.Fatal(err)
		}
		for i, c := range cols {
			v := "NULL"
			if vals[i] != nil {
				v = "=" + string(vals[i])
			}
			out[fmt.Sprintf("%s[%d].%s", table, n, c)] = v
		}
		n++
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	out[table+".rows"] = fmt.Sprint(n)
	if n == 0 && column == "uuid" {
		e.t.Fatalf("no %s row where %s = %s: the rows to compare are missing", table, column, value)
	}
}

// changedKeys names the keys whose values differ between two reads of rowsOf or clientColumns.
func changedKeys(before, after map[string]string) []string {
	var out []string
	for k, v := range before {
		if w, ok := after[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// untouched is what a test holds the panel to while a tenant is refused: the rows of some panel
// users and clients, every table the operator writes, and MariaDB's count of data-changing
// statements.
type untouched struct {
	e               *env
	users, clients  []string
	rows            []map[string]string
	sums            string
	writeStatements int
}

func (e *env) panelBefore(users, clients []string) *untouched {
	e.t.Helper()
	u := &untouched{e: e, users: users, clients: clients}
	u.rows = u.read()
	u.sums, u.writeStatements = e.tableChecksums(), e.writeStatements()
	return u
}

func (u *untouched) read() []map[string]string {
	out := make([]map[string]string, 0, len(u.users)+len(u.clients))
	for _, id := range u.users {
		out = append(out, u.e.rowsOf(id))
	}
	for _, id := range u.clients {
		out = append(out, u.e.clientColumns(id))
	}
	return out
}

// check fails the test for every write and changed row since untouched was called.
func (u *untouched) check(what string) {
	u.e.t.Helper()
	if n := u.e.writeStatements() - u.writeStatements; n != 0 {
		u.e.t.Errorf("%s: %d INSERT/UPDATE/DELETE statements, want 0", what, n)
	}
	if u.e.tableChecksums() != u.sums {
		u.e.t.Errorf("%s: the checksums of the tables the operator writes changed", what)
	}
	for i, now := range u.read() {
		if changed := changedKeys(u.rows[i], now); len(changed) > 0 {
			u.e.t.Errorf("%s: these columns of the victim's rows changed: %v", what, changed)
		}
	}
}

// leaks lists which of the secrets (names, UUIDs, other tenants' words) the text contains.
func leaks(text string, secrets ...string) []string {
	var out []string
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			out = append(out, s)
		}
	}
	return out
}
