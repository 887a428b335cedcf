package controller_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

var (
	restConfig *rest.Config
	k8s        client.Client
	mariadb    *testdb.MariaDB
	// managerConfig is what every test's manager runs with: the identity of the manager's
	// ServiceAccount, granted only the ClusterRole in config/rbac/role.yaml, at managerHost.
	managerConfig *rest.Config
	// managerHost is the address the manager reaches the API server at: another name for the
	// same server than the test's own client uses, so client-go's request metrics (labelled by
	// host) count the manager's requests apart from the test's.
	managerHost string
)

func TestMain(m *testing.M) {
	// What logs through controller-runtime's global logger (its informers) goes to stderr, where
	// TestCanaryPasswordNeverLeaks searches it, instead of being dropped unseen.
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	env, err := testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start the test control plane:", err)
		os.Exit(1)
	}
	if restConfig, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start kube-apiserver and etcd:", err)
		os.Exit(1)
	}
	code := 1
	defer func() {
		_ = env.Stop()
		if mariadb != nil {
			mariadb.Close()
		}
		os.Exit(code)
	}()
	if k8s, err = client.New(restConfig, client.Options{Scheme: env.Scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create a client:", err)
		return
	}
	if err = testenv.GrantEverything(context.Background(), k8s); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create the suite's PanelAccessPolicy:", err)
		return
	}
	if managerConfig, err = managerIdentity(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "cannot set up the manager's identity:", err)
		return
	}
	if mariadb, err = testdb.StartMariaDB(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start MariaDB for the tests:", err)
		return
	}
	code = m.Run()
}

// managerTestRole names the ClusterRole of config/rbac/role.yaml as the tests create it.
const managerTestRole = "puq-user-operator-test-manager-role"

// managerIdentity binds the ClusterRole of config/rbac/role.yaml, as read from disk, to the
// manager's ServiceAccount and returns a config that impersonates that ServiceAccount. A verb
// missing from role.yaml then fails the test that needs it, as it would fail the deployed
// operator.
func managerIdentity(ctx context.Context) (*rest.Config, error) {
	if err := testenv.BindManagerRole(ctx, k8s, managerTestRole, testenv.Manager); err != nil {
		return nil, err
	}
	cfg := testenv.Manager.Impersonate(restConfig)
	u, err := url.Parse(cfg.Host)
	if err != nil || u.Hostname() != "127.0.0.1" {
		return nil, fmt.Errorf("the API server is at %q, not 127.0.0.1: the manager cannot reach it by another name", cfg.Host)
	}
	u.Host = net.JoinHostPort("localhost", u.Port()) // envtest's serving certificate names localhost too
	cfg.Host, managerHost = u.String(), u.Host
	return cfg, nil
}

// env is one test's world: its own namespace, panel database and manager watching that namespace.
type env struct {
	t  *testing.T
	ns string
	// k8s is a client of the env's control plane (cp), with the test's own (admin) identity.
	k8s   client.Client
	cp    controlPlane
	store *panel.Store
	db    *sql.DB // a direct connection to the same panel database
	logs  *testenv.Output
	opts  controller.Options
	stop  context.CancelFunc
	done  chan struct{}

	// schema is the MariaDB database of the panel; "" on SQLite.
	schema string
}

type envOption func(*env)

func withResync(d time.Duration) envOption { return func(e *env) { e.opts.ResyncPeriod = d } }

// newEnv starts a manager for a fresh namespace against a fresh MariaDB panel database.
func newEnv(t *testing.T, options ...envOption) *env {
	t.Helper()
	p, err := mariadb.NewPanel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Root.Close() })
	// Statistics per table (information_schema.TABLE_STATISTICS), for counting what the
	// operator changed in this test's database; idempotent, and cheap.
	if _, err := p.Root.Exec("SET GLOBAL userstat = ON"); err != nil {
		t.Fatal(err)
	}
	return startEnv(t, panel.Options{DSN: p.DSN, PasswordFile: p.PasswordFile}, p.Root, options...)
}

// newSQLiteEnv starts a manager against a fresh embedded SQLite panel database.
func newSQLiteEnv(t *testing.T, options ...envOption) *env {
	t.Helper()
	return startEnv(t, panel.Options{DSN: "sqlite://" + filepath.Join(t.TempDir(), "panel.db")}, nil, options...)
}

// controlPlane is a kube-apiserver the tests use: a client with the test's identity, and the
// config the manager runs with there.
type controlPlane struct {
	k8s     client.Client
	manager *rest.Config
}

