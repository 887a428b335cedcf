package panel_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// One change of fields, password and binding is one transaction with one activity row; MariaDB's
// own counters say how many transactions and statements it took.
func TestApplyWritesFieldsPasswordAndBindingInOneTransaction(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		b := panel.Binding{Namespace: "team-a", Name: "jane", ResourceUID: uuid.NewString(), InstanceID: "prod", SecretVersion: "s/1"}
		u, err := f.store.CreateUser(ctx, jane(), testHash(t, "correct horse battery"), &b)
		if err != nil {
			t.Fatal(err)
		}
		b.UserUUID = u.UUID
		f.tick()
		d := jane()
		d.FirstName = "Janet"
		want := b
		want.SecretVersion = "s/2"
		activity := f.count(t, "SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ?", u.UUID)
		commits := f.commits(t)
		got, err := f.store.Apply(ctx, panel.UserChange{UUID: u.UUID, Desired: &d, PasswordHash: testHash(t, "battery staple horse"),
			Binding: &want, Expect: &b})
		if err != nil {
			t.Fatal(err)
		}
		if !got.Bound || len(got.Changed) != 2 || got.Changed[0] != "firstname" || got.Changed[1] != "password" {
			t.Errorf("Apply says changed %v, bound %v; want [firstname password], bound", got.Changed, got.Bound)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ?", u.UUID) - activity; n != 1 {
			t.Errorf("%d activity rows for one change, want 1", n)
		}
		if n := f.commits(t) - commits; commits >= 0 && n != 1 {
			t.Errorf("%d transactions for one change, want 1", n)
		}
		if v, err := f.store.GetBinding(ctx, u.UUID); err != nil || v != want {
			t.Errorf("binding = %+v, %v; want %+v", v, err, want)
		}
	})
}

// Two resources deciding to adopt one unbound panel user at once: the second commit finds the
// binding is not the one it read and writes nothing.
func TestApplyRefusesABindingThatChangedSinceItWasRead(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		u, err := f.store.CreateUser(ctx, jane(), testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		first := panel.Binding{Namespace: "team-a", Name: "jane", ResourceUID: uuid.NewString(), InstanceID: "prod"}
		second := panel.Binding{Namespace: "team-b", Name: "jane", ResourceUID: uuid.NewString(), InstanceID: "prod"}
		d := jane()
		if _, err := f.store.Apply(ctx, panel.UserChange{UUID: u.UUID, Desired: &d, Binding: &first}); err != nil {
			t.Fatal(err)
		}
		before := f.str(t, "SELECT CONCAT(firstname, updated_at) FROM users WHERE uuid = ?", u.UUID)
		f.tick()
		d.FirstName = "Mallory"
		_, err = f.store.Apply(ctx, panel.UserChange{UUID: u.UUID, Desired: &d, Binding: &second})
		if !errors.Is(err, panel.ErrConflict) {
			t.Fatalf("the second adoption: err = %v, want ErrConflict", err)
		}
		if after := f.str(t, "SELECT CONCAT(firstname, updated_at) FROM users WHERE uuid = ?", u.UUID); after != before {
			t.Error("the refused adoption changed the panel user")
		}
		first.UserUUID = u.UUID
		if got, _ := f.store.GetBinding(ctx, u.UUID); got != first {
			t.Errorf("binding = %+v, want the first resource's", got)
		}
	})
}

