package testdb_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
)

var mariadb *testdb.MariaDB

func TestMain(m *testing.M) { testdb.Main(m, &mariadb) }

// The expectations below are written from the panel's migrations (PUQcloud 1.3.0), in Laravel's
// blueprint vocabulary, and say what MariaDB reports for what Laravel 12's MariaDB grammar emits:
// string is varchar(255), boolean tinyint(1), uuid MariaDB's uuid type, longText longtext; every
// text column has the connection's collation utf8mb4_unicode_ci; a nullable column without a
// default reports the default NULL, a NOT NULL one none.

// column is one row of information_schema.COLUMNS.
type column struct {
	name      string
	typ       string // COLUMN_TYPE
	nullable  bool
	def       string // COLUMN_DEFAULT as MariaDB reports it; noDefault when SQL NULL
	collation string // COLLATION_NAME; empty when SQL NULL
}

const (
	noDefault = "(none)"
	unicodeCI = "utf8mb4_unicode_ci"
)

func uuid(name string) column { return column{name: name, typ: "uuid", def: noDefault} }
func str(name string) column  { return strN(name, 255) }
func strN(name string, n int) column {
	return column{name: name, typ: fmt.Sprintf("varchar(%d)", n), def: noDefault, collation: unicodeCI}
}
func text(name string) column {
	return column{name: name, typ: "text", def: noDefault, collation: unicodeCI}
}
func longText(name string) column {
	return column{name: name, typ: "longtext", def: noDefault, collation: unicodeCI}
}
func boolean(name string) column   { return column{name: name, typ: "tinyint(1)", def: noDefault} }
func timestamp(name string) column { return column{name: name, typ: "timestamp", def: noDefault} }
func dateTime(name string) column  { return column{name: name, typ: "datetime", def: noDefault} }
func decimal(name string, total, places int) column {
	return column{name: name, typ: fmt.Sprintf("decimal(%d,%d)", total, places), def: noDefault}
}

// null is ->nullable(): without a default of its own, MariaDB reports the default NULL.
func (c column) null() column {
	c.nullable = true
	if c.def == noDefault {
		c.def = "NULL"
	}
	return c
}

// dflt is ->default(v) as MariaDB reports it: strings quoted, numbers as stored.
func (c column) dflt(v string) column { c.def = v; return c }

func rememberToken() column { return strN("remember_token", 100).null() }
func timestamps() []column {
	return []column{timestamp("created_at").null(), timestamp("updated_at").null()}
}

// index is one index of information_schema.STATISTICS; foreign keys get one from InnoDB, named
// after the constraint, when no other index leads with their column.
type index struct {
	name    string
	unique  bool
	kind    string // INDEX_TYPE
	columns []string
}

func primary(cols ...string) index { return index{"PRIMARY", true, "BTREE", cols} }
func unique(table, col string) index {
	return index{table + "_" + col + "_unique", true, "BTREE", []string{col}}
}
func plain(name string, cols ...string) index    { return index{name, false, "BTREE", cols} }
func fullText(name string, cols ...string) index { return index{name, false, "FULLTEXT", cols} }

// foreignKey is one row of REFERENTIAL_CONSTRAINTS with its KEY_COLUMN_USAGE.
type foreignKey struct {
	name, column, refTable, refColumn, onDelete, onUpdate string
}

// cascade is $table->foreign(col)->references('uuid')->on(ref)->onDelete('cascade'): no ON
// UPDATE clause, which MariaDB reports as RESTRICT.
func cascade(table, col, ref string) foreignKey {
	return foreignKey{table + "_" + col + "_foreign", col, ref, "uuid", "CASCADE", "RESTRICT"}
}

func fkIndex(table, col string) index { return plain(table+"_"+col+"_foreign", col) }

type table struct {
	source  string // the migration, in the PUQcloud repository
	columns []column
	indexes []index
	fks     []foreignKey
}

func cols(groups ...any) []column {
	var out []column
	for _, g := range groups {
		switch g := g.(type) {
		case column:
			out = append(out, g)
		case []column:
			out = append(out, g...)
		}
	}
	return out
}