// mainControlPlane is the control plane TestMain started.
func mainControlPlane() controlPlane { return controlPlane{k8s: k8s, manager: managerConfig} }

func startEnv(t *testing.T, po panel.Options, direct *sql.DB, options ...envOption) *env {
	t.Helper()
	return startEnvOn(t, mainControlPlane(), "", po, direct, options...)
}

// startEnvOn starts a manager on the control plane cp for the namespace named namespace (a new
// generated name when ""), against the panel database of po.
func startEnvOn(t *testing.T, cp controlPlane, namespace string, po panel.Options, direct *sql.DB,
	options ...envOption) *env {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if namespace == "" {
		ns.GenerateName = "ctrl-"
	}
	if err := cp.k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	po.Observe = controller.ObserveDatabase
	store, err := panel.Open(context.Background(), po)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	e := &env{t: t, ns: ns.Name, k8s: cp.k8s, cp: cp, store: store, db: direct, logs: &testenv.Output{}, opts: controller.Options{
		InstanceID: "test", BcryptCost: 4, HashCosts: password.CostRange{Min: 4, Max: 14}, PasswordPolicy: password.Policy{MinLength: 12},
		Languages: []string{"en", "uk", "pl", "fr"}, TOTPIssuer: "PUQcloud", ResyncPeriod: time.Hour, MaxConcurrentReconciles: 2,
		MaxConcurrentHashes: 1,
	}}
	if e.db == nil {
		e.db = store.DB()
	} else if err := e.db.QueryRow("SELECT DATABASE()").Scan(&e.schema); err != nil {
		t.Fatal(err)
	}
	e.opts.Namespaces = []string{ns.Name}
	for _, o := range options {
		o(e)
	}
	e.start()
	return e
}

