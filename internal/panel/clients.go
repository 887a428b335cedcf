package panel

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// PermissionKeys are the panel's per-client permission keys, in the panel's order
// (config/userPermissions.php). Stored permissions always follow this order.
var PermissionKeys = []string{"modify-master-profile", "manage-users", "manage-services", "manage-domains",
	"manage-invoices", "manage-support-tickets", "manage-affiliate", "manage-orders"}

// Client is a panel client as the "User Clients" view shows it.
type Client struct {
	UUID        string
	Name        string // firstname and lastname
	CompanyName string
	TaxID       string
	Status      string // new, active, inactive, closed, fraud
}

// UserClient is a client a user is associated with.
type UserClient struct {
	Client
	Owner       bool
	Permissions []string
}

// Membership is one client_x_user row.
type Membership struct {
	Owner       bool
	Permissions []string
	// KeepOwner, with Owner, asks only that the user stays the client's owner as the panel has it:
	// ApplyMembership changes no client_x_user row and refuses (ErrRefused) when the user does not
	// own the client. It re-asserts an existing owner for a namespace not granted ownership.
	KeepOwner bool
}

// Satisfies reports whether the row m already is what ApplyMembership writes for want: the owner
// with every permission, or a member with exactly want's permissions.
func (m Membership) Satisfies(want Membership) bool {
	if want.Owner && want.KeepOwner {
		return m.Owner
	}
	if want.Owner {
		return m.Owner && slices.Equal(m.Permissions, PermissionKeys)
	}
	return !m.Owner && samePermissions(m.Permissions, want.Permissions)
}

const clientColumns = "c.`uuid`, c.`firstname`, c.`lastname`, c.`company_name`, c.`tax_id`, c.`status`"

func scanClient(scan func(...any) error, extra ...any) (Client, error) {
	var c Client
	var first, last, company, tax, status sql.NullString
	if err := scan(append([]any{&c.UUID, &first, &last, &company, &tax, &status}, extra...)...); err != nil {
		return c, err
	}
	c.Name = strings.TrimSpace(first.String + " " + last.String)
	c.CompanyName, c.TaxID, c.Status = company.String, tax.String, status.String
	return c, nil
}

// FindClient finds a client by UUID or, when clientUUID is empty, by company name (compared the
// way the panel's collation compares).
func (s *Store) FindClient(ctx context.Context, clientUUID, companyName string) (_ Client, err error) {
	ctx, done := s.begin(ctx, "find the panel client")
	defer done(&err)
	where, arg := "c.`uuid` = ?", any(clientUUID)
	if clientUUID == "" {
		where, arg = "c.`company_name` = ?", companyName
	}
	c, err := scanClient(s.db.QueryRowContext(ctx, "SELECT "+clientColumns+" FROM clients c WHERE "+where, arg).Scan)
	if isNoRows(err) {
		if clientUUID != "" {
			return c, fmt.Errorf("client %s: %w", clientUUID, ErrNotFound)
		}
		return c, fmt.Errorf("client with company name %q: %w", companyName, ErrNotFound)
	}
	return c, classify("read the panel client", err)
}

// ClientsNamed returns the clients whose company name is companyName (compared the way the
// panel's collation compares), at most two: one is the client the name stands for, two say the
// name is ambiguous. The caller judges the client against its grants before it shows any of them.
func (s *Store) ClientsNamed(ctx context.Context, companyName string) (_ []Client, err error) {
	ctx, done := s.begin(ctx, "find the panel clients by company name")
	defer done(&err)
	rows, err := s.db.QueryContext(ctx, "SELECT "+clientColumns+" FROM clients c WHERE c.`company_name` = ? "+
		"ORDER BY c.`uuid` LIMIT 2", companyName)
	if err != nil {
		return nil, classify("read the panel clients", err)
	}
	defer func() { _ = rows.Close() }()
	var out []Client
	for rows.Next() {
		c, err := scanClient(rows.Scan)
		if err != nil {
			return nil, classify("read the panel clients", err)
		}
		out = append(out, c)
	}
	return out, classify("read the panel clients", rows.Err())
}

// OwnerBinding returns the binding of the panel user that owns the client, and nothing else of
// the client: nil when the client has no owner, its owner no binding, or there is no such client,
// all three alike, so a caller that asks only to judge a grant learns nothing it may not.
func (s *Store) OwnerBinding(ctx context.Context, clientUUID string) (_ *Binding, err error) {
	ctx, done := s.begin(ctx, "read the binding of the client's owner")
	defer done(&err)
	b := &Binding{}
	err = s.db.QueryRowContext(ctx, "SELECT b.user_uuid, b.namespace, b.name, b.resource_uid, b.instance_id FROM client_x_user x "+
		"JOIN "+bindingTable+" b ON b.user_uuid = x.user_uuid WHERE x.client_uuid = ? AND x.`owner` = 1 "+
		"ORDER BY x.user_uuid LIMIT 1", clientUUID).Scan(&b.UserUUID, &b.Namespace, &b.Name, &b.ResourceUID, &b.InstanceID)
	if isNoRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, classify("read the binding of the client's owner", err)
	}
	return b, nil
}

