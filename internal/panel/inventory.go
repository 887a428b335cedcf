package panel

import (
	"context"
	"database/sql"
	"slices"
)

// Record is one panel user as `kubectl puq import` reads it: everything the panel holds that a
// User and its ClientMemberships can say, with NULL kept apart from "" (a spec cannot tell them
// apart, so a column holding "" cannot be imported exactly). It holds the password hash and the
// authenticator seeds: never log or print one.
type Record struct {
	UUID   string
	Email  string
	Status string
	// PasswordHash is the users.password column as stored.
	PasswordHash string
	// Verifications are the user's verification rows in the panel's order (created_at, uuid).
	Verifications []RecordVerification
	// Memberships are the user's client_x_user rows, by client UUID.
	Memberships []RecordMembership
	// Binding is the user's operator binding (some resource manages it already); nil when none.
	Binding *Binding
}

// RecordVerification is one verifications row of a Record.
type RecordVerification struct {
	Type, Value, Secret string
	Verified, Default   bool
}

// RecordMembership is one client_x_user row of a Record.
type RecordMembership struct {
	ClientUUID string
	Owner      bool
	// Permissions are the known permission keys stored, in the panel's order (parsePermissions);
	// Raw is the stored value.
	Permissions []string
	Raw         string
}

// Records reads every panel user with its verification rows, memberships and whether it is bound,
// ordered by email and UUID, in four statements and without locking or writing anything.
func (s *Store) Records(ctx context.Context) (_ []Record, err error) {
	ctx, done := s.begin(ctx, "read the panel users for import")
	defer done(&err)
	out, err := s.readRecords(ctx)
	return out, classify("read the panel users for import", err)
}

func (s *Store) readRecords(ctx context.Context) ([]Record, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT CAST(`uuid` AS CHAR), `email`, `status`, `password` FROM users "+
		"ORDER BY `email`, `uuid`")
	if err != nil {
		return nil, err
	}
	var out []Record
	index := map[string]int{}
	for rows.Next() {
		var r Record
		var hash sql.NullString
		if err := rows.Scan(&r.UUID, &r.Email, &r.Status, &hash); err != nil {
			_ = rows.Close()
			return nil, err
		}
		r.PasswordHash = hash.String
		index[r.UUID] = len(out)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	_ = rows.Close()

	rows, err = s.db.QueryContext(ctx, "SELECT CAST(`user_uuid` AS CHAR), `type`, `value`, `secret`, `verified`, "+
		"`default` FROM verifications ORDER BY `user_uuid`, `created_at`, `uuid`")
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var user string
		var v RecordVerification
		var value, secret sql.NullString
		if err := rows.Scan(&user, &v.Type, &value, &secret, &v.Verified, &v.Default); err != nil {
			_ = rows.Close()
			return nil, err
		}
		v.Value, v.Secret = value.String, secret.String
		if i, ok := index[user]; ok {
			out[i].Verifications = append(out[i].Verifications, v)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	_ = rows.Close()

	rows, err = s.db.QueryContext(ctx, "SELECT CAST(`user_uuid` AS CHAR), CAST(`client_uuid` AS CHAR), `owner`, "+
		"`permissions` FROM client_x_user ORDER BY `user_uuid`, `client_uuid`")
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var user string
		var m RecordMembership
		var perms sql.NullString
		if err := rows.Scan(&user, &m.ClientUUID, &m.Owner, &perms); err != nil {
			_ = rows.Close()
			return nil, err
		}
		m.Raw = perms.String
		m.Permissions = parsePermissions(perms.String)
		if i, ok := index[user]; ok {
			out[i].Memberships = append(out[i].Memberships, m)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	_ = rows.Close()

	if s.unbound {
		return out, nil
	}
	rows, err = s.db.QueryContext(ctx, "SELECT "+bindingColumns+" FROM "+bindingTable)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		b, err := scanBinding(rows.Scan)
		if err != nil {
			return nil, err
		}
		if i, ok := index[b.UserUUID]; ok {
			out[i].Binding = &b
		}
	}
	return out, rows.Err()
}

// hasTable reports whether the database has the table (a read-only store creates none).
func (s *Store) hasTable(ctx context.Context, name string) (bool, error) {
	query := "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?"
	if s.engine == EngineSQLite {
		query = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
	}
	var n int
	err := s.db.QueryRowContext(ctx, query, name).Scan(&n)
	return n > 0, err
}

// Differences names what Apply(d) would change on the snapshot's user: its managed columns, and
// "emailVerification", "totp" or "defaultMethod" for its verification rows; "user" when the
// snapshot has no user. Empty exactly when Matches(d) holds.
func (s *Snapshot) Differences(d DesiredUser) []string {
	if !s.Exists {
		return []string{"user"}
	}
	out := changedColumns(s.row, desiredColumns(d, s.row))
	_, changed, err := syncVerifications(context.Background(), nil, s.UUID, slices.Clone(s.verifications), d, s.device, "")
	if err != nil {
		return append(out, "invalid")
	}
	return append(out, changed...)
}
