package panel

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// bindingTable is the operator's own table, the one it may create on MySQL: which User resource
// (by UID, in which cluster, of which operator instance) manages which panel user, so that
// ownership survives a lost status. Operator.Claim says whose a row is.
const bindingTable = "puq_operator_bindings"

// Binding says that a panel user belongs to a User resource.
type Binding struct {
	UserUUID    string
	Namespace   string
	Name        string
	ResourceUID string
	InstanceID  string
	// ClusterID is the identity of the cluster the resource lives in (Operator.Cluster); "" in
	// a row written before the operator recorded it.
	ClusterID string
	// SecretVersion identifies the password Secret content last written to the panel (its UID and
	// resourceVersion). Kept here, not only in status, so a stale cache or a lost status never
	// makes the operator hash and write the same password again.
	SecretVersion string
}

// Operator identifies the operator installation that writes bindings: its --instance-id, the
// cluster it runs in (the UID of the kube-system namespace, or --cluster-id), and the previous
// cluster whose bindings it takes over by namespace and name (--previous-cluster-id; "" for
// none). A resource is known by its UID: a binding is its own only when it was written for that
// UID in this cluster, so an object re-created under an old name (a finalizer stripped, a
// namespace deleted and created again) inherits nothing, and two clusters sharing one panel
// with the same instance ID never take each other's bindings. Taking over the bindings of a
// rebuilt cluster, whose objects all have new UIDs, is the explicit PreviousCluster.
type Operator struct {
	Instance        string
	Cluster         string
	PreviousCluster string
}

// Claim is how a binding relates to a resource (Operator.Claim).
type Claim int

// The claims, from Operator.Claim.
const (
	// ClaimNone: there is no binding.
	ClaimNone Claim = iota
	// ClaimOwn: the binding is the resource's: written for its UID in this cluster (or before the
	// cluster was recorded), or for its namespace and name in the previous cluster.
	ClaimOwn
	// ClaimStale: the binding was written in this cluster for an earlier resource of the same
	// namespace and name, which is gone without having released it. The resource inherits
	// nothing from it: the panel user is as good as unbound.
	ClaimStale
	// ClaimOther: the binding belongs to another resource of this operator instance and cluster.
	ClaimOther
	// ClaimForeign: the binding belongs to another operator instance or another cluster.
	ClaimForeign
)

// ours reports whether a binding written in cluster belongs to this operator's cluster: written
// in it, or before the operator recorded clusters (such rows are matched by UID, and the next
// write records the cluster).
func (o Operator) ours(instance, cluster string) bool {
	return instance == o.Instance && (cluster == o.Cluster || cluster == "")
}

// previous reports whether a binding written in cluster was written in the previous cluster.
func (o Operator) previous(instance, cluster string) bool {
	return instance == o.Instance && o.PreviousCluster != "" && cluster == o.PreviousCluster && cluster != o.Cluster
}

// Claim says how the binding b (nil: none) relates to the resource namespace/name with the UID.
func (o Operator) Claim(b *Binding, namespace, name, uid string) Claim {
	switch {
	case b == nil:
		return ClaimNone
	case o.previous(b.InstanceID, b.ClusterID):
		if b.Namespace == namespace && b.Name == name {
			return ClaimOwn
		}
		return ClaimOther
	case !o.ours(b.InstanceID, b.ClusterID):
		return ClaimForeign
	case b.Namespace != namespace || b.Name != name:
		return ClaimOther
	case b.ResourceUID == uid:
		return ClaimOwn
	}
	return ClaimStale
}

// sameHolder reports whether two bindings name the same resource of the same operator and
// cluster (the panel user and the Secret version aside).
func sameHolder(a, b Binding) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && a.ResourceUID == b.ResourceUID &&
		a.InstanceID == b.InstanceID && a.ClusterID == b.ClusterID
}

// bindingColumns are the columns of bindingTable the store reads, in scanBinding's order.
const bindingColumns = "user_uuid, namespace, name, resource_uid, instance_id, cluster_id, secret_version"

// scanBinding reads bindingColumns.
func scanBinding(scan func(...any) error) (Binding, error) {
	var b Binding
	var version sql.NullString
	err := scan(&b.UserUUID, &b.Namespace, &b.Name, &b.ResourceUID, &b.InstanceID, &b.ClusterID, &version)
	b.SecretVersion = version.String
	return b, err
}