// panelTables are the tables of internal/testdb/panel-mariadb.sql, from the panel's migrations.
var panelTables = map[string]table{
	"admins": {
		source: "database/migrations/2025_01_01_003001_create_admins_table.php",
		columns: cols(uuid("uuid"), str("email"), str("phone_number").null(), str("password"),
			boolean("two_factor").dflt("0"), boolean("disable").dflt("0"), boolean("email_verified").dflt("0"),
			boolean("phone_verified").dflt("0"), str("firstname"), str("lastname").null(), text("admin_notes").null(),
			longText("dashboard").null(), longText("client_summary_dashboard").null(), longText("old_permissions").null(),
			str("language").null(), rememberToken(), timestamps()),
		indexes: []index{primary("uuid"), unique("admins", "email"), unique("admins", "phone_number")},
	},
	"users": {
		source: "database/migrations/2025_01_01_005001_create_users_table.php",
		columns: cols(uuid("uuid"), str("email"), str("phone_number").null(), str("password"),
			str("status").dflt("'new'"), boolean("two_factor").dflt("0"), boolean("disable").dflt("0"),
			str("firstname"), str("lastname").null(), boolean("email_verified").dflt("0"),
			boolean("phone_verified").dflt("0"), str("language").null(), longText("notes").null(),
			longText("admin_notes").null(), str("password_reset_token").null(),
			timestamp("password_reset_token_created_at").null(), rememberToken(), timestamps()),
		indexes: []index{primary("uuid"), unique("users", "email"), unique("users", "phone_number")},
	},
	"verifications": {
		source: "database/migrations/2025_01_01_005002_create_verifications_table.php",
		columns: cols(uuid("uuid"), uuid("user_uuid"), str("type"), str("value").null(), str("secret"),
			str("device_name"), boolean("verified").dflt("0"), boolean("default").dflt("0"),
			timestamp("expires_at").null(), timestamp("last_used_at").null(), timestamps()),
		indexes: []index{primary("uuid"), fkIndex("verifications", "user_uuid")},
		fks:     []foreignKey{cascade("verifications", "user_uuid", "users")},
	},
	"clients": {
		source: "database/migrations/2025_01_01_006001_create_clients_table.php, " +
			"database/migrations/2025_12_10_100001_add_indexes_to_transactions_and_clients.php",
		columns: cols(uuid("uuid"), decimal("credit_limit", 15, 2).dflt("0.00"), str("firstname"),
			str("lastname").null(), str("company_name").null(), str("tax_id").null(), str("status").dflt("'new'"),
			str("language").null(), uuid("currency_uuid").null(), longText("notes").null(),
			longText("admin_notes").null(), timestamps()),
		indexes: []index{primary("uuid"), unique("clients", "company_name"), unique("clients", "tax_id"),
			plain("idx_currency_uuid", "currency_uuid"), plain("idx_clients_status", "status"),
			plain("idx_clients_name", "firstname", "lastname"), fullText("idx_clients_notes", "notes", "admin_notes")},
	},
	"client_x_user": {
		source: "database/migrations/2025_01_01_006002_create_client_x_user_table.php",
		columns: cols(uuid("client_uuid"), uuid("user_uuid"), boolean("owner").dflt("0"),
			longText("permissions").null(), longText("notifications").null(), timestamps()),
		// user_uuid's foreign key uses the primary key, which leads with it.
		indexes: []index{primary("user_uuid", "client_uuid"), fkIndex("client_x_user", "client_uuid")},
		fks:     []foreignKey{cascade("client_x_user", "client_uuid", "clients"), cascade("client_x_user", "user_uuid", "users")},
	},
	"client_session_logs": {
		source: "database/migrations/2025_01_01_006004_create_client_session_logs_table.php",
		columns: cols(uuid("uuid"), uuid("client_uuid"), uuid("user_uuid"), str("action"), str("ip_address").null(),
			str("session_id").null(), text("url"), str("method"), text("user_agent").null(), timestamps()),
		indexes: []index{primary("uuid"), fkIndex("client_session_logs", "client_uuid"),
			fkIndex("client_session_logs", "user_uuid")},
		fks: []foreignKey{cascade("client_session_logs", "client_uuid", "clients"),
			cascade("client_session_logs", "user_uuid", "users")},
	},
	"client_ips": {
		source: "database/migrations/2025_01_01_006005_create_client_ips_table.php",
		columns: cols(uuid("uuid"), uuid("user_uuid"), uuid("client_uuid"), str("ip_address"),
			dateTime("start_use"), dateTime("stop_use"), timestamps()),
		indexes: []index{primary("uuid"), fkIndex("client_ips", "user_uuid"), fkIndex("client_ips", "client_uuid")},
		fks:     []foreignKey{cascade("client_ips", "user_uuid", "users"), cascade("client_ips", "client_uuid", "clients")},
	},
	"activity_logs": {
		source: "database/migrations/2025_01_01_100001_create_activity_logs_table.php",
		columns: cols(uuid("uuid"), uuid("admin_uuid").null(), uuid("client_uuid").null(), uuid("user_uuid").null(),
			str("level").null(), str("action").null(), longText("description").null(), str("model_type").null(),
			uuid("model_uuid").null(), longText("model_old_data").null(), longText("model_new_data").null(),
			str("ip_address").null(), timestamps()),
		indexes: []index{primary("uuid"), fkIndex("activity_logs", "admin_uuid"),
			fkIndex("activity_logs", "client_uuid"), fkIndex("activity_logs", "user_uuid")},
		fks: []foreignKey{cascade("activity_logs", "admin_uuid", "admins"),
			cascade("activity_logs", "client_uuid", "clients"), cascade("activity_logs", "user_uuid", "users")},
	},
}

