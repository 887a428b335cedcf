package panel

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"strings"
)

// Snapshot is a panel user as one unlocked read sees it: its row, its verification rows, its
// binding and its clients. A resync compares it with the spec and takes the locked,
// transactional path only when something differs, so an unchanged user costs one round trip.
type Snapshot struct {
	UUID string
	// Exists is false when the panel has no user with this UUID.
	Exists bool
	// Binding is the user's binding; nil when it has none.
	Binding *Binding
	// Clients are the user's clients in the order UserClients returns them.
	Clients []UserClient

	row           row
	verifications []verification
	device        string // the store's TOTP device name
}

// User is the panel user as the snapshot saw it.
func (s *Snapshot) User() User { return userFromRow(s.row, s.verifications) }

// Email is the panel user's email as the snapshot saw it.
func (s *Snapshot) Email() string { return s.row["email"] }

// Matches reports whether ApplyUser(d) would write nothing, and the user as it is.
func (s *Snapshot) Matches(d DesiredUser) (User, bool) {
	if !s.Exists || len(changedColumns(s.row, desiredColumns(d, s.row))) > 0 {
		return User{}, false
	}
	vs := slices.Clone(s.verifications)
	vs, changed, err := syncVerifications(context.Background(), nil, s.UUID, vs, d, s.device, "")
	if err != nil || len(changed) > 0 {
		return User{}, false
	}
	return userFromRow(s.row, vs), true
}

// snapshotPart is one SELECT of the snapshot query.
type snapshotPart struct {
	tag     string
	columns []string
	from    string
}

// snapshotWidth is the number of columns every part of the snapshot query returns: a tag, then
// the widest part (the user row).
var snapshotWidth = 1 + len(userColumns)

// snapshotParts select, for a list of user UUIDs, the user rows, their verification rows, their
// bindings and their clients; each part is padded with NULLs to snapshotWidth columns and tagged
// in its first column. The first column after the tag is always the user's UUID.
var snapshotParts = []snapshotPart{
	{"u", quoted(userColumns), "users WHERE `uuid`"},
	{"v", []string{"`user_uuid`", "`uuid`", "`type`", "`value`", "`secret`", "`verified`", "`default`", "`created_at`"},
		"verifications WHERE `user_uuid`"},
	{"b", []string{"`user_uuid`", "`namespace`", "`name`", "`resource_uid`", "`instance_id`", "`secret_version`",
		"`cluster_id`"},
		bindingTable + " WHERE `user_uuid`"},
	{"c", []string{"x.`user_uuid`", "c.`uuid`", "c.`firstname`", "c.`lastname`", "c.`company_name`", "c.`tax_id`",
		"c.`status`", "x.`owner`", "x.`permissions`"},
		"client_x_user x JOIN clients c ON c.`uuid` = x.`client_uuid` WHERE x.`user_uuid`"},
}

// snapshotParts are the parts the store's snapshot query reads: all, except the bindings when the
// database has no binding table (a read-only store on a panel no operator ran on).
func (s *Store) snapshotParts() []snapshotPart {
	if !s.unbound {
		return snapshotParts
	}
	return slices.DeleteFunc(slices.Clone(snapshotParts), func(p snapshotPart) bool { return p.tag == "b" })
}

// quoted is each column name in backquotes.
func quoted(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = "`" + c + "`"
	}
	return out
}

// snapshotQuery is the one statement that reads the snapshots of n users. Every column is cast to
// text: a union takes one type per column, and MariaDB would otherwise convert a column that is
// a native UUID in one part (the panel's uuid columns) and text in another to UUID.
func (s *Store) snapshotQuery(n int) string {
	in := " IN (?" + strings.Repeat(", ?", n-1) + ")"
	text := "CHAR"
	if s.engine == EngineSQLite {
		text = "TEXT"
	}
	var b strings.Builder
	for _, p := range s.snapshotParts() {
		if b.Len() > 0 {
			b.WriteString(" UNION ALL ")
		}
		b.WriteString("SELECT '" + p.tag + "'")
		for _, c := range p.columns {
			b.WriteString(", CAST(" + c + " AS " + text + ")")
		}
		b.WriteString(strings.Repeat(", NULL", snapshotWidth-1-len(p.columns)))
		b.WriteString(" FROM " + p.from + in)
	}
	return b.String()
}