func (s *Store) createBindingTable(ctx context.Context) error {
	ddl := "CREATE TABLE IF NOT EXISTS " + bindingTable + ` (
  user_uuid VARCHAR(36) NOT NULL PRIMARY KEY,
  namespace VARCHAR(253) NOT NULL,
  name VARCHAR(253) NOT NULL,
  resource_uid VARCHAR(36) NOT NULL,
  instance_id VARCHAR(253) NOT NULL,
  cluster_id VARCHAR(253) NOT NULL DEFAULT '',
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
	if err := s.addColumn(ctx, bindingTable, "secret_version", "VARCHAR(255) NULL", "instance_id"); err != nil {
		return err
	}
	return s.addColumn(ctx, bindingTable, "cluster_id", "VARCHAR(253) NOT NULL DEFAULT ''", "instance_id")
}

// addColumn adds a column that a later version of the operator added to one of its own tables,
// after the column named after (on MySQL; SQLite adds columns last), when the table lacks it:
// an installation upgrades in place. Rows already there get the column's default.
func (s *Store) addColumn(ctx context.Context, table, column, definition, after string) error {
	query := "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?"
	if s.engine == EngineSQLite {
		query = "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?"
	}
	var n int
	if err := s.db.QueryRowContext(ctx, query, table, column).Scan(&n); err != nil {
		return classify("inspect the operator's table "+table, err)
	}
	if n > 0 {
		return nil
	}
	ddl := "ALTER TABLE " + table + " ADD COLUMN " + column + " " + definition
	if s.engine == EngineMySQL {
		ddl += " AFTER " + after
	}
	_, err := s.db.ExecContext(ctx, ddl)
	return classify("add column "+column+" to the operator's table "+table, err)
}

// GetBinding returns the binding of a panel user; ErrNotFound when it has none.
func (s *Store) GetBinding(ctx context.Context, userUUID string) (_ Binding, err error) {
	ctx, done := s.begin(ctx, "read the binding")
	defer done(&err)
	b, err := scanBinding(s.db.QueryRowContext(ctx, "SELECT "+bindingColumns+" FROM "+bindingTable+
		" WHERE user_uuid = ?", userUUID).Scan)
	if isNoRows(err) {
		return Binding{UserUUID: userUUID}, fmt.Errorf("binding of user %s: %w", userUUID, ErrNotFound)
	}
	return b, classify("read the binding", err)
}

// FindBinding returns the binding the resource namespace/name with the UID holds (Claim
// ClaimOwn; the most recently written when it holds several); ErrNotFound when it holds none.
func (s *Store) FindBinding(ctx context.Context, o Operator, namespace, name, uid string) (Binding, error) {
	own, err := s.ownBindings(ctx, "find the binding", o, namespace, name, uid)
	if err != nil {
		return Binding{}, err
	}
	if len(own) == 0 {
		return Binding{}, fmt.Errorf("binding of %s/%s: %w", namespace, name, ErrNotFound)
	}
	latest := own[0]
	for _, b := range own[1:] {
		if b.updatedAt > latest.updatedAt {
			latest = b
		}
	}
	return latest.Binding, nil
}

// datedBinding is a binding with its updated_at.
type datedBinding struct {
	Binding
	updatedAt string
}

// ownBindings are the bindings of this operator instance that name the resource namespace/name
// and that the resource with the UID holds (Operator.Claim says ClaimOwn), by panel user UUID.
func (s *Store) ownBindings(ctx context.Context, op string, o Operator, namespace, name, uid string) (
	_ []datedBinding, err error) {
	ctx, done := s.begin(ctx, op)
	defer done(&err)
	rows, err := s.db.QueryContext(ctx, "SELECT "+bindingColumns+", updated_at FROM "+bindingTable+
		" WHERE instance_id = ? AND namespace = ? AND name = ? ORDER BY user_uuid", o.Instance, namespace, name)
	if err != nil {
		return nil, classify(op, err)
	}
	defer func() { _ = rows.Close() }()
	var out []datedBinding
	for rows.Next() {
		var updated sql.NullString
		b, err := scanBinding(func(dest ...any) error { return rows.Scan(append(dest, &updated)...) })
		if err != nil {
			return nil, classify(op, err)
		}
		if o.Claim(&b, namespace, name, uid) == ClaimOwn {
			out = append(out, datedBinding{Binding: b, updatedAt: updated.String})
		}
	}
	return out, classify(op, rows.Err())
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
		"instance_id, cluster_id, secret_version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		b.UserUUID, b.Namespace, b.Name, b.ResourceUID, b.InstanceID, b.ClusterID, nullable(b.SecretVersion), now, now)
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
