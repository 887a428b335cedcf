package panel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// membershipBindingTable is the operator's own record of the associations (client_x_user rows) it
// made: which ClientMembership resource each belongs to. It is written in the transaction that
// writes the association, so an association the operator made is never without its binding, and
// a deletion removes exactly what its resource made, whatever the resource's status says (a lost
// status write must not leave an association behind). An association not bound, or bound to
// another resource, was made by someone else (the panel UI, another membership) and is never
// removed. Like bindingTable, it is the only kind of table the operator creates on MySQL.
const membershipBindingTable = "puq_operator_membership_bindings"

// ErrBoundElsewhere: the association is bound to another resource than the one writing it, and
// the caller did not say it takes that binding over. Nothing was written; the caller's view of
// the binding is stale: read it again.
var ErrBoundElsewhere = errors.New("the association is bound to another resource")

// MembershipBinding says that the association of a panel user with a client belongs to a
// ClientMembership resource of an operator instance.
type MembershipBinding struct {
	UserUUID    string
	ClientUUID  string
	Namespace   string
	Name        string
	ResourceUID string
	InstanceID  string
	// ClusterID is the cluster the resource lives in (Operator.Cluster); "" in a row written
	// before the operator recorded it.
	ClusterID string
}

// HeldBy reports whether the binding belongs to the resource namespace/name with the UID, as
// Operator.Claim matches a User's binding: by UID in this cluster (or in a row written before
// the cluster was recorded), by namespace and name in the previous cluster. A binding an earlier
// resource of the same name left behind is not this one's.
func (b MembershipBinding) HeldBy(o Operator, namespace, name, uid string) bool {
	if o.previous(b.InstanceID, b.ClusterID) {
		return b.Namespace == namespace && b.Name == name
	}
	return o.ours(b.InstanceID, b.ClusterID) && b.ResourceUID == uid
}

// Foreign reports whether the binding belongs to another operator instance or another cluster
// than o.
func (b MembershipBinding) Foreign(o Operator) bool {
	return !o.ours(b.InstanceID, b.ClusterID) && !o.previous(b.InstanceID, b.ClusterID)
}

// heldByWriter reports whether the binding bound, read in a transaction, belongs to the resource
// of b, the binding being written or removed: the same resource of the same operator, in the same
// cluster or in a row that has no cluster yet.
func heldByWriter(bound, b MembershipBinding) bool {
	return bound.InstanceID == b.InstanceID && bound.ResourceUID == b.ResourceUID &&
		(bound.ClusterID == b.ClusterID || bound.ClusterID == "")
}

// MembershipState is what the panel has for one user and one client.
type MembershipState struct {
	// Association is the client_x_user row; nil when the user is not associated with the client.
	Association *Membership
	// Binding names the resource the association belongs to; nil when none does.
	Binding *MembershipBinding
}

func (s *Store) createMembershipBindingTable(ctx context.Context) error {
	ddl := "CREATE TABLE IF NOT EXISTS " + membershipBindingTable + ` (
  user_uuid VARCHAR(36) NOT NULL,
  client_uuid VARCHAR(36) NOT NULL,
  namespace VARCHAR(253) NOT NULL,
  name VARCHAR(253) NOT NULL,
  resource_uid VARCHAR(36) NOT NULL,
  instance_id VARCHAR(253) NOT NULL,
  cluster_id VARCHAR(253) NOT NULL DEFAULT '',
  created_at DATETIME NULL,
  updated_at DATETIME NULL,
  PRIMARY KEY (user_uuid, client_uuid)`
	index := "CREATE INDEX IF NOT EXISTS " + membershipBindingTable + "_resource_index ON " + membershipBindingTable +
		" (instance_id, resource_uid)"
	if s.engine == EngineMySQL {
		ddl += ",\n  KEY " + membershipBindingTable + "_resource_index (instance_id, resource_uid)\n)" +
			" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
		index = ""
	} else {
		ddl += "\n)"
	}
	if _, err := s.db.ExecContext(ctx, ddl); err != nil {
		return classify("create the operator's membership binding table "+membershipBindingTable, err)
	}
	if index != "" {
		if _, err := s.db.ExecContext(ctx, index); err != nil {
			return classify("index the operator's membership binding table", err)
		}
	}
	return s.addColumn(ctx, membershipBindingTable, "cluster_id", "VARCHAR(253) NOT NULL DEFAULT ''", "instance_id")
}

const membershipStateColumns = "x.`owner`, x.`permissions`, b.namespace, b.name, b.resource_uid, b.instance_id, b.cluster_id"

// scanMembershipState reads membershipStateColumns into a state for the user and client.
func scanMembershipState(scan func(...any) error, userUUID, clientUUID string, extra ...any) (MembershipState, error) {
	var owner sql.NullBool
	var perms, namespace, name, uid, instance, cluster sql.NullString
	if err := scan(append([]any{&owner, &perms, &namespace, &name, &uid, &instance, &cluster}, extra...)...); err != nil {
		return MembershipState{}, err
	}
	var st MembershipState
	if owner.Valid {
		st.Association = &Membership{Owner: owner.Bool, Permissions: parsePermissions(perms.String)}
	}
	if uid.Valid {
		st.Binding = &MembershipBinding{UserUUID: userUUID, ClientUUID: clientUUID, Namespace: namespace.String,
			Name: name.String, ResourceUID: uid.String, InstanceID: instance.String, ClusterID: cluster.String}
	}
	return st, nil
}

