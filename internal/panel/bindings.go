package panel

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// bindingTable is the operator's own table, the one it may create on MySQL: which User resource
// manages which panel user, so that ownership survives a lost status (a restore from git into a
// new cluster re-binds instead of conflicting).
const bindingTable = "puq_operator_bindings"

// Binding says that a panel user belongs to a User resource.
type Binding struct {
	UserUUID    string
	Namespace   string
	Name        string
	ResourceUID string
	InstanceID  string
	// SecretVersion identifies the password Secret content last written to the panel (its UID and
	// resourceVersion). Kept here, not only in status, so a stale cache or a lost status never
	// makes the operator hash and write the same password again.
	SecretVersion string
}

// SameResource reports whether b is held by the resource namespace/name of operator instance.
// The UID may differ: a resource re-applied to a new cluster keeps its name, not its UID.
func (b Binding) SameResource(namespace, name, instance string) bool {
	return b.Namespace == namespace && b.Name == name && b.InstanceID == instance
}

func (s *Store) createBindingTable(ctx context.Context) error {
	ddl := "CREATE TABLE IF NOT EXISTS " + bindingTable + ` (
  user_uuid VARCHAR(36) NOT NULL PRIMARY KEY,
  namespace VARCHAR(253) NOT NULL,
  name VARCHAR(253) NOT NULL,
  resource_uid VARCHAR(36) NOT NULL,
  instance_id VARCHAR(253) NOT NULL,
  secret_version VARCHAR(255) NULL,
  created_at TIMESTAMP NULL,
  updated_at TEXT NULL`
	if s.engine == EngineMySQL {
		ddl += ",\n  KEY puq_operator_bindings_resource_index (instance_id, namespace, name)\n)" +
			" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
	} else {
		ddl += "\n)"
	}
	if _, err := s.db.ExecContext(ctx, ddl); err != nil {
		return classify("create the operator's binding table "+bindingTable, err)
	}
	return s.upgradeBindingTable(ctx)
}

// upgradeBindingTable adds the columns later versions of the operator added to its own table.
func (s *Store) upgradeBindingTable(ctx context.Context) error {
	query := "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?"
	if s.engine == EngineSQLite {
		query = "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?"
	}
	var n int
	if err := s.db.QueryRowContext(ctx, query, bindingTable, "secret_version").Scan(&n); err != nil {
		return classify("inspect the operator's binding table", err)
	}
	if n > 0 {
		return nil
	}
	_, err := s.db.ExecContext(ctx, "ALTER TABLE "+bindingTable+" ADD COLUMN secret_version VARCHAR(255) NULL")
	return classify("upgrade the operator's binding table", err)
}

// GetBinding returns the binding of a panel user; ErrNotFound when it has none.
func (s *Store) GetBinding(ctx context.Context, userUUID string) (_ Binding, err error) {
	ctx, done := s.begin(ctx, "read the binding")
	defer done(&err)
	b := Binding{UserUUID: userUUID}
	var version sql.NullString
	err = s.db.QueryRowContext(ctx, "SELECT namespace, name, resource_uid, instance_id, secret_version FROM "+bindingTable+
		" WHERE user_uuid = ?", userUUID).Scan(&b.Namespace, &b.Name, &b.ResourceUID, &b.InstanceID, &version)
	b.SecretVersion = version.String
	if isNoRows(err) {
		return b, fmt.Errorf("binding of user %s: %w", userUUID, ErrNotFound)
	}
	return b, classify("read the binding", err)
}

// FindBinding returns the binding held by a resource; ErrNotFound when it holds none.
func (s *Store) FindBinding(ctx context.Context, instance, namespace, name string) (_ Binding, err error) {
	ctx, done := s.begin(ctx, "find the binding")
	defer done(&err)
	b := Binding{Namespace: namespace, Name: name, InstanceID: instance}
	var version sql.NullString
	err = s.db.QueryRowContext(ctx, "SELECT user_uuid, resource_uid, secret_version FROM "+bindingTable+
		" WHERE instance_id = ? AND namespace = ? AND name = ? ORDER BY updated_at DESC LIMIT 1",
		instance, namespace, name).Scan(&b.UserUUID, &b.ResourceUID, &version)
	b.SecretVersion = version.String
	if isNoRows(err) {
		return b, fmt.Errorf("binding of %s/%s: %w", namespace, name, ErrNotFound)
	}
	return b, classify("read the binding", err)
}

// Bind records that the panel user belongs to the resource, replacing any earlier binding of the
// user. It writes nothing when the binding is already exactly this one.
func (s *Store) Bind(ctx context.Context, b Binding) error {
	return s.tx(ctx, "bind the panel user", func(tx *sql.Tx) error {
		cur, err := readBinding(ctx, tx, b.UserUUID, s.forUpdate())
		if err != nil || (cur != nil && *cur == b) {
			return err
		}
		return writeBinding(ctx, tx, cur != nil, b, s.timestamp())
	})
}

func insertBinding(ctx context.Context, tx *sql.Tx, b Binding, now string) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO "+bindingTable+" (user_uuid, namespace, name, resource_uid, "+
		"instance_id, secret_version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		b.UserUUID, b.Namespace, b.Name, b.ResourceUID, b.InstanceID, nullable(b.SecretVersion), now, now)
	return err
}

// CreateDemoClient adds a client to an embedded SQLite database, for trying the operator without
// a panel. It is idempotent by company name and refused on MySQL, where clients are the panel's.
func (s *Store) CreateDemoClient(ctx context.Context, c Client) (Client, error) {
	if s.engine != EngineSQLite {
		return Client{}, fmt.Errorf("%w: demo clients exist only in the embedded SQLite database", ErrRefused)
	}
	if existing, err := s.FindClient(ctx, "", c.CompanyName); err == nil {
		return existing, nil
	}
	now := s.timestamp()
	first, last, _ := strings.Cut(c.Name, " ")
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	status := c.Status
	if status == "" {
		status = "active"
	}
	_, err := s.db.ExecContext(ctx, "INSERT INTO clients (uuid, firstname, lastname, company_name, tax_id, status, "+
		"created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", c.UUID, first, nullable(last), nullable(c.CompanyName),
		nullable(c.TaxID), status, now, now)
	if err != nil {
		return Client{}, classify("create the demo client", err)
	}
	return s.FindClient(ctx, c.UUID, "")
}
