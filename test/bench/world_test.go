package main

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// The no-op resync on SQLite counts a database write when the fingerprint of the panel's rows
// changes, so the fingerprint must change with any one value: the float fingerprint it replaces
// hashed a one-day change of users.updated_at to the same number.
func TestSQLiteFingerprintChangesWithAnyValue(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "panel.db")
	store, err := panel.Open(ctx, panel.Options{DSN: "sqlite://" + path}) // the panel's tables, as the operator creates them
	if err != nil {
		t.Fatalf("cannot create the SQLite panel database: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	rw := store.DB()
	const userUUID, stamp = "0b5f1f4e-6d1c-4f0e-9a55-3c3b0f0a0001", "2026-11-27 10:00:00"
	for _, stmt := range []struct {
		query string
		args  []any
	}{
		{"INSERT INTO users (uuid, email, password, firstname, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
			[]any{userUUID, "ada@example.com", "not-a-hash", "Ada", stamp, stamp}},
		{"INSERT INTO verifications (uuid, user_uuid, type, value, secret, device_name, verified, created_at, updated_at) " +
			"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
			[]any{"0b5f1f4e-6d1c-4f0e-9a55-3c3b0f0a0002", userUUID, "email", "ada@example.com", "", "", 1, stamp, stamp}},
		{"INSERT INTO puq_operator_bindings (user_uuid, namespace, name, resource_uid, instance_id, secret_version, updated_at) " +
			"VALUES (?, ?, ?, ?, ?, ?, ?)", []any{userUUID, "team", "ada", "uid-1", "bench", "uid-s/1", stamp}},
	} {
		if _, err := rw.ExecContext(ctx, stmt.query, stmt.args...); err != nil {
			t.Fatalf("cannot seed the panel database: %v", err)
		}
	}
	// Read it as the benchmark does: another connection, read-only.
	ro, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ro.Close() })
	fingerprint := func() string {
		t.Helper()
		fp, err := sqliteFingerprint(ctx, ro)
		if err != nil {
			t.Fatalf("sqliteFingerprint: %v", err)
		}
		return fp
	}
	base := fingerprint()
	if again := fingerprint(); again != base {
		t.Fatalf("the fingerprint of an unchanged database changed: %s then %s", base, again)
	}
	for _, c := range []struct {
		name, change, restore string
		args, restoreArgs     []any
	}{
		{"users.updated_at one second later", "UPDATE users SET updated_at = ?", "UPDATE users SET updated_at = ?",
			[]any{"2026-11-27 10:00:01"}, []any{stamp}},
		{"users.updated_at one day later", "UPDATE users SET updated_at = ?", "UPDATE users SET updated_at = ?",
			[]any{"2026-11-28 10:00:00"}, []any{stamp}},
		{"verifications.verified cleared", "UPDATE verifications SET verified = ?", "UPDATE verifications SET verified = ?",
			[]any{0}, []any{1}},
		{"the binding's secret version", "UPDATE puq_operator_bindings SET secret_version = ?",
			"UPDATE puq_operator_bindings SET secret_version = ?", []any{"uid-s/2"}, []any{"uid-s/1"}},
		{"an activity row added", "INSERT INTO activity_logs (uuid, level, action, created_at) VALUES (?, ?, ?, ?)",
			"DELETE FROM activity_logs WHERE uuid = ?", []any{"0b5f1f4e-6d1c-4f0e-9a55-3c3b0f0a0003", "info", "Login", stamp},
			[]any{"0b5f1f4e-6d1c-4f0e-9a55-3c3b0f0a0003"}},
	} {
		if _, err := rw.ExecContext(ctx, c.change, c.args...); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := fingerprint(); got == base {
			t.Errorf("%s: the fingerprint did not change (%s)", c.name, got)
		}
		if _, err := rw.ExecContext(ctx, c.restore, c.restoreArgs...); err != nil {
			t.Fatalf("%s, restoring: %v", c.name, err)
		}
		if got := fingerprint(); got != base {
			t.Errorf("%s, restored: the fingerprint is %s, want the original %s", c.name, got, base)
		}
	}
}