// MembershipState reads the association of a user with a client and its binding, in one query.
func (s *Store) MembershipState(ctx context.Context, userUUID, clientUUID string) (_ MembershipState, err error) {
	ctx, done := s.begin(ctx, "read the association")
	defer done(&err)
	st, err := scanMembershipState(s.db.QueryRowContext(ctx, "SELECT "+membershipStateColumns+
		" FROM (SELECT ? AS user_uuid, ? AS client_uuid) k"+
		" LEFT JOIN client_x_user x ON x.user_uuid = k.user_uuid AND x.client_uuid = k.client_uuid"+
		" LEFT JOIN "+membershipBindingTable+" b ON b.user_uuid = k.user_uuid AND b.client_uuid = k.client_uuid",
		userUUID, clientUUID).Scan, userUUID, clientUUID)
	return st, classify("read the association", err)
}

// BoundMemberships lists the associations bound to the resource namespace/name with the UID
// (MembershipBinding.HeldBy), each with its state (Association nil when the row is gone, as when
// the panel user was deleted): what the resource made and its deletion must undo.
func (s *Store) BoundMemberships(ctx context.Context, o Operator, namespace, name, uid string) (_ []MembershipState, err error) {
	ctx, done := s.begin(ctx, "read the bound associations")
	defer done(&err)
	where, args := "b.instance_id = ? AND b.resource_uid = ?", []any{o.Instance, uid}
	if o.PreviousCluster != "" {
		where = "b.instance_id = ? AND (b.resource_uid = ? OR (b.cluster_id = ? AND b.namespace = ? AND b.name = ?))"
		args = append(args, o.PreviousCluster, namespace, name)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+membershipStateColumns+", b.user_uuid, b.client_uuid FROM "+
		membershipBindingTable+" b LEFT JOIN client_x_user x ON x.user_uuid = b.user_uuid AND x.client_uuid = b.client_uuid"+
		" WHERE "+where+" ORDER BY b.user_uuid, b.client_uuid", args...)
	if err != nil {
		return nil, classify("read the bound associations", err)
	}
	defer func() { _ = rows.Close() }()
	var out []MembershipState
	for rows.Next() {
		var user, client string
		st, err := scanMembershipState(rows.Scan, "", "", &user, &client)
		if err != nil {
			return nil, classify("read the bound associations", err)
		}
		st.Binding.UserUUID, st.Binding.ClientUUID = user, client
		if st.Binding.HeldBy(o, namespace, name, uid) {
			out = append(out, st)
		}
	}
	return out, classify("read the bound associations", rows.Err())
}

// lockMembershipBinding reads the binding of a user and client inside a transaction, locking it;
// nil when there is none.
func (s *Store) lockMembershipBinding(ctx context.Context, tx *sql.Tx, userUUID, clientUUID string) (*MembershipBinding, error) {
	b := MembershipBinding{UserUUID: userUUID, ClientUUID: clientUUID}
	err := tx.QueryRowContext(ctx, "SELECT namespace, name, resource_uid, instance_id, cluster_id FROM "+
		membershipBindingTable+" WHERE user_uuid = ? AND client_uuid = ?"+s.forUpdate(), userUUID, clientUUID).
		Scan(&b.Namespace, &b.Name, &b.ResourceUID, &b.InstanceID, &b.ClusterID)
	if isNoRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// bindMembership records b in a transaction, given the binding cur the transaction read (nil for
// none). It writes nothing when cur is already b.
func (s *Store) bindMembership(ctx context.Context, tx *sql.Tx, cur *MembershipBinding, b MembershipBinding, now string) error {
	if cur != nil && *cur == b {
		return nil
	}
	if cur == nil {
		_, err := tx.ExecContext(ctx, "INSERT INTO "+membershipBindingTable+" (user_uuid, client_uuid, namespace, name, "+
			"resource_uid, instance_id, cluster_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
			b.UserUUID, b.ClientUUID, b.Namespace, b.Name, b.ResourceUID, b.InstanceID, b.ClusterID, now, now)
		return err
	}
	_, err := tx.ExecContext(ctx, "UPDATE "+membershipBindingTable+" SET namespace = ?, name = ?, resource_uid = ?, "+
		"instance_id = ?, cluster_id = ?, updated_at = ? WHERE user_uuid = ? AND client_uuid = ?",
		b.Namespace, b.Name, b.ResourceUID, b.InstanceID, b.ClusterID, now, b.UserUUID, b.ClientUUID)
	return err
}

func unbindMembership(ctx context.Context, tx *sql.Tx, b MembershipBinding) error {
	_, err := tx.ExecContext(ctx, "DELETE FROM "+membershipBindingTable+" WHERE user_uuid = ? AND client_uuid = ?",
		b.UserUUID, b.ClientUUID)
	return err
}

// ReleaseMembership forgets the binding b, leaving the association as it is (deletionPolicy
// Retain, or an owner the panel will not remove): from then on the association is the panel's
// alone. A binding already gone, or now held by another resource, is left alone.
func (s *Store) ReleaseMembership(ctx context.Context, b MembershipBinding) (err error) {
	ctx, done := s.begin(ctx, "release the association")
	defer done(&err)
	_, err = s.db.ExecContext(ctx, "DELETE FROM "+membershipBindingTable+
		" WHERE user_uuid = ? AND client_uuid = ? AND instance_id = ? AND resource_uid = ? AND cluster_id = ?",
		b.UserUUID, b.ClientUUID, b.InstanceID, b.ResourceUID, b.ClusterID)
	return classify("release the association", err)
}

// describeHolder names a binding's resource for an error message.
func describeHolder(b *MembershipBinding) string {
	return fmt.Sprintf("%s/%s (instance %q, cluster %q)", b.Namespace, b.Name, b.InstanceID, b.ClusterID)
}
