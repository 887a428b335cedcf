// Package panel is the PUQcloud Panel database as the operator sees it: a small API over
// database/sql that writes rows the panel cannot tell from its own (../shared/panel-contract.md).
// Two engines: MySQL/MariaDB (the panel's own database; the operator never creates or alters a
// panel table there) and SQLite (an embedded database with the same tables, for trying the
// operator without a panel). Every multi-row change runs in one transaction; nothing is written
// when nothing differs.
package panel

import (
	"cmp"
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
)

// Engine is the kind of database behind a Store.
type Engine string

const (
	// EngineMySQL is MySQL or MariaDB, the panel's real database.
	EngineMySQL Engine = "mysql"
	// EngineSQLite is the embedded database file.
	EngineSQLite Engine = "sqlite"
)

// PasswordEnv is the environment variable the database password is read from when no password
// file is given.
const PasswordEnv = "PANEL_DB_PASSWORD"

// Options configure Open.
type Options struct {
	// DSN is "mysql://user@tcp(host:3306)/db?param=value" or "sqlite:///path/to/panel.db".
	// It must not hold a password.
	DSN string
	// PasswordFile holds the MySQL password. Empty: Password, else the PANEL_DB_PASSWORD
	// environment variable.
	PasswordFile string
	// Password is the MySQL password itself (kubectl puq import reads it from the operator's
	// Secret); used when PasswordFile is empty.
	Password string
	// Location is the panel's timezone (APP_TIMEZONE), for created_at and updated_at. Nil: UTC.
	Location *time.Location
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
	// Observe, when set, is told the duration and outcome of every database operation (for
	// metrics). op is a short name such as "create the panel user".
	Observe func(op string, d time.Duration, err error)
	// OperationTimeout bounds each store operation: one query, or one transaction from BEGIN to
	// COMMIT. Zero means DefaultOperationTimeout.
	OperationTimeout time.Duration
	// TOTPDeviceName is the device name of the authenticator rows the operator writes: the
	// panel shows it at login ("Use the Authenticator app on your device <name>") and in the
	// Verification Center. Empty means DefaultTOTPDeviceName.
	TOTPDeviceName string
	// ReadOnly opens the database only to read it (kubectl puq import): nothing is created, not
	// even the operator's binding tables, and no panel table is checked for more than its columns.
	ReadOnly bool
}

// DefaultOperationTimeout is the deadline of one store operation. The operator's queries touch a
// handful of rows by primary or unique key and take milliseconds, the resync's batched snapshot
// tens of milliseconds; 10 s is far above any of them, so only a database that stopped answering
// (or a lock held by someone else for that long) reaches it. Then the operation fails with
// ErrUnavailable and the reconcile reports DatabaseUnavailable and retries, instead of holding a
// worker until TCP gives up (minutes) while status still says Ready. A lock wait cut short is
// retried like any other unavailability (MariaDB's own innodb_lock_wait_timeout is 50 s).
const DefaultOperationTimeout = 10 * time.Second

// The MySQL driver's own timeouts, used when the DSN does not set them (timeout, readTimeout,
// writeTimeout parameters). The operation deadline (a context) is what normally ends a call to
// a silent server; the driver's I/O timeouts are the backstop for the I/O no context covers:
// a ROLLBACK after a failed statement, a connection's handshake, closing statements. They are
// above DefaultOperationTimeout so that, when both could fire, the context does and the error
// says "deadline exceeded"; and far above any single round trip the operator makes.
const (
	defaultDialTimeout  = 5 * time.Second
	defaultReadTimeout  = 15 * time.Second
	defaultWriteTimeout = 15 * time.Second
)

// Store is the panel database. It is safe for concurrent use.
type Store struct {
	db      *sql.DB
	engine  Engine
	loc     *time.Location
	now     func() time.Time
	observe func(op string, d time.Duration, err error)
	timeout time.Duration // of one operation
	device  string        // TOTPDeviceName
	// unbound: a read-only store found no binding table (no operator ever ran on this database),
	// so no user is bound and snapshots read no bindings.
	unbound bool
}