// Snapshot reads one user's snapshot in one round trip.
func (s *Store) Snapshot(ctx context.Context, userUUID string) (*Snapshot, error) {
	snaps, err := s.Snapshots(ctx, []string{userUUID})
	if err != nil {
		return nil, err
	}
	return snaps[userUUID], nil
}

// Snapshots reads the snapshots of many users in one round trip, keyed by UUID; every UUID asked
// for has one (Exists false when the panel has no such user).
func (s *Store) Snapshots(ctx context.Context, userUUIDs []string) (_ map[string]*Snapshot, err error) {
	ctx, done := s.begin(ctx, "read panel users")
	defer done(&err)
	out := make(map[string]*Snapshot, len(userUUIDs))
	if len(userUUIDs) == 0 {
		return out, nil
	}
	parts := s.snapshotParts()
	args := make([]any, 0, len(userUUIDs)*len(parts))
	for range parts {
		for _, id := range userUUIDs {
			args = append(args, id)
		}
	}
	for _, id := range userUUIDs {
		out[id] = &Snapshot{UUID: id, device: s.device}
	}
	rows, err := s.db.QueryContext(ctx, s.snapshotQuery(len(userUUIDs)), args...)
	if err != nil {
		return nil, classify("read panel users", err)
	}
	defer func() { _ = rows.Close() }()
	vals := make([]sql.NullString, snapshotWidth)
	ptrs := make([]any, snapshotWidth)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	created := map[string]string{} // verification uuid -> created_at, for the panel's order
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, classify("read panel users", err)
		}
		snap := out[vals[1].String]
		if snap == nil {
			continue // a UUID compared equal by the collation but spelled differently
		}
		col := func(i int) string { return vals[i].String }
		switch vals[0].String {
		case "u":
			snap.Exists = true
			snap.row = make(row, len(userColumns))
			for i, c := range userColumns {
				if vals[1+i].Valid {
					snap.row[c] = vals[1+i].String
				}
			}
		case "v":
			snap.verifications = append(snap.verifications, verification{UUID: col(2), Type: col(3), Value: col(4),
				Secret: col(5), Verified: col(6) == "1", Default: col(7) == "1"})
			created[col(2)] = col(8)
		case "b":
			snap.Binding = &Binding{UserUUID: col(1), Namespace: col(2), Name: col(3), ResourceUID: col(4),
				InstanceID: col(5), SecretVersion: col(6), ClusterID: col(7)}
		case "c":
			c := Client{UUID: col(2), Name: strings.TrimSpace(col(3) + " " + col(4)), CompanyName: col(5), TaxID: col(6),
				Status: col(7)}
			snap.Clients = append(snap.Clients, UserClient{Client: c, Owner: col(8) == "1", Permissions: parsePermissions(col(9))})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, classify("read panel users", err)
	}
	for _, snap := range out {
		slices.SortFunc(snap.verifications, func(a, b verification) int {
			return cmp.Or(cmp.Compare(created[a.UUID], created[b.UUID]), cmp.Compare(a.UUID, b.UUID))
		})
		sortClients(snap.Clients)
	}
	return out, nil
}

// sortClients puts a user's clients in the "User Clients" order: the owned client first, then by
// company name and name (compared as the panel's collation compares), then UUID.
func sortClients(cs []UserClient) {
	slices.SortStableFunc(cs, func(a, b UserClient) int {
		if a.Owner != b.Owner {
			if a.Owner {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(Fold(a.CompanyName), Fold(b.CompanyName)), cmp.Compare(Fold(a.Name), Fold(b.Name)),
			cmp.Compare(a.UUID, b.UUID))
	})
}

// SnapshotOf is the snapshot the store would read of a panel user that Apply made from d with
// binding b and that has the clients: for planners' table tests, which decide without a database.
func SnapshotOf(userUUID string, d DesiredUser, b *Binding, clients []UserClient) *Snapshot {
	r := row{"uuid": userUUID, "status": "new", "disable": "0"}
	for c, v := range desiredColumns(d, nil) {
		if v != nil {
			r[c] = *v
		}
	}
	vs, _, _ := syncVerifications(context.Background(), nil, userUUID, nil, d, DefaultTOTPDeviceName, "")
	for i := range vs {
		vs[i].fresh = false
	}
	return &Snapshot{UUID: userUUID, Exists: true, Binding: b, Clients: clients, row: r, verifications: vs,
		device: DefaultTOTPDeviceName}
}