// The lines below render expectations and information_schema alike, one fact per line, so a
// difference names the table, the column or index, and what differs.

func columnLine(table string, pos int, c column) string {
	null := "NOT NULL"
	if c.nullable {
		null = "NULL"
	}
	coll := c.collation
	if coll == "" {
		coll = "no collation"
	}
	return fmt.Sprintf("%s.%s: #%d %s %s default=%s %s", table, c.name, pos, c.typ, null, c.def, coll)
}

func indexLine(table string, ix index) string {
	kind := "INDEX"
	if ix.unique {
		kind = "UNIQUE"
	}
	return fmt.Sprintf("%s index %s: %s %s (%s)", table, ix.name, kind, ix.kind, strings.Join(ix.columns, ", "))
}

func fkLine(table string, fk foreignKey) string {
	return fmt.Sprintf("%s foreign key %s: (%s) -> %s (%s) ON DELETE %s ON UPDATE %s",
		table, fk.name, fk.column, fk.refTable, fk.refColumn, fk.onDelete, fk.onUpdate)
}

func tableLine(name string) string {
	return name + ": InnoDB, " + unicodeCI
}

func expectedLines() []string {
	var lines []string
	for name, t := range panelTables {
		lines = append(lines, tableLine(name))
		for i, c := range t.columns {
			lines = append(lines, columnLine(name, i+1, c))
		}
		for _, ix := range t.indexes {
			lines = append(lines, indexLine(name, ix))
		}
		for _, fk := range t.fks {
			lines = append(lines, fkLine(name, fk))
		}
	}
	slices.Sort(lines)
	return lines
}