// UserClients lists the clients a user is associated with, owner first, then by company and name:
// what the panel's "User Clients" view shows, including associations made in the panel UI.
func (s *Store) UserClients(ctx context.Context, userUUID string) (_ []UserClient, err error) {
	ctx, done := s.begin(ctx, "read the user's clients")
	defer done(&err)
	rows, err := s.db.QueryContext(ctx, "SELECT "+clientColumns+", x.`owner`, x.`permissions` FROM client_x_user x "+
		"JOIN clients c ON c.`uuid` = x.`client_uuid` WHERE x.`user_uuid` = ? "+
		"ORDER BY x.`owner` DESC, c.`company_name`, c.`firstname`, c.`uuid`", userUUID)
	if err != nil {
		return nil, classify("read the user's clients", err)
	}
	defer func() { _ = rows.Close() }()
	var out []UserClient
	for rows.Next() {
		var uc UserClient
		var perms sql.NullString
		uc.Client, err = scanClient(rows.Scan, &uc.Owner, &perms)
		if err != nil {
			return nil, classify("read the user's clients", err)
		}
		uc.Permissions = parsePermissions(perms.String)
		out = append(out, uc)
	}
	sortClients(out)
	return out, classify("read the user's clients", rows.Err())
}

// clientNamesOf names the clients a user is associated with, for refusal messages.
func (s *Store) clientNamesOf(ctx context.Context, q querier, userUUID string) ([]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT c.`uuid`, c.`company_name`, c.`firstname`, c.`lastname` FROM client_x_user x "+
		"JOIN clients c ON c.`uuid` = x.`client_uuid` WHERE x.`user_uuid` = ? ORDER BY c.`uuid`", userUUID)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var names []string
	for rows.Next() {
		var id string
		var company, first, last sql.NullString
		if err := rows.Scan(&id, &company, &first, &last); err != nil {
			return nil, err
		}
		name := company.String
		if name == "" {
			name = strings.TrimSpace(first.String + " " + last.String)
		}
		names = append(names, fmt.Sprintf("%s (%s)", name, id))
	}
	return names, rows.Err()
}

func (s *Store) readMembership(ctx context.Context, q querier, userUUID, clientUUID string, lock bool) (Membership, error) {
	var m Membership
	var perms sql.NullString
	query := "SELECT `owner`, `permissions` FROM client_x_user WHERE user_uuid = ? AND client_uuid = ?"
	if lock {
		query += s.forUpdate()
	}
	err := q.QueryRowContext(ctx, query, userUUID, clientUUID).Scan(&m.Owner, &perms)
	m.Permissions = parsePermissions(perms.String)
	return m, err
}

// ApplyMembership makes the association of b's user with b's client match want, and binds it to
// b's resource, in one transaction: a crash never leaves an association the operator made without
// its binding. As owner, it transfers ownership exactly as the panel's Client::updateOwner does
// (the previous owner keeps every permission and loses the flag; the new owner gets every
// permission); otherwise it writes the permissions as the panel's JSON array. It writes nothing
// when the row and the binding already match, and refuses (ErrRefused) to take ownership away
// from the owner (only a transfer can do that, as in the panel). An association bound to another
// resource is refused (ErrBoundElsewhere) unless that resource's UID is replacing: the caller saw
// that binding and decided to take it over. changed reports whether the association changed.
func (s *Store) ApplyMembership(ctx context.Context, b MembershipBinding, want Membership, replacing string) (bool, error) {
	perms, err := encodePermissions(want.Permissions)
	if err != nil {
		return false, err
	}
	all, _ := encodePermissions(PermissionKeys)
	changed := false
	err = s.tx(ctx, "write the association", func(tx *sql.Tx) error {
		now := s.timestamp()
		bound, err := s.lockMembershipBinding(ctx, tx, b.UserUUID, b.ClientUUID)
		if err != nil {
			return err
		}
		if bound != nil && !heldByWriter(*bound, b) && (replacing == "" || bound.ResourceUID != replacing) {
			return fmt.Errorf("%w: %s", ErrBoundElsewhere, describeHolder(bound))
		}
		wrote, err := s.writeAssociation(ctx, tx, b.UserUUID, b.ClientUUID, want, perms, all, now)
		if err != nil {
			return err
		}
		changed = wrote
		return s.bindMembership(ctx, tx, bound, b, now)
	})
	return changed && err == nil, err
}

// writeAssociation is ApplyMembership's change to client_x_user; it reports whether it wrote.
func (s *Store) writeAssociation(ctx context.Context, tx *sql.Tx, userUUID, clientUUID string, want Membership,
	perms, all, now string) (bool, error) {
	current, err := s.readMembership(ctx, tx, userUUID, clientUUID, true)
	exists := err == nil
	if err != nil && !isNoRows(err) {
		return false, err
	}
	if exists && current.Satisfies(want) {
		return false, nil
	}
	if want.KeepOwner {
		return false, fmt.Errorf("%w: the user no longer owns the client, and making it the owner is not granted", ErrRefused)
	}
	if want.Owner {
		if !exists {
			if err := s.insertMembership(ctx, tx, userUUID, clientUUID, all, now); err != nil {
				return false, err
			}
		}
		return true, s.transferOwnership(ctx, tx, userUUID, clientUUID, all, now)
	}
	if exists && current.Owner {
		return false, fmt.Errorf("%w: the user owns the client; make another user the owner to take ownership away", ErrRefused)
	}
	if !exists {
		return true, s.insertMembership(ctx, tx, userUUID, clientUUID, perms, now)
	}
	_, err = tx.ExecContext(ctx, "UPDATE client_x_user SET `permissions` = ?, `updated_at` = ? "+
		"WHERE user_uuid = ? AND client_uuid = ?", perms, now, userUUID, clientUUID)
	return true, err
}

