package panel

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/puqcloud/puq-user-operator/internal/password"
)

// ErrConflict: the panel user's binding is no longer what the caller read (another resource or
// operator instance bound it in between). Nothing was written; read again and decide again.
var ErrConflict = errors.New("the panel user's binding changed since it was read")

// UserChange is everything one reconcile writes to one panel user, applied by Apply in one
// transaction: its columns, verification rows, password hash, activity row and binding together,
// or nothing.
type UserChange struct {
	// UUID is the panel user to change; "" creates one.
	UUID string
	// Desired are the managed fields; nil leaves them as they are.
	Desired *DesiredUser
	// PasswordHash, when set, becomes the password (stored in the $2y$ form PHP requires).
	PasswordHash string
	// Binding is the binding the user must have afterwards (its UserUUID is filled in); nil leaves
	// the binding alone.
	Binding *Binding
	// Expect is the binding the caller saw when it decided (nil: the user was unbound). When the
	// row differs at commit time, Apply writes nothing and fails with ErrConflict, so two resources
	// can never both adopt one panel user. Ignored when creating.
	Expect *Binding
	// Unbind are panel users whose bindings go in the same transaction: the resource's bindings to
	// panel users deleted behind the operator's back (Located.Stale), when it creates their
	// replacement.
	Unbind []string
}

// Applied is what Apply did.
type Applied struct {
	// User is the panel user as it is now.
	User User
	// Created says the panel user was inserted.
	Created bool
	// Changed names what changed on an existing user: columns, "emailVerification", "totp",
	// "defaultMethod"; "password" when the hash was set.
	Changed []string
	// Bound says the binding row was written.
	Bound bool
}

// Apply writes c in one transaction. Creating inserts the user, its email verification row, its
// binding and an activity row; changing an existing one locks its row and its binding, writes only
// what differs (no UPDATE, no updated_at change, no activity row when nothing does) with the
// password in the same UPDATE and one activity row, and writes the binding. ErrNotFound when the
// user is gone; ErrConflict when its binding is not c.Expect.
func (s *Store) Apply(ctx context.Context, c UserChange) (Applied, error) {
	hash := ""
	if c.PasswordHash != "" {
		h, err := PanelHash(c.PasswordHash)
		if err != nil {
			return Applied{}, err
		}
		hash = h
	}
	if c.Desired != nil {
		if err := c.Desired.validate(); err != nil {
			return Applied{}, err
		}
	}
	if c.UUID == "" {
		if c.Desired == nil || hash == "" {
			return Applied{}, fmt.Errorf("%w: a new panel user needs its fields and a password", ErrInvalid)
		}
		var out Applied
		err := s.tx(ctx, "create the panel user", func(tx *sql.Tx) error {
			for _, id := range c.Unbind {
				if _, err := tx.ExecContext(ctx, "DELETE FROM "+bindingTable+" WHERE user_uuid = ?", id); err != nil {
					return err
				}
			}
			var err error
			out, err = s.createUser(ctx, tx, *c.Desired, hash, c.Binding)
			return err
		})
		return out, err
	}
	var out Applied
	err := s.tx(ctx, "update the panel user", func(tx *sql.Tx) error {
		var err error
		out, err = s.changeUser(ctx, tx, c, hash)
		return err
	})
	return out, err
}

