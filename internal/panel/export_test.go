package panel

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// MySQLConfig exposes the driver configuration a DSN opens with, for the tests of its defaults.
var MySQLConfig = mysqlConfig

// Tx runs fn in one of the store's transactions, as its own writes do (retried when InnoDB picks
// it as a deadlock's victim).
func (s *Store) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.tx(ctx, "test transaction", fn)
}

// SQLiteName exposes the driver's name for a sqlite:// path, for the DSN fuzz target.
var SQLiteName = sqliteName

// SQLitePragmas are the pragmas every sqlite name carries.
const SQLitePragmas = sqlitePragmas

// The store's single-purpose writes, kept for the store's own tests: the operator writes through
// Apply and Release, one transaction per reconcile.

// ApplyUser makes the panel user match d, writing only what differs: no UPDATE, no updated_at
// change and no activity row when everything already matches. It returns the user as it now is,
// and the names of what changed (columns, "emailVerification", "totp", "defaultMethod"), empty
// when nothing did. ErrNotFound when the user is gone.
//
// seen is the caller's snapshot of the user, possibly stale: a row edited after it was read still
// looks unchanged in it. So a matching seen decides nothing by itself: the user's snapshot is read
// again (one round trip, no transaction), and only when that one matches too does ApplyUser return
// without a transaction. A seen that differs from d skips that read. Otherwise it reads the rows
// again, locked, and writes.
func (s *Store) ApplyUser(ctx context.Context, userUUID string, d DesiredUser, seen *Snapshot) (User, []string, error) {
	if err := d.validate(); err != nil {
		return User{}, nil, err
	}
	if seen != nil && seen.UUID == userUUID {
		if _, ok := seen.Matches(d); ok {
			now, err := s.Snapshot(ctx, userUUID)
			if err != nil {
				return User{}, nil, err
			}
			if u, ok := now.Matches(d); ok {
				return u, nil, nil
			}
		}
	}
	a, err := s.Apply(ctx, UserChange{UUID: userUUID, Desired: &d})
	return a.User, a.Changed, err
}

// UserExists reports whether a panel user with this UUID exists.
func (s *Store) UserExists(ctx context.Context, userUUID string) (_ bool, err error) {
	ctx, done := s.begin(ctx, "check the panel user")
	defer done(&err)
	var n int
	err = s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM users WHERE uuid = ?", userUUID).Scan(&n)
	return n > 0, classify("check the panel user", err)
}

// SetPasswordHash stores a bcrypt hash as the user's password, with the $2y$ prefix PHP requires.
func (s *Store) SetPasswordHash(ctx context.Context, userUUID, passwordHash string) error {
	_, err := s.Apply(ctx, UserChange{UUID: userUUID, PasswordHash: passwordHash})
	return err
}

// DeleteUser deletes a panel user, as the panel does: refused while the user has any client
// association; the database cascades to verifications and the user's own activity rows. A user
// already gone is not an error. The operator's binding for the user goes in the same transaction.
func (s *Store) DeleteUser(ctx context.Context, userUUID string) error {
	return s.tx(ctx, "delete the panel user", func(tx *sql.Tx) error {
		before, err := s.readUserRow(ctx, tx, "uuid = ?", userUUID, true)
		if isNoRows(err) {
			_, err = tx.ExecContext(ctx, "DELETE FROM "+bindingTable+" WHERE user_uuid = ?", userUUID)
			return err
		}
		if err != nil {
			return err
		}
		clients, err := s.clientNamesOf(ctx, tx, userUUID)
		if err != nil {
			return err
		}
		if len(clients) > 0 {
			return fmt.Errorf("%w: User is associated with the client, cannot be deleted (clients: %s)",
				ErrRefused, strings.Join(clients, ", "))
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM users WHERE uuid = ?", userUUID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+bindingTable+" WHERE user_uuid = ?", userUUID); err != nil {
			return err
		}
		return s.logActivity(ctx, tx, actionDelete, userUUID, s.userJSON(before, viewToArray), nil)
	})
}

// Unbind forgets the binding of a panel user, leaving the user itself alone.
func (s *Store) Unbind(ctx context.Context, userUUID string) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	_, err := s.db.ExecContext(ctx, "DELETE FROM "+bindingTable+" WHERE user_uuid = ?", userUUID)
	return classify("unbind the panel user", err)
}