func (s *Store) insertMembership(ctx context.Context, tx *sql.Tx, userUUID, clientUUID, perms, now string) error {
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM users WHERE uuid = ?", userUUID).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("user %s: %w", userUUID, ErrNotFound)
	}
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM clients WHERE uuid = ?", clientUUID).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("client %s: %w", clientUUID, ErrNotFound)
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO client_x_user (`client_uuid`, `user_uuid`, `owner`, `permissions`, "+
		"`created_at`, `updated_at`) VALUES (?, ?, 0, ?, ?, ?)", clientUUID, userUUID, perms, now, now)
	return err
}

// transferOwnership is Client::updateOwner: every key to the previous owner, the flag cleared on
// every row of the client, then the flag and every key on the new owner's row.
func (s *Store) transferOwnership(ctx context.Context, tx *sql.Tx, userUUID, clientUUID, all, now string) error {
	if _, err := tx.ExecContext(ctx, "UPDATE client_x_user SET `permissions` = ?, `updated_at` = ? "+
		"WHERE client_uuid = ? AND `owner` = 1 AND user_uuid <> ?", all, now, clientUUID, userUUID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE client_x_user SET `owner` = 0, `updated_at` = ? "+
		"WHERE client_uuid = ? AND `owner` = 1 AND user_uuid <> ?", now, clientUUID, userUUID); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, "UPDATE client_x_user SET `owner` = 1, `permissions` = ?, `updated_at` = ? "+
		"WHERE client_uuid = ? AND user_uuid = ?", all, now, clientUUID, userUUID)
	return err
}

// RemoveMembership removes the association bound to b's resource, and its binding, in one
// transaction. An association not bound, or bound to another resource, is left alone: it was made
// in the panel UI or by someone else. An association already gone only loses its binding.
// Removing the client's owner is refused (ErrRefused), as the panel refuses ("Cannot remove
// owner"), and keeps the binding.
func (s *Store) RemoveMembership(ctx context.Context, b MembershipBinding) error {
	return s.tx(ctx, "remove the association", func(tx *sql.Tx) error {
		bound, err := s.lockMembershipBinding(ctx, tx, b.UserUUID, b.ClientUUID)
		if err != nil || bound == nil || !heldByWriter(*bound, b) {
			return err
		}
		current, err := s.readMembership(ctx, tx, b.UserUUID, b.ClientUUID, true)
		if isNoRows(err) {
			return unbindMembership(ctx, tx, b)
		}
		if err != nil {
			return err
		}
		if current.Owner {
			return fmt.Errorf("%w: Cannot remove owner", ErrRefused)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM client_x_user WHERE user_uuid = ? AND client_uuid = ?",
			b.UserUUID, b.ClientUUID); err != nil {
			return err
		}
		return unbindMembership(ctx, tx, b)
	})
}

// ClientOwner returns the UUID of the client's owner, or "" when it has none.
func (s *Store) ClientOwner(ctx context.Context, clientUUID string) (string, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var owner string
	err := s.db.QueryRowContext(ctx, "SELECT user_uuid FROM client_x_user WHERE client_uuid = ? AND `owner` = 1 "+
		"ORDER BY user_uuid LIMIT 1", clientUUID).Scan(&owner)
	if isNoRows(err) {
		return "", nil
	}
	return owner, classify("read the client's owner", err)
}

// encodePermissions renders permission keys as the panel stores them: a JSON array in the panel's
// key order, without duplicates.
func encodePermissions(keys []string) (string, error) {
	ordered := make([]string, 0, len(keys))
	for _, k := range PermissionKeys {
		if slices.Contains(keys, k) {
			ordered = append(ordered, k)
		}
	}
	for _, k := range keys {
		if !slices.Contains(PermissionKeys, k) {
			return "", fmt.Errorf("%w: unknown permission %q", ErrInvalid, k)
		}
	}
	b, err := json.Marshal(ordered)
	return string(b), err
}

// parsePermissions reads a stored permissions value, returning the known keys in panel order.
func parsePermissions(v string) []string {
	var keys []string
	if err := json.Unmarshal([]byte(v), &keys); err != nil {
		return []string{}
	}
	out := make([]string, 0, len(keys))
	for _, k := range PermissionKeys {
		if slices.Contains(keys, k) {
			out = append(out, k)
		}
	}
	return out
}

func samePermissions(stored, desired []string) bool {
	a, _ := encodePermissions(stored)
	b, _ := encodePermissions(desired)
	return a == b
}