// each runs a query and calls row for every row; any error fails the test.
func each(t *testing.T, db *sql.DB, query string, args []any, row func(*sql.Rows) error) {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := row(rows); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// actualLines reads the same facts from information_schema.
func actualLines(t *testing.T, db *sql.DB) []string {
	t.Helper()
	var lines []string
	each(t, db, `SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES
		WHERE TABLE_SCHEMA = DATABASE()`, nil, func(r *sql.Rows) error {
		var name, engine, coll sql.NullString
		err := r.Scan(&name, &engine, &coll)
		lines = append(lines, fmt.Sprintf("%s: %s, %s", name.String, engine.String, coll.String))
		return err
	})
	each(t, db, `SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT,
		COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()`, nil, func(r *sql.Rows) error {
		var tbl, name, typ, nullable string
		var pos int
		var def, coll sql.NullString
		if err := r.Scan(&tbl, &name, &pos, &typ, &nullable, &def, &coll); err != nil {
			return err
		}
		c := column{name: name, typ: typ, nullable: nullable == "YES", def: def.String, collation: coll.String}
		if !def.Valid {
			c.def = noDefault
		}
		lines = append(lines, columnLine(tbl, pos, c))
		return nil
	})
	// One line per index: its columns in order.
	type key struct{ table, index string }
	indexes := map[key]*index{}
	each(t, db, `SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, INDEX_TYPE, COLUMN_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`, nil, func(r *sql.Rows) error {
		var k key
		var kind, col string
		var nonUnique int
		if err := r.Scan(&k.table, &k.index, &nonUnique, &kind, &col); err != nil {
			return err
		}
		if indexes[k] == nil {
			indexes[k] = &index{name: k.index, unique: nonUnique == 0, kind: kind}
		}
		indexes[k].columns = append(indexes[k].columns, col)
		return nil
	})
	for k, ix := range indexes {
		lines = append(lines, indexLine(k.table, *ix))
	}
	each(t, db, `SELECT rc.TABLE_NAME, rc.CONSTRAINT_NAME, k.COLUMN_NAME, rc.REFERENCED_TABLE_NAME,
		k.REFERENCED_COLUMN_NAME, rc.DELETE_RULE, rc.UPDATE_RULE
		FROM information_schema.REFERENTIAL_CONSTRAINTS rc
		JOIN information_schema.KEY_COLUMN_USAGE k ON k.CONSTRAINT_SCHEMA = rc.CONSTRAINT_SCHEMA
			AND k.TABLE_NAME = rc.TABLE_NAME AND k.CONSTRAINT_NAME = rc.CONSTRAINT_NAME
		WHERE rc.CONSTRAINT_SCHEMA = DATABASE()`, nil, func(r *sql.Rows) error {
		var tbl string
		var fk foreignKey
		err := r.Scan(&tbl, &fk.name, &fk.column, &fk.refTable, &fk.refColumn, &fk.onDelete, &fk.onUpdate)
		lines = append(lines, fkLine(tbl, fk))
		return err
	})
	slices.Sort(lines)
	return lines
}

// diff reports what is expected and missing, and what is there unexpected.
func diff(t *testing.T, want, got []string) {
	t.Helper()
	for _, l := range want {
		if !slices.Contains(got, l) {
			t.Errorf("want   %s", l)
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			t.Errorf("got    %s", l)
		}
	}
}

func TestMariaDBSchemaIsThePanelsMigrations(t *testing.T) {
	p, err := mariadb.NewPanel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Root.Close() }()
	diff(t, expectedLines(), actualLines(t, p.Root))
}

func TestUserDeleteCascadesOnMariaDB(t *testing.T) {
	ctx := context.Background()
	p, err := mariadb.NewPanel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Root.Close() }()
	assertUserDeleteCascades(t, p.Root)
}