//go:embed schema_sqlite.sql
var sqliteSchema string

var registerCollation sync.Once

// Open connects to the panel database named by opts.DSN and checks it: on MySQL that every table
// and column the operator uses exists; on SQLite it creates the panel tables when missing. Either
// way it creates the operator's own binding tables when missing.
func Open(ctx context.Context, opts Options) (*Store, error) {
	s := &Store{loc: opts.Location, now: opts.Now, observe: opts.Observe, timeout: opts.OperationTimeout,
		device: cmp.Or(opts.TOTPDeviceName, DefaultTOTPDeviceName)}
	if utf8.RuneCountInString(s.device) > 255 || strings.ContainsRune(s.device, 0) {
		return nil, fmt.Errorf("%w: the TOTP device name is longer than 255 characters or holds a NUL character", ErrInvalid)
	}
	if s.timeout <= 0 {
		s.timeout = DefaultOperationTimeout
	}
	if s.loc == nil {
		s.loc = time.UTC
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	switch {
	case strings.HasPrefix(opts.DSN, "mysql://"):
		s.engine = EngineMySQL
		s.db, err = openMySQL(strings.TrimPrefix(opts.DSN, "mysql://"), opts.PasswordFile, opts.Password)
	case strings.HasPrefix(opts.DSN, "sqlite://"):
		s.engine = EngineSQLite
		s.db, err = openSQLite(strings.TrimPrefix(opts.DSN, "sqlite://"))
	default:
		return nil, fmt.Errorf("%w: the panel DSN must start with mysql:// or sqlite://", ErrInvalid)
	}
	if err != nil {
		return nil, err
	}
	// The checks at start (reachable, schema, the binding table) run once; they get at least the
	// default deadline, so a short operation deadline does not fail a start on a busy server.
	opTimeout := s.timeout
	s.timeout = max(s.timeout, DefaultOperationTimeout)
	if err := s.prepare(ctx, opts.ReadOnly); err != nil {
		_ = s.db.Close()
		return nil, err
	}
	s.timeout = opTimeout
	return s, nil
}

func openMySQL(dsn, passwordFile, password string) (*sql.DB, error) {
	cfg, err := mysqlConfig(dsn, passwordFile)
	if err != nil {
		return nil, err
	}
	if passwordFile == "" && password != "" {
		cfg.Passwd = password
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(8)
	db.SetConnMaxLifetime(5 * time.Minute)
	return db, nil
}

// mysqlConfig is the driver configuration for a DSN: the DSN's own parameters, the password,
// the panel's session settings, and the default timeouts where the DSN sets none.
func mysqlConfig(dsn, passwordFile string) (*mysql.Config, error) {
	// [user[:password]@]...: a ":" before the last "@" is a password, whatever the driver makes
	// of the rest. Checked before the driver parses, because when the password holds a "/" the
	// driver reads part of it as the network, the database or a parameter, and may accept it as
	// such or quote it in its error.
	if at := strings.LastIndexByte(dsn, '@'); at >= 0 && strings.IndexByte(dsn[:at], ':') >= 0 {
		return nil, fmt.Errorf("%w: the panel DSN must not hold a password (user:password@); use --panel-password-file "+
			"or %s (an \"@\" in the database name or a parameter is escaped as %%40)", ErrInvalid, PasswordEnv)
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot parse the mysql DSN (want mysql://user@tcp(host:3306)/database): %s",
			ErrInvalid, strings.ReplaceAll(err.Error(), dsn, "<dsn>"))
	}
	if cfg.Passwd != "" {
		return nil, fmt.Errorf("%w: the panel DSN must not hold a password; use --panel-password-file or %s",
			ErrInvalid, PasswordEnv)
	}
	switch {
	case passwordFile != "":
		raw, err := os.ReadFile(passwordFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read the panel database password file: %w", err)
		}
		cfg.Passwd = strings.TrimRight(string(raw), "\r\n")
	default:
		cfg.Passwd = os.Getenv(PasswordEnv)
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	// The panel's own connection settings: UTC session, utf8mb4_unicode_ci.
	cfg.Params["time_zone"] = "'+00:00'"
	cfg.Collation = "utf8mb4_unicode_ci"
	cfg.ParseTime = false
	// Queries keep their placeholders and arguments; the driver escapes the arguments itself
	// (it refuses to for charsets where that is unsafe; utf8mb4 is safe) instead of a server-side
	// PREPARE, EXECUTE and CLOSE per query: one round trip instead of three.
	cfg.InterpolateParams = true
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultDialTimeout
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = defaultReadTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = defaultWriteTimeout
	}
	return cfg, nil
}

func openSQLite(path string) (*sql.DB, error) {
	name, err := sqliteName(path)
	if err != nil {
		return nil, err
	}
	registerCollation.Do(func() {
		sqlite.MustRegisterCollationUtf8("unicode_ci", func(a, b string) int { return CompareFolded(Fold(a), Fold(b)) })
	})
	db, err := sql.Open("sqlite", name)
	if err != nil {
		return nil, fmt.Errorf("cannot open the sqlite database: %w", err)
	}
	// One writer at a time is SQLite's rule; one connection keeps transactions from failing busy.
	db.SetMaxOpenConns(1)
	return db, nil
}

// sqlitePragmas are the store's connection settings: foreign keys enforced (the panel's cascades),
// waits for a lock instead of failing busy, and write-ahead logging.
const sqlitePragmas = "_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"

// sqliteName is the driver's name for the database file at path, with the store's pragmas.
func sqliteName(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("%w: the sqlite DSN needs a path, e.g. sqlite:///var/lib/puq/panel.db", ErrInvalid)
	}
	if strings.IndexByte(path, 0) >= 0 {
		return "", fmt.Errorf("%w: the sqlite DSN's path holds a NUL byte", ErrInvalid)
	}
	// SQLite reads the name as a file: URI. "%", "?" and "#" in the path are escaped, so that they
	// stay part of the file name instead of starting an escape, parameters (which would override
	// the pragmas) or a fragment; an absolute path gets an empty authority ("file://" + path), so
	// that one starting with "//" is not read as a host.
	name := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
	if strings.HasPrefix(path, "/") {
		name = "//" + name
	}
	return "file:" + name + "?" + sqlitePragmas, nil
}

// Engine says which kind of database this is.
func (s *Store) Engine() Engine { return s.engine }

// DB is the underlying handle, for tests and health checks.
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	return classify("reach the panel database", s.db.PingContext(ctx))
}