func (s *Store) createUser(ctx context.Context, tx *sql.Tx, d DesiredUser, hash string, b *Binding) (Applied, error) {
	id := uuid.NewString()
	now := s.timestamp()
	status, disable := "new", false
	if d.State != StateUnmanaged {
		status, disable = string(d.State), d.State == StateInactive
	}
	if err := phoneTaken(ctx, tx, d.Phone, id); err != nil {
		return Applied{}, err
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO users (`uuid`, `email`, `phone_number`, `password`, `status`, "+
		"`two_factor`, `disable`, `firstname`, `lastname`, `email_verified`, `phone_verified`, `language`, "+
		"`admin_notes`, `created_at`, `updated_at`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		id, d.Email, nullable(d.Phone), hash, status, boolInt(d.TwoFactor), boolInt(disable), d.FirstName,
		nullable(d.LastName), boolInt(d.EmailVerified), boolInt(d.PhoneVerified), d.languageColumn(nil),
		nullable(d.AdminNotes), now, now)
	if err != nil {
		return Applied{}, err
	}
	vs, _, err := syncVerifications(ctx, tx, id, nil, d, s.device, now)
	if err != nil {
		return Applied{}, err
	}
	r, err := s.readUserRow(ctx, tx, "uuid = ?", id, false)
	if err != nil {
		return Applied{}, err
	}
	if err := s.logActivity(ctx, tx, actionCreate, id, nil, s.userJSON(r, viewToArray)); err != nil {
		return Applied{}, err
	}
	out := Applied{User: userFromRow(r, vs), Created: true}
	if b != nil {
		bound := *b
		bound.UserUUID = id
		if err := insertBinding(ctx, tx, bound, now); err != nil {
			return Applied{}, err
		}
		out.Bound = true
	}
	return out, nil
}

func (s *Store) changeUser(ctx context.Context, tx *sql.Tx, c UserChange, hash string) (Applied, error) {
	before, err := s.readUserRow(ctx, tx, "uuid = ?", c.UUID, true)
	if isNoRows(err) {
		return Applied{}, fmt.Errorf("user %s: %w", c.UUID, ErrNotFound)
	}
	if err != nil {
		return Applied{}, err
	}
	current, err := readBinding(ctx, tx, c.UUID, s.forUpdate())
	if err != nil {
		return Applied{}, err
	}
	if c.Binding != nil && !sameBinding(current, c.Expect) {
		return Applied{}, fmt.Errorf("panel user %s: %w", c.UUID, ErrConflict)
	}
	vs, err := s.readVerifications(ctx, tx, c.UUID, true)
	if err != nil {
		return Applied{}, err
	}
	if hash != "" {
		// A hash the panel already holds (an adopted user whose Secret carries the panel's own
		// hash, as kubectl puq import writes it) is not written again: no UPDATE, no updated_at,
		// no activity row.
		same, err := holdsHash(ctx, tx, c.UUID, hash)
		if err != nil {
			return Applied{}, err
		}
		if same {
			hash = ""
		}
	}
	var out Applied
	after := maps.Clone(before)
	if c.Desired != nil {
		var verificationChanges []string
		vs, verificationChanges, err = syncVerifications(ctx, tx, c.UUID, vs, *c.Desired, s.device, s.timestamp())
		if err != nil {
			return Applied{}, err
		}
		want := desiredColumns(*c.Desired, before)
		cols := changedColumns(before, want)
		if slices.Contains(cols, "phone_number") {
			if err := phoneTaken(ctx, tx, c.Desired.Phone, c.UUID); err != nil {
				return Applied{}, err
			}
		}
		if len(cols) > 0 || hash != "" {
			if err := s.updateUserColumns(ctx, tx, c.UUID, before, cols, want, hash); err != nil {
				return Applied{}, err
			}
			for _, col := range cols {
				if w := want[col]; w != nil {
					after[col] = *w
				} else {
					delete(after, col)
				}
			}
		}
		out.Changed = append(cols, verificationChanges...)
	} else if hash != "" {
		if err := s.updateUserColumns(ctx, tx, c.UUID, before, nil, nil, hash); err != nil {
			return Applied{}, err
		}
	}
	if hash != "" {
		out.Changed = append(out.Changed, "password")
	}
	if c.Binding != nil {
		want := *c.Binding
		want.UserUUID = c.UUID
		if current == nil || *current != want {
			if err := writeBinding(ctx, tx, current != nil, want, s.timestamp()); err != nil {
				return Applied{}, err
			}
			out.Bound = true
		}
	}
	out.User = userFromRow(after, vs)
	return out, nil
}

// sameBinding reports whether the binding row read (nil: none) is the one expected.
func sameBinding(current, expect *Binding) bool {
	if current == nil || expect == nil {
		return current == nil && expect == nil
	}
	return *current == *expect
}

// readBinding reads a panel user's binding in tx; nil when it has none.
func readBinding(ctx context.Context, tx *sql.Tx, userUUID, lock string) (*Binding, error) {
	b, err := scanBinding(tx.QueryRowContext(ctx, "SELECT "+bindingColumns+" FROM "+bindingTable+
		" WHERE user_uuid = ?"+lock, userUUID).Scan)
	if isNoRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// writeBinding inserts the binding, or replaces the user's binding row (exists).
func writeBinding(ctx context.Context, tx *sql.Tx, exists bool, b Binding, now string) error {
	if !exists {
		return insertBinding(ctx, tx, b, now)
	}
	_, err := tx.ExecContext(ctx, "UPDATE "+bindingTable+" SET namespace = ?, name = ?, resource_uid = ?, "+
		"instance_id = ?, cluster_id = ?, secret_version = ?, updated_at = ? WHERE user_uuid = ?", b.Namespace, b.Name,
		b.ResourceUID, b.InstanceID, b.ClusterID, nullable(b.SecretVersion), now, b.UserUUID)
	return err
}

// ReleaseMode is what releasing a panel user from its resource does to the user.
type ReleaseMode string

// Release modes: the resource's deletion policies.
const (
	// ReleaseDelete deletes the user; when a panel rule keeps it (it belongs to clients), the user
	// is disabled instead, so the login ends either way.
	ReleaseDelete ReleaseMode = "Delete"
	// ReleaseDisable disables the user.
	ReleaseDisable ReleaseMode = "Disable"
	// ReleaseRetain leaves the user as it is.
	ReleaseRetain ReleaseMode = "Retain"
)

// Released is what Release did.
type Released struct {
	// Deleted: the panel user was deleted. Disabled: it was disabled (or already was), not deleted.
	Deleted, Disabled bool
	// KeptFor names the clients that kept a ReleaseDelete from deleting the user.
	KeptFor []string
	// Gone: the panel user no longer existed; only the binding went.
	Gone bool
}

// Release ends the binding b of a panel user in one transaction, first deleting, disabling or
// leaving the user as mode says. It does nothing to a user whose binding no longer names b's
// resource, operator instance and cluster (another resource took it over): that user is not the
// caller's to release (ErrConflict).
func (s *Store) Release(ctx context.Context, b Binding, mode ReleaseMode) (Released, error) {
	var out Released
	err := s.tx(ctx, "release the panel user", func(tx *sql.Tx) error {
		out = Released{}
		// The users row first, then the binding: the order changeUser locks them in, so the two
		// never deadlock.
		before, userErr := s.readUserRow(ctx, tx, "uuid = ?", b.UserUUID, true)
		if userErr != nil && !isNoRows(userErr) {
			return userErr
		}
		current, err := readBinding(ctx, tx, b.UserUUID, s.forUpdate())
		if err != nil {
			return err
		}
		if current == nil || !sameHolder(*current, b) {
			return fmt.Errorf("panel user %s: %w", b.UserUUID, ErrConflict)
		}
		err = userErr
		switch {
		case isNoRows(err):
			out.Gone = true
		case err != nil:
			return err
		case mode == ReleaseDelete:
			clients, err := s.clientNamesOf(ctx, tx, b.UserUUID)
			if err != nil {
				return err
			}
			if len(clients) == 0 {
				if _, err := tx.ExecContext(ctx, "DELETE FROM users WHERE uuid = ?", b.UserUUID); err != nil {
					return err
				}
				out.Deleted = true
				if err := s.logActivity(ctx, tx, actionDelete, b.UserUUID, s.userJSON(before, viewToArray), nil); err != nil {
					return err
				}
				break
			}
			out.KeptFor = clients
			if err := s.disableLocked(ctx, tx, b.UserUUID, before); err != nil {
				return err
			}
			out.Disabled = true
		case mode == ReleaseDisable:
			if err := s.disableLocked(ctx, tx, b.UserUUID, before); err != nil {
				return err
			}
			out.Disabled = true
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM "+bindingTable+" WHERE user_uuid = ?", b.UserUUID)
		return err
	})
	return out, err
}

// disableLocked marks the user row (read locked in tx as before) inactive and disabled, writing
// nothing when it already is.
func (s *Store) disableLocked(ctx context.Context, tx *sql.Tx, userUUID string, before row) error {
	want := map[string]*string{"status": new("inactive"), "disable": new("1")}
	var cols []string
	for _, c := range []string{"status", "disable"} {
		if before[c] != *want[c] {
			cols = append(cols, c)
		}
	}
	if len(cols) == 0 {
		return nil
	}
	return s.updateUserColumns(ctx, tx, userUUID, before, cols, want, "")
}

// BindingsOf returns the bindings held by the resource namespace/name with the UID (normally one;
// more only when a panel user it made was replaced), whatever its status says. They are the
// bindings Locate would find for it (Operator.Claim says ClaimOwn): its own by UID, and the
// previous cluster's of its namespace and name, which it would claim on its next write, so that
// a resource deleted before that write releases them too. A binding an earlier resource of the
// same name left behind is not among them: deleting a re-created object releases nothing of its
// predecessor's.
func (s *Store) BindingsOf(ctx context.Context, o Operator, namespace, name, uid string) ([]Binding, error) {
	own, err := s.ownBindings(ctx, "find the bindings", o, namespace, name, uid)
	if err != nil {
		return nil, err
	}
	out := make([]Binding, len(own))
	for i, b := range own {
		out[i] = b.Binding
	}
	return out, nil
}

// Via says how Locate found a panel user.
type Via string

// The ways Locate finds a panel user, in the order it tries them.
const (
	ViaNone    Via = ""
	ViaStatus  Via = "status"
	ViaBinding Via = "binding"
	ViaEmail   Via = "email"
)

// Lookup names the panel user a resource manages or would take: the UUID its status records, the
// resource (for its binding: the operator, the resource's namespace, name and UID), and its email.
type Lookup struct {
	UUID                 string
	Operator             Operator
	Namespace, Name, UID string
	Email                string
}

// Located is the panel user Locate found, as one unlocked read saw it.
type Located struct {
	// Snapshot is the user's snapshot (with its binding and clients); nil when none was found.
	Snapshot *Snapshot
	Via      Via
	// Stale are the panel users, bound to the resource (by status or binding), that no longer
	// exist: deleted behind the operator's back.
	Stale []string
}

// Locate finds the panel user a resource manages, or would adopt: the user its status names
// when that user exists or is bound; else the user the resource's own binding names (a status
// lost, or a previous cluster's binding of its name); else the user with its email. Whether the resource may take the
// user is the caller's decision, from the snapshot's binding. The usual case, a status naming an
// existing user, is one round trip.
func (s *Store) Locate(ctx context.Context, l Lookup) (Located, error) {
	var out Located
	stale := func(b *Binding) {
		if l.Operator.Claim(b, l.Namespace, l.Name, l.UID) == ClaimOwn && !slices.Contains(out.Stale, b.UserUUID) {
			out.Stale = append(out.Stale, b.UserUUID)
		}
	}
	if l.UUID != "" {
		snap, err := s.Snapshot(ctx, l.UUID)
		if err != nil {
			return Located{}, err
		}
		if snap.Exists {
			return Located{Snapshot: snap, Via: ViaStatus}, nil
		}
		stale(snap.Binding)
	}
	b, err := s.FindBinding(ctx, l.Operator, l.Namespace, l.Name, l.UID)
	switch {
	case err == nil:
		snap, err := s.Snapshot(ctx, b.UserUUID)
		if err != nil {
			return Located{}, err
		}
		if snap.Exists {
			return Located{Snapshot: snap, Via: ViaBinding}, nil
		}
		stale(&b)
	case !errors.Is(err, ErrNotFound):
		return Located{}, err
	}
	u, err := s.FindUserByEmail(ctx, l.Email)
	if errors.Is(err, ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return Located{}, err
	}
	snap, err := s.Snapshot(ctx, u.UUID)
	if err != nil {
		return Located{}, err
	}
	if snap.Exists { // else deleted in between: nothing to take
		out.Snapshot, out.Via = snap, ViaEmail
	}
	return out, nil
}

// phoneDigitsSQL is users.phone_number with what people type between the digits taken out: the
// panel's admin form stores the dial code and the number as typed ("+48 123 456 789"), while the
// UNIQUE index compares whole strings. REPLACE is the same function in MariaDB and SQLite.
const phoneDigitsSQL = "REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(phone_number, ' ', ''), '-', ''), " +
	"'(', ''), ')', ''), '.', ''), '+', '')"

// phoneTaken fails with ErrDuplicatePhone when a panel user other than userUUID holds phone,
// compared on digits only. An empty phone is stored as NULL and never taken. The other user's
// row is only read: the operator never rewrites a phone it does not manage.
func phoneTaken(ctx context.Context, tx *sql.Tx, phone, userUUID string) error {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, phone)
	if digits == "" {
		return nil
	}
	var n int
	err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM users WHERE phone_number IS NOT NULL AND uuid <> ? AND "+
		phoneDigitsSQL+" = ?", userUUID, digits).Scan(&n)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("cannot write the phone number: %w", ErrDuplicatePhone)
	}
	return nil
}

// holdsHash reports whether the panel user's password column (locked in tx) is exactly hash.
func holdsHash(ctx context.Context, tx *sql.Tx, userUUID, hash string) (bool, error) {
	var stored sql.NullString
	if err := tx.QueryRowContext(ctx, "SELECT `password` FROM users WHERE uuid = ?", userUUID).Scan(&stored); err != nil {
		return false, err
	}
	if !stored.Valid {
		return false, nil
	}
	// The same hash in another bcrypt prefix ($2a$, $2b$) is the same password to PHP: no write.
	same, err := password.PanelForm(stored.String)
	if err != nil {
		same = stored.String
	}
	return subtle.ConstantTimeCompare([]byte(same), []byte(hash)) == 1, nil
}