func (e *env) start() {
	t := e.t
	if e.opts.NamePrefix == "" {
		// Kept across restarts: a test counts its env's reconciles before and after one.
		e.opts.NamePrefix = fmt.Sprintf("m%d-", managerSerial.Add(1))
	}
	skip := true
	watched := map[string]cache.Config{}
	for _, ns := range e.opts.Namespaces {
		watched[ns] = cache.Config{}
	}
	mgr, err := ctrl.NewManager(e.cp.manager, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Logger:                 zap.New(zap.WriteTo(e.logs), zap.UseDevMode(true)),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{DefaultNamespaces: watched,
			DefaultTransform: cache.TransformStripManagedFields()},
		Client:     client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := controller.Setup(ctx, mgr, e.store, e.opts); err != nil {
		cancel()
		t.Fatal(err)
	}
	e.stop, e.done = cancel, make(chan struct{})
	go func() {
		defer close(e.done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(e.shutdown)
}

// shutdown stops the manager (idempotent).
func (e *env) shutdown() {
	if e.stop != nil {
		e.settle()
		e.stop()
		<-e.done
		e.stop = nil
	}
}

// managerSerial numbers the managers the tests start, for their controllers' names.
var managerSerial atomic.Int64

// controller is the name of the env's controller called base ("user", "clientmembership"), as
// its metrics label it.
func (e *env) controller(base string) string { return e.opts.NamePrefix + base }

// settle waits (up to 10 s) until both of the env's controllers have nothing queued or running,
// before its manager stops, so that the test's last events are handled rather than cut off.
func (e *env) settle() {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, users := reconciles(e.t, e.controller("user"))
		_, memberships := reconciles(e.t, e.controller("clientmembership"))
		if users && memberships {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restart runs a new manager on the same namespace and database.
func (e *env) restart() {
	e.shutdown()
	e.start()
}

func (e *env) ctx() context.Context { return context.Background() }

// kube is the client of the env's control plane: TestMain's unless the env runs on another one
// (startEnvOn).
func (e *env) kube() client.Client {
	if e.k8s == nil {
		return k8s
	}
	return e.k8s
}

func (e *env) secret(name string, data map[string]string) {
	e.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name}, StringData: data}
	if err := e.kube().Create(e.ctx(), s); err != nil {
		e.t.Fatal(err)
	}
}

// setJanePassword replaces the data of jane's password Secret.
func (e *env) setJanePassword(data map[string]string) {
	e.t.Helper()
	s := &corev1.Secret{}
	if err := e.kube().Get(e.ctx(), client.ObjectKey{Namespace: e.ns, Name: "jane-password"}, s); err != nil {
		e.t.Fatal(err)
	}
	s.Data, s.StringData = nil, data
	if err := e.kube().Update(e.ctx(), s); err != nil {
		e.t.Fatal(err)
	}
}

const testPassword = "plum-Harbor-7-lantern"

// newUser is a valid User whose Secret holds testPassword.
func (e *env) newUser(name, email string, mutate ...func(*v1.User)) *v1.User {
	e.t.Helper()
	u := &v1.User{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec: v1.UserSpec{
			Email: email, PasswordSecretRef: v1.SecretKeyReference{Name: name + "-password"},
			FirstName: "Jane", LastName: "Doe", Language: "en",
		},
	}
	for _, m := range mutate {
		m(u)
	}
	return u
}

func (e *env) create(obj client.Object) {
	e.t.Helper()
	if err := e.kube().Create(e.ctx(), obj); err != nil {
		e.t.Fatal(err)
	}
}

// update re-reads obj and applies mutate, retrying on conflicts.
func update[T client.Object](e *env, obj T, mutate func(T)) {
	e.t.Helper()
	for range 10 {
		if err := e.kube().Get(e.ctx(), client.ObjectKeyFromObject(obj), obj); err != nil {
			e.t.Fatal(err)
		}
		mutate(obj)
		err := e.kube().Update(e.ctx(), obj)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			e.t.Fatal(err)
		}
	}
	e.t.Fatal("update kept conflicting")
}

// eventually polls cond until it returns "" or the timeout passes, then fails with its last word.
func (e *env) eventually(timeout time.Duration, cond func() string) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("timed out after %s: %s", timeout, last)
}

// waitUser waits until the User's Ready condition has the reason and, for Ready, the current
// generation observed.
func (e *env) waitUser(u *v1.User, reason string) *v1.User {
	e.t.Helper()
	got := &v1.User{}
	e.eventually(30*time.Second, func() string {
		if err := e.kube().Get(e.ctx(), client.ObjectKeyFromObject(u), got); err != nil {
			return err.Error()
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
		if c == nil || c.Reason != reason || c.ObservedGeneration != got.Generation {
			return fmt.Sprintf("User %s Ready condition = %+v, want reason %s at generation %d", u.Name, c, reason, got.Generation)
		}
		return ""
	})
	return got
}

func (e *env) waitMembership(m *v1.ClientMembership, reason string) *v1.ClientMembership {
	e.t.Helper()
	got := &v1.ClientMembership{}
	e.eventually(30*time.Second, func() string {
		if err := e.kube().Get(e.ctx(), client.ObjectKeyFromObject(m), got); err != nil {
			return err.Error()
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
		if c == nil || c.Reason != reason || c.ObservedGeneration != got.Generation {
			return fmt.Sprintf("ClientMembership %s Ready condition = %+v, want reason %s", m.Name, c, reason)
		}
		return ""
	})
	return got
}

func (e *env) waitGone(obj client.Object) {
	e.t.Helper()
	e.waitGoneWithin(obj, 30*time.Second)
}

func (e *env) waitGoneWithin(obj client.Object, timeout time.Duration) {
	e.t.Helper()
	e.eventually(timeout, func() string {
		err := e.kube().Get(e.ctx(), client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			return ""
		}
		return fmt.Sprintf("%s still exists (err %v, finalizers %v)", obj.GetName(), err, obj.GetFinalizers())
	})
}

// loginTime is the instant every login in these tests is made at, and the instant their TOTP codes
// are computed for: the same instant on both sides, so a code can never cross a 30 s boundary
// between the authenticator and the panel. Nothing else in a password login depends on the time.
var loginTime = time.Date(2026, time.March, 2, 9, 30, 15, 0, time.UTC)

// login asks the panel, the way its client area decides (testdb.Login), whether the email and
// cleartext password, and code at the second step ("" for none yet), log the person in at
// loginTime. It needs the MariaDB panel database (newEnv); on SQLite use phpVerifies.
func (e *env) login(email, cleartext, code string) testdb.LoginResult {
	e.t.Helper()
	return e.loginAt(loginTime, email, cleartext, code)
}

// loginAt is login at another instant than loginTime.
func (e *env) loginAt(at time.Time, email, cleartext, code string) testdb.LoginResult {
	e.t.Helper()
	if e.schema == "" {
		e.t.Fatal("the login check reads the panel database as MariaDB does (UNIX_TIMESTAMP): use newEnv")
	}
	res, err := testdb.Login{Email: email, Password: cleartext, Code: code, At: at}.Try(e.ctx(), e.db)
	if err != nil {
		e.t.Fatalf("the login check failed: %v", err)
	}
	return res
}

// loginOutcome describes a login result for a failure message; it never holds what was typed.
func loginOutcome(res testdb.LoginResult) string {
	return fmt.Sprintf("ok=%v %d %q (two-factor %v, method %q)", res.OK, res.Status, res.Message, res.TwoFactorRequired, res.Method)
}

// loggedIn is "" when the panel logged the person in, else what it answered instead.
func loggedIn(res testdb.LoginResult) string {
	if res.OK && res.Status == 200 && res.Message == "Successful authorization" {
		return ""
	}
	return "the panel refuses the login: " + loginOutcome(res)
}

// codeAsked is "" when the panel stopped at the second step, asking for a code checked against
// the default verification row of the method ("totp", "email"), else what it answered instead.
func codeAsked(res testdb.LoginResult, method string) string {
	if !res.OK && res.Status == 200 && res.Message == "" && res.TwoFactorRequired && res.Method == method {
		return ""
	}
	return fmt.Sprintf("want the panel to ask for a %s code, it answers %s", method, loginOutcome(res))
}

// wantCodeAsked fails the test unless the panel asks for a code of the method.
func (e *env) wantCodeAsked(what string, res testdb.LoginResult, method string) {
	e.t.Helper()
	if msg := codeAsked(res, method); msg != "" {
		e.t.Errorf("%s: %s", what, msg)
	}
}

// wantLogsIn fails the test unless the panel logged the person in.
func (e *env) wantLogsIn(what string, res testdb.LoginResult) {
	e.t.Helper()
	if msg := loggedIn(res); msg != "" {
		e.t.Errorf("%s: %s", what, msg)
	}
}

// wantRefused fails the test unless the panel refused the login with the status and message.
func (e *env) wantRefused(what string, res testdb.LoginResult, status int, message string) {
	e.t.Helper()
	if res.OK || res.Status != status || res.Message != message {
		e.t.Errorf("%s: the panel answers %s, want a refusal %d %q", what, loginOutcome(res), status, message)
	}
}

func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRow(query, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (e *env) str(query string, args ...any) string {
	e.t.Helper()
	var v sql.NullString
	if err := e.db.QueryRow(query, args...).Scan(&v); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return v.String
}

func (e *env) insertClient(company string) string {
	e.t.Helper()
	id := newUUID()
	if _, err := e.db.Exec("INSERT INTO clients (uuid, firstname, lastname, company_name, tax_id, status, created_at, updated_at) "+
		"VALUES (?, 'Ann', 'Smith', ?, ?, 'active', '2026-01-01 00:00:00', '2026-01-01 00:00:00')", id, company, "TAX-"+company); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// eventReasons lists the reasons of the events about an object.
func (e *env) eventReasons(obj client.Object) []string {
	e.t.Helper()
	var list eventsv1.EventList
	if err := e.kube().List(e.ctx(), &list, client.InNamespace(e.ns)); err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		if ev.Regarding.UID == obj.GetUID() {
			out = append(out, ev.Reason)
		}
	}
	return out
}

// allEventText is every event note in the namespace, for leak checks.
func (e *env) allEventText() string {
	var list eventsv1.EventList
	if err := e.kube().List(e.ctx(), &list, client.InNamespace(e.ns)); err != nil {
		e.t.Fatal(err)
	}
	var b strings.Builder
	for _, ev := range list.Items {
		b.WriteString(ev.Reason + " " + ev.Note + "\n")
	}
	return b.String()
}

func contains(list []string, v string) bool { return slices.Contains(list, v) }

// waitEvent waits until an Event with the reason is recorded about obj: the manager writes
// events asynchronously, after the reconcile that emits them has returned.
func (e *env) waitEvent(obj client.Object, reason string) {
	e.t.Helper()
	e.eventually(20*time.Second, func() string {
		if reasons := e.eventReasons(obj); !contains(reasons, reason) {
			return fmt.Sprintf("no %s event about %s yet; events: %v", reason, obj.GetName(), reasons)
		}
		return ""
	})
}

// eventsEmitted counts the events the manager emitted with the reason ("" for any reason): its
// event broadcaster logs every one, repeats included. Event objects cannot count them: the
// recorder merges a repeat into its first event's series, and writes later repeats not at all.
func (e *env) eventsEmitted(reason string) int {
	pattern := `"reason": ?"[^"]*"`
	if reason != "" {
		pattern = `"reason": ?"` + regexp.QuoteMeta(reason) + `"`
	}
	return len(regexp.MustCompile(`(?m)Event occurred[^\n]*`+pattern).FindAllStringIndex(e.logs.String(), -1))
}

// apiRequests counts the requests the manager made to the API server so far, by HTTP method, from
// client-go's rest_client_requests_total in the controller-runtime registry. The counter is the
// process's; only the manager talks to the API server at managerHost.
func apiRequests(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, method := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		out[method] = metricValue(t, "rest_client_requests_total", map[string]string{"host": managerHost, "method": method})
	}
	return out
}

// apiWriteMethods are the HTTP methods that change something on the API server.
var apiWriteMethods = []string{"POST", "PUT", "PATCH", "DELETE"}

// dbDataCounters are MariaDB's counters of data-changing statements, as the bench reads them.
var dbDataCounters = []string{"Com_insert", "Com_insert_select", "Com_update", "Com_update_multi", "Com_delete",
	"Com_delete_multi", "Com_replace", "Com_replace_select"}

// dbWriteCounters are those and the transaction counters: a no-op must not even take a locking
// transaction that ends up writing nothing.
var dbWriteCounters = append(slices.Clone(dbDataCounters), "Com_begin", "Com_commit", "Com_rollback")

// dbStatements reads MariaDB's data-changing statement counters. They count the whole server:
// the tests of this package run one at a time, so its only writer is the current test's manager
// (as long as the test itself writes nothing meanwhile).
func (e *env) dbStatements() map[string]int64 {
	e.t.Helper()
	if e.schema == "" {
		e.t.Fatal("dbStatements needs a MariaDB panel database (newEnv)")
	}
	rows, err := e.db.Query("SHOW GLOBAL STATUS WHERE Variable_name IN (?"+strings.Repeat(", ?", len(dbWriteCounters)-1)+")",
		toAny(dbWriteCounters)...)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var v int64
		if err := rows.Scan(&name, &v); err != nil {
			e.t.Fatal(err)
		}
		out[name] = v
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	if len(out) != len(dbWriteCounters) {
		e.t.Fatalf("MariaDB reports %d of the %d statement counters: %v", len(out), len(dbWriteCounters), out)
	}
	return out
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// tableStats is what has happened to the rows of one table.
type tableStats struct{ read, changed int64 }

// tableStatistics reads the rows read and changed so far per table of the env's own database
// (information_schema.TABLE_STATISTICS, with userstat on). Rows an UPDATE leaves as they were
// are not changed rows; dbStatements counts such statements.
func (e *env) tableStatistics() map[string]tableStats {
	e.t.Helper()
	rows, err := e.db.Query("SELECT table_name, rows_read, rows_changed FROM information_schema.table_statistics "+
		"WHERE table_schema = ?", e.schema)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	out := map[string]tableStats{}
	for rows.Next() {
		var name string
		var st tableStats
		if err := rows.Scan(&name, &st.read, &st.changed); err != nil {
			e.t.Fatal(err)
		}
		out[name] = st
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// reconciles counts the reconciles the controller called name has finished, and reports whether it is
// idle: nothing queued and nothing running.
func reconciles(t *testing.T, name string) (done float64, idle bool) {
	t.Helper()
	on := map[string]string{"controller": name}
	done = metricValue(t, "controller_runtime_reconcile_total", on)
	idle = metricValue(t, "controller_runtime_active_workers", on) == 0 && metricValue(t, "workqueue_depth", on) == 0
	return done, idle
}

// waitReconciles waits until the controller called name has finished n more reconciles and is idle.
func (e *env) waitReconciles(name string, n int) {
	e.t.Helper()
	e.waitReconcilesSince(name, e.reconcilesDone(name), n)
}

// reconcilesDone is how many reconciles the env's controller called base has finished: read it
// before an action whose reconcile may finish before waitReconcilesSince is called.
func (e *env) reconcilesDone(base string) float64 {
	e.t.Helper()
	done, _ := reconciles(e.t, e.controller(base))
	return done
}

// waitReconcilesSince waits until n more reconciles than start have finished and nothing is
// queued or running.
func (e *env) waitReconcilesSince(name string, start float64, n int) {
	e.t.Helper()
	name = e.controller(name)
	e.eventually(30*time.Second, func() string {
		done, idle := reconciles(e.t, name)
		if done-start < float64(n) || !idle {
			return fmt.Sprintf("%s controller: %v of %d reconciles finished, idle %v", name, done-start, n, idle)
		}
		return ""
	})
}