func (s *Store) prepare(ctx context.Context, readOnly bool) error {
	if err := s.Ping(ctx); err != nil {
		return err
	}
	if readOnly {
		if s.engine == EngineMySQL {
			if err := s.checkSchema(ctx); err != nil {
				return err
			}
		}
		has, err := s.hasTable(ctx, bindingTable)
		s.unbound = !has
		return classify("read the panel schema", err)
	}
	if s.engine == EngineSQLite {
		if _, err := s.db.ExecContext(ctx, sqliteSchema); err != nil {
			return classify("create the panel tables", err)
		}
	} else if err := s.checkSchema(ctx); err != nil {
		return err
	}
	if err := s.createBindingTable(ctx); err != nil {
		return err
	}
	return s.createMembershipBindingTable(ctx)
}

// requiredColumns are the panel tables and columns the operator reads or writes.
var requiredColumns = map[string][]string{
	"users": {"uuid", "email", "phone_number", "password", "status", "two_factor", "disable", "firstname",
		"lastname", "email_verified", "phone_verified", "language", "notes", "admin_notes",
		"password_reset_token", "password_reset_token_created_at", "created_at", "updated_at"},
	"verifications": {"uuid", "user_uuid", "type", "value", "secret", "device_name", "verified", "default",
		"expires_at", "last_used_at", "created_at", "updated_at"},
	"clients":       {"uuid", "firstname", "lastname", "company_name", "tax_id", "status"},
	"client_x_user": {"client_uuid", "user_uuid", "owner", "permissions", "created_at", "updated_at"},
	"activity_logs": {"uuid", "admin_uuid", "client_uuid", "user_uuid", "level", "action", "description",
		"model_type", "model_uuid", "model_old_data", "model_new_data", "ip_address", "created_at", "updated_at"},
}