// assertUserDeleteCascades deletes a user with a row in every table that references users and
// counts what is left: nothing of the user's, everything of the client's.
func assertUserDeleteCascades(t *testing.T, db *sql.DB) {
	t.Helper()
	const (
		user   = "00000000-0000-4000-8000-000000000001"
		client = "00000000-0000-4000-8000-000000000002"
		now    = "2026-01-01 00:00:00"
	)
	for _, st := range []struct {
		query string
		args  []any
	}{
		{"INSERT INTO users (uuid, email, password, firstname) VALUES (?, 'jane@example.com', 'x', 'Jane')", []any{user}},
		{"INSERT INTO clients (uuid, firstname) VALUES (?, 'Acme')", []any{client}},
		{"INSERT INTO verifications (uuid, user_uuid, type, secret, device_name) VALUES (?, ?, 'email', '123456', 'system')",
			[]any{"00000000-0000-4000-8000-000000000003", user}},
		{"INSERT INTO client_x_user (client_uuid, user_uuid) VALUES (?, ?)", []any{client, user}},
		{"INSERT INTO client_session_logs (uuid, client_uuid, user_uuid, action, url, method) VALUES (?, ?, ?, 'login', '/', 'POST')",
			[]any{"00000000-0000-4000-8000-000000000004", client, user}},
		{"INSERT INTO client_ips (uuid, user_uuid, client_uuid, ip_address, start_use, stop_use) VALUES (?, ?, ?, '192.0.2.1', ?, ?)",
			[]any{"00000000-0000-4000-8000-000000000005", user, client, now, now}},
		{"INSERT INTO activity_logs (uuid, user_uuid) VALUES (?, ?)", []any{"00000000-0000-4000-8000-000000000006", user}},
		{"DELETE FROM users WHERE uuid = ?", []any{user}},
	} {
		if _, err := db.Exec(st.query, st.args...); err != nil {
			t.Fatalf("%s: %v", st.query, err)
		}
	}
	for _, tbl := range []string{"verifications", "client_x_user", "client_session_logs", "client_ips", "activity_logs"} {
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM " + tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s keeps %d rows of the deleted user", tbl, n)
		}
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM clients").Scan(&n); err != nil || n != 1 {
		t.Errorf("the client is gone with the user: %d rows, %v", n, err)
	}
}

func TestOperatorOpensTheSchemaAndAddsOnlyItsOwnTable(t *testing.T) {
	ctx := context.Background()
	p, err := mariadb.NewPanel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Root.Close() }()
	before := tableNames(t, p.Root)
	s, err := panel.Open(ctx, panel.Options{DSN: p.DSN, PasswordFile: p.PasswordFile})
	if err != nil {
		t.Fatalf("the operator refuses the panel schema: %v", err)
	}
	_ = s.Close()
	own := []string{"puq_operator_bindings", "puq_operator_membership_bindings"}
	want := append(slices.Clone(before), own...)
	slices.Sort(want)
	if got := tableNames(t, p.Root); !slices.Equal(got, want) {
		t.Errorf("tables after Open: %v, want %v", got, want)
	}
	for _, table := range own {
		if slices.Contains(before, table) {
			t.Errorf("the test schema pre-creates %s, which the operator creates itself", table)
		}
	}
}

func tableNames(t *testing.T, db *sql.DB) []string {
	t.Helper()
	var names []string
	each(t, db, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()", nil,
		func(r *sql.Rows) error {
			var n string
			err := r.Scan(&n)
			names = append(names, n)
			return err
		})
	slices.Sort(names)
	return names
}