// Release deletes where the panel allows and otherwise disables; it never touches a user bound to
// another resource.
func TestReleaseDeletesOrDisablesOnlyWhatTheResourceHolds(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		mk := func(name, email string) (panel.User, panel.Binding) {
			d := jane()
			d.Email, d.Phone = email, ""
			b := panel.Binding{Namespace: "ns", Name: name, ResourceUID: uuid.NewString(), InstanceID: "prod"}
			u, err := f.store.CreateUser(ctx, d, testHash(t, "correct horse battery"), &b)
			if err != nil {
				t.Fatal(err)
			}
			b.UserUUID = u.UUID
			return u, b
		}
		free, freeB := mk("free", "free@example.com")
		kept, keptB := mk("kept", "kept@example.com")
		client := f.insertClient(t, "Acme", "A", "B", "", "active")
		if _, err := f.db.Exec("INSERT INTO client_x_user (client_uuid, user_uuid, owner, permissions) VALUES (?, ?, 1, '[]')",
			client, kept.UUID); err != nil {
			t.Fatal(err)
		}
		stranger := freeB
		stranger.ResourceUID = uuid.NewString()
		if _, err := f.store.Release(ctx, stranger, panel.ReleaseDelete); !errors.Is(err, panel.ErrConflict) {
			t.Errorf("release by another resource of the same name: err = %v, want ErrConflict", err)
		}
		if r, err := f.store.Release(ctx, freeB, panel.ReleaseDelete); err != nil || !r.Deleted {
			t.Errorf("release of a user with no clients = %+v, %v; want deleted", r, err)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM users WHERE uuid = ?", free.UUID); n != 0 {
			t.Error("the user with no clients is still there")
		}
		r, err := f.store.Release(ctx, keptB, panel.ReleaseDelete)
		if err != nil || r.Deleted || !r.Disabled || len(r.KeptFor) != 1 {
			t.Errorf("release of a client's owner = %+v, %v; want disabled and kept for one client", r, err)
		}
		if got := f.str(t, "SELECT CONCAT(status, '/', `disable`) FROM users WHERE uuid = ?", kept.UUID); got != "inactive/1" {
			t.Errorf("the kept user is %s, want inactive/1", got)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM puq_operator_bindings"); n != 0 {
			t.Errorf("%d bindings left after both were released", n)
		}
	})
}

// Two transactions that lock the same two rows in opposite orders deadlock; InnoDB rolls one back.
// The store runs the victim again, so both changes land and neither reports an unavailable
// database (which would show DatabaseUnavailable on a healthy server and back off).
func TestADeadlockVictimIsRunAgain(t *testing.T) {
	p, err := mariadb.NewPanel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Root.Close() })
	f := open(t, panel.Options{DSN: p.DSN, PasswordFile: p.PasswordFile}, p.Root)
	ctx := context.Background()
	var ids [2]string
	for i := range ids {
		d := jane()
		d.Email, d.Phone = fmt.Sprintf("user%d@example.com", i), ""
		u, err := f.store.CreateUser(ctx, d, testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = u.UUID
	}
	var holding sync.WaitGroup
	holding.Add(2)
	var attempts atomic.Int32
	errs := make(chan error, 2)
	for i := range 2 {
		first, second := ids[i], ids[1-i]
		var mine atomic.Int32
		go func() {
			errs <- f.store.Tx(ctx, func(tx *sql.Tx) error {
				attempts.Add(1)
				var email string
				if err := tx.QueryRowContext(ctx, "SELECT email FROM users WHERE uuid = ? FOR UPDATE", first).Scan(&email); err != nil {
					return err
				}
				if mine.Add(1) == 1 { // only the first attempt waits for the other to hold its row
					holding.Done()
					holding.Wait()
				}
				if err := tx.QueryRowContext(ctx, "SELECT email FROM users WHERE uuid = ? FOR UPDATE", second).Scan(&email); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, "UPDATE users SET admin_notes = CONCAT(COALESCE(admin_notes, ''), ?) WHERE uuid = ?",
					"x", first)
				return err
			})
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("a transaction of the deadlocked pair failed: %v", err)
		}
	}
	if n := attempts.Load(); n != 3 {
		t.Errorf("%d attempts, want 3: the two transactions and the victim's second run", n)
	}
	if n := f.count(t, "SELECT COUNT(*) FROM users WHERE admin_notes LIKE '%x'"); n != 2 {
		t.Errorf("%d of the 2 changes landed", n)
	}
}