// schemaOrder fixes the order tables are checked in, so the first error is always the same.
var schemaOrder = []string{"users", "verifications", "clients", "client_x_user", "activity_logs"}

func (s *Store) checkSchema(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = DATABASE()`)
	if err != nil {
		return classify("read the panel schema", err)
	}
	defer func() { _ = rows.Close() }()
	have := map[string]map[string]bool{}
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			return classify("read the panel schema", err)
		}
		if have[table] == nil {
			have[table] = map[string]bool{}
		}
		have[table][column] = true
	}
	if err := rows.Err(); err != nil {
		return classify("read the panel schema", err)
	}
	var problems []string
	for _, table := range schemaOrder {
		cols, ok := have[table]
		if !ok {
			problems = append(problems, fmt.Sprintf("table %s is missing", table))
			continue
		}
		for _, c := range requiredColumns[table] {
			if !cols[c] {
				problems = append(problems, fmt.Sprintf("table %s lacks column %s", table, c))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s: is this a PUQcloud database?", ErrSchema, strings.Join(problems, "; "))
	}
	return nil
}

// tx runs fn in one transaction, committing when it returns nil and rolling back otherwise.
func (s *Store) tx(ctx context.Context, op string, fn func(*sql.Tx) error) (err error) {
	ctx, done := s.begin(ctx, op)
	defer done(&err)
	for attempt := 1; ; attempt++ {
		err = s.attempt(ctx, fn)
		if !isDeadlock(err) || attempt > deadlockRetries || ctx.Err() != nil {
			return classify(op, err)
		}
	}
}

// deadlockRetries is how many times a transaction InnoDB rolled back as a deadlock's victim is run
// again. Two first writes at once (two new memberships, two adoptions) take gap locks on the same
// empty stretch of an index and then both insert: one of them is chosen as the victim. That is
// not an unavailable database; running it again, once the other has committed, succeeds.
const deadlockRetries = 3

// attempt runs fn in one transaction: committed when fn succeeds, rolled back otherwise.
func (s *Store) attempt(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// isDeadlock reports whether err is MySQL's "Deadlock found when trying to get lock" (1213): the
// whole transaction was rolled back and may be run again.
func isDeadlock(err error) bool {
	myErr, ok := errors.AsType[*mysql.MySQLError](err)
	return ok && myErr.Number == 1213
}

// begin starts one store operation: it bounds ctx by the operation deadline and returns a func
// that ends the operation, reporting its duration and error to Options.Observe. Use as
//
//	ctx, done := s.begin(ctx, op)
//	defer done(&err)
//
// Only the database work is bounded: a caller's wait before the call (a hash slot) is not.
func (s *Store) begin(ctx context.Context, op string) (context.Context, func(*error)) {
	ctx, cancel := s.deadline(ctx)
	start := time.Now()
	return ctx, func(err *error) {
		cancel()
		if s.observe != nil {
			s.observe(op, time.Since(start), *err)
		}
	}
}

// deadline bounds ctx by the operation deadline (Options.OperationTimeout); an earlier deadline
// of the caller's stays. A call that reaches it fails with ErrUnavailable (classify).
func (s *Store) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// forUpdate locks the rows a transaction reads on MySQL; SQLite locks the whole database anyway.
func (s *Store) forUpdate() string {
	if s.engine == EngineMySQL {
		return " FOR UPDATE"
	}
	return ""
}

// timestamp is the panel's created_at/updated_at form: Y-m-d H:i:s in the panel's timezone.
func (s *Store) timestamp() string {
	return s.now().In(s.loc).Format(time.DateTime)
}

func nullable(v string) any {
	if v == "" {
		return nil
	}
	return v
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

var errNoRows = sql.ErrNoRows

func isNoRows(err error) bool { return errors.Is(err, errNoRows) }