// sqliteLines renders the facts SQLite can state like the MariaDB ones: tables, column order,
// nullability and defaults, primary and unique keys with their collation, foreign keys and
// their delete rules. Types are SQLite's own and not compared.
func sqliteLines(t *testing.T, db *sql.DB) []string {
	t.Helper()
	var tables, lines []string
	each(t, db, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", nil,
		func(r *sql.Rows) error {
			var n string
			err := r.Scan(&n)
			tables = append(tables, n)
			return err
		})
	for _, name := range tables {
		lines = append(lines, name)
		pk := map[int]string{}
		each(t, db, `SELECT cid, name, "notnull", dflt_value, pk FROM pragma_table_info(?)`, []any{name},
			func(r *sql.Rows) error {
				var cid, notNull, pkPos int
				var col string
				var def sql.NullString
				if err := r.Scan(&cid, &col, &notNull, &def, &pkPos); err != nil {
					return err
				}
				lines = append(lines, sqliteColumnLine(name, cid+1, col, notNull == 0, def))
				if pkPos > 0 {
					pk[pkPos] = col
				}
				return nil
			})
		keyCols := make([]string, len(pk))
		for pos, col := range pk {
			keyCols[pos-1] = col
		}
		lines = append(lines, fmt.Sprintf("%s primary key (%s)", name, strings.Join(keyCols, ", ")))
		var unique []string
		each(t, db, `SELECT name FROM pragma_index_list(?) WHERE "unique" = 1 AND origin != 'pk'`, []any{name},
			func(r *sql.Rows) error {
				var n string
				err := r.Scan(&n)
				unique = append(unique, n)
				return err
			})
		for _, ix := range unique {
			var cols []string
			each(t, db, "SELECT name, coll FROM pragma_index_xinfo(?) WHERE key = 1 ORDER BY seqno", []any{ix},
				func(r *sql.Rows) error {
					var col, coll string
					err := r.Scan(&col, &coll)
					cols = append(cols, col+" "+coll)
					return err
				})
			lines = append(lines, fmt.Sprintf("%s unique %s (%s)", name, ix, strings.Join(cols, ", ")))
		}
		each(t, db, `SELECT "from", "table", "to", on_delete FROM pragma_foreign_key_list(?)`, []any{name},
			func(r *sql.Rows) error {
				var from, ref, to, onDelete string
				err := r.Scan(&from, &ref, &to, &onDelete)
				lines = append(lines, fmt.Sprintf("%s foreign key (%s) -> %s (%s) ON DELETE %s", name, from, ref, to, onDelete))
				return err
			})
	}
	slices.Sort(lines)
	return lines
}

func sqliteColumnLine(table string, pos int, col string, nullable bool, def sql.NullString) string {
	null := "NOT NULL"
	if nullable {
		null = "NULL"
	}
	d := "none"
	if def.Valid && def.String != "NULL" {
		d = def.String
		// MariaDB reports a decimal default with its places (0.00); compare the number.
		if f, err := strconv.ParseFloat(d, 64); err == nil {
			d = strconv.FormatFloat(f, 'f', -1, 64)
		}
	}
	return fmt.Sprintf("%s.%s: #%d %s default=%s", table, col, pos, null, d)
}

// sqliteExpected translates panelTables into SQLite's terms: a nullable column's default NULL is
// no default; unique keys compare text with unicode_ci, the collation the store registers.
func sqliteExpected() []string {
	var lines []string
	for name, t := range panelTables {
		lines = append(lines, name)
		for i, c := range t.columns {
			def := sql.NullString{String: c.def, Valid: c.def != noDefault}
			lines = append(lines, sqliteColumnLine(name, i+1, c.name, c.nullable, def))
		}
		for _, ix := range t.indexes {
			switch {
			case ix.name == "PRIMARY":
				lines = append(lines, fmt.Sprintf("%s primary key (%s)", name, strings.Join(ix.columns, ", ")))
			case ix.unique:
				var cs []string
				for _, c := range ix.columns {
					cs = append(cs, c+" unicode_ci")
				}
				lines = append(lines, fmt.Sprintf("%s unique %s (%s)", name, ix.name, strings.Join(cs, ", ")))
			}
		}
		for _, fk := range t.fks {
			lines = append(lines, fmt.Sprintf("%s foreign key (%s) -> %s (%s) ON DELETE %s", name, fk.column,
				fk.refTable, fk.refColumn, fk.onDelete))
		}
	}
	slices.Sort(lines)
	return lines
}

// openSQLite lets the store create its embedded database, as the operator does on first start.
func openSQLite(t *testing.T) *panel.Store {
	t.Helper()
	s, err := panel.Open(context.Background(), panel.Options{DSN: "sqlite://" + filepath.Join(t.TempDir(), "panel.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSQLiteSchemaMatchesThePanelsMigrations(t *testing.T) {
	s := openSQLite(t)
	got := sqliteLines(t, s.DB())
	// The operator's own tables are checked by the store's tests, not against the panel.
	got = slices.DeleteFunc(got, func(l string) bool { return strings.HasPrefix(l, "puq_operator_") })
	diff(t, sqliteExpected(), got)
}

func TestUserDeleteCascadesOnSQLite(t *testing.T) {
	assertUserDeleteCascades(t, openSQLite(t).DB())
}
