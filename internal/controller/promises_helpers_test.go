package controller_test

// Helpers for the tests of the README's promises (promises_test.go, bindings_test.go,
// secretwatch_test.go, hashslots_test.go): counted effects, shared panels, options.

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
)

func withInstanceID(id string) envOption { return func(e *env) { e.opts.InstanceID = id } }

func withReconcileWorkers(n int) envOption {
	return func(e *env) { e.opts.MaxConcurrentReconciles = n }
}

func withHashSlots(n int) envOption { return func(e *env) { e.opts.MaxConcurrentHashes = n } }

// newSharedPanel creates a MariaDB panel database that several managers can be started on.
func newSharedPanel(t *testing.T) (panel.Options, *sql.DB) {
	t.Helper()
	p, err := mariadb.NewPanel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Root.Close() })
	return panel.Options{DSN: p.DSN, PasswordFile: p.PasswordFile}, p.Root
}

// readyUserWithPassword creates a User and its password Secret and waits until it is Ready.
func (e *env) readyUserWithPassword(name, email, cleartext string) (*v1.User, string) {
	e.t.Helper()
	e.secret(name+"-password", map[string]string{"password": cleartext})
	u := e.newUser(name, email)
	e.create(u)
	return u, e.waitUser(u, v1.ReasonReconciled).Status.UUID
}

// setPassword replaces the data of a password Secret.
func (e *env) setPassword(secret, cleartext string) {
	e.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: secret}}
	update(e, s, func(s *corev1.Secret) { s.Data, s.StringData = nil, map[string]string{"password": cleartext} })
}

// passwordColumn is the stored hash of a panel user, to compare, never to print.
func (e *env) passwordColumn(userUUID string) string {
	e.t.Helper()
	return e.str("SELECT password FROM users WHERE uuid = ?", userUUID)
}

// panelTables are the tables the operator writes.
var panelTables = []string{"users", "verifications", "client_x_user", "activity_logs", "puq_operator_bindings",
	"puq_operator_membership_bindings"}

// tableChecksums is MariaDB's checksum of every row of the tables the operator writes: any change
// of any column of any row changes it.
func (e *env) tableChecksums() string {
	e.t.Helper()
	var b strings.Builder
	for _, table := range panelTables {
		var name string
		var sum sql.NullInt64
		if err := e.db.QueryRow("CHECKSUM TABLE "+table).Scan(&name, &sum); err != nil {
			e.t.Fatalf("CHECKSUM TABLE %s: %v", table, err)
		}
		fmt.Fprintf(&b, "%s=%d ", table, sum.Int64)
	}
	return b.String()
}

// writeStatements is how many data-changing statements the MariaDB server has run (every
// connection, the test's own included).
func (e *env) writeStatements() int {
	e.t.Helper()
	n, counters := int64(0), e.dbStatements()
	for _, c := range dbDataCounters {
		n += counters[c]
	}
	return int(n)
}

// registryValue is metricValue with its labels given as name/value pairs.
func registryValue(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	return metricValue(t, name, want)
}

// The metrics the promises are counted with.
const (
	metricHashes     = "puq_user_operator_bcrypt_hash_duration_seconds" // sample count: bcrypt hashes computed
	metricReconciles = "controller_runtime_reconcile_total"
	metricResync     = "puq_user_operator_resync_users_total"
)
