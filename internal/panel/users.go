package panel

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
)

// State is the account state the operator sets. StateUnmanaged leaves status and disable to the
// panel (which moves a new user to active at first login).
type State string

// Account states.
const (
	StateUnmanaged State = ""
	StateActive    State = "active"
	StateInactive  State = "inactive"
)

// Method is a user's default verification method: how the panel asks for the second factor.
type Method string

// Verification methods. MethodKeep leaves the user's own choice alone.
const (
	MethodKeep  Method = ""
	MethodEmail Method = "email"
	MethodTOTP  Method = "totp"
)

// DefaultTOTPDeviceName is the device name of the authenticator rows the operator writes when
// Options.TOTPDeviceName is empty.
const DefaultTOTPDeviceName = "Authenticator app"

// DesiredUser is what the operator wants a panel user to be. Only these columns are managed;
// notes, reset tokens, remember tokens and everything else stay the panel's.
type DesiredUser struct {
	Email     string
	FirstName string
	LastName  string
	Phone     string // E.164, "" stored as NULL
	// Language is written as given; "" leaves the person's own choice (see ClientLanguages).
	Language   string
	AdminNotes string
	// ClientLanguages are the panel's enabled client locales (APP_AVAILABLE_LOCALE_CLIENT) and
	// DefaultLanguage its default client locale (config('locale.client.default')). With an empty
	// Language, a panel language that is one of ClientLanguages is the person's own choice and is
	// kept; NULL, empty or any other value becomes DefaultLanguage, the value the panel's
	// client-area middleware saves at the person's next visit (writing anything else would start
	// a write fight with it). An empty DefaultLanguage writes NULL.
	ClientLanguages []string
	DefaultLanguage string
	PhoneVerified   bool
	EmailVerified   bool // kept in the verifications row for the current email, as the panel does
	TwoFactor       bool
	State           State
	// DefaultMethod makes the email row or the totp row the default verification.
	DefaultMethod Method
	// TOTPSecret is the authenticator seed (base32) the user's totp row must hold; with
	// DefaultMethod MethodTOTP it is required.
	TOTPSecret string
	// RemoveTOTP deletes the user's totp rows (the operator's seed was withdrawn).
	RemoveTOTP bool
}

// User is a panel user as the panel shows it. It never holds the password hash.
type User struct {
	UUID          string
	Email         string
	Phone         string
	Status        string // new, active, inactive, closed, fraud
	FirstName     string
	LastName      string
	Language      string
	AdminNotes    string
	TwoFactor     bool
	Disabled      bool
	EmailVerified bool // from the verifications row for the current email
	PhoneVerified bool
	DefaultMethod Method // the type of the default=1 verification row
	TOTPSecretSet bool   // a totp verification row exists
	CreatedAt     string
	UpdatedAt     string
}

// userColumns are the users columns read, in table order, without password and remember_token
// (the panel's User model hides both, so they never reach an activity row).
var userColumns = []string{"uuid", "email", "phone_number", "status", "two_factor", "disable", "firstname",
	"lastname", "email_verified", "phone_verified", "language", "notes", "admin_notes", "password_reset_token",
	"password_reset_token_created_at", "created_at", "updated_at"}

// row is one table row read as text, by column name; NULL is absent from the map.
type row map[string]string

func (s *Store) readUserRow(ctx context.Context, q querier, where string, arg any, lock bool) (row, error) {
	query := "SELECT " + quoteColumns(userColumns) + " FROM users WHERE " + where
	if lock {
		query += s.forUpdate()
	}
	return scanRow(q.QueryRowContext(ctx, query, arg), userColumns)
}

// GetUser reads a panel user by UUID.
func (s *Store) GetUser(ctx context.Context, userUUID string) (User, error) {
	return s.getUser(ctx, "uuid = ?", userUUID)
}

// FindUserByEmail reads the panel user with this email, compared the way the panel's collation
// compares (case and accents ignored).
func (s *Store) FindUserByEmail(ctx context.Context, email string) (User, error) {
	return s.getUser(ctx, "email = ?", strings.TrimSpace(email))
}

func (s *Store) getUser(ctx context.Context, where string, arg any) (_ User, err error) {
	ctx, done := s.begin(ctx, "read the panel user")
	defer done(&err)
	r, err := s.readUserRow(ctx, s.db, where, arg, false)
	if isNoRows(err) {
		return User{}, fmt.Errorf("user %v: %w", arg, ErrNotFound)
	}
	if err != nil {
		return User{}, classify("read the panel user", err)
	}
	vs, err := s.readVerifications(ctx, s.db, r["uuid"], false)
	if err != nil {
		return User{}, classify("read the panel user", err)
	}
	return userFromRow(r, vs), nil
}

func userFromRow(r row, vs []verification) User {
	u := User{
		UUID: r["uuid"], Email: r["email"], Phone: r["phone_number"], Status: r["status"],
		FirstName: r["firstname"], LastName: r["lastname"], Language: r["language"], AdminNotes: r["admin_notes"],
		TwoFactor: r["two_factor"] == "1", Disabled: r["disable"] == "1",
		EmailVerified: r["email_verified"] == "1", PhoneVerified: r["phone_verified"] == "1",
		CreatedAt: r["created_at"], UpdatedAt: r["updated_at"],
	}
	for _, v := range vs {
		if v.Type == "email" && Fold(v.Value) == Fold(u.Email) {
			u.EmailVerified = v.Verified
		}
		if v.Default {
			u.DefaultMethod = Method(v.Type)
		}
		if v.Type == string(MethodTOTP) {
			u.TOTPSecretSet = true
		}
	}
	return u
}

// CreateUser inserts a panel user with the desired fields and the bcrypt hash (stored as $2y$),
// its email verification row, an activity row and, when b is not nil, its binding to b's resource,
// in one transaction (Apply): a crash can never leave a panel user the operator made without the
// binding that says whose it is.
func (s *Store) CreateUser(ctx context.Context, d DesiredUser, passwordHash string, b *Binding) (User, error) {
	a, err := s.Apply(ctx, UserChange{Desired: &d, PasswordHash: passwordHash, Binding: b})
	return a.User, err
}

// changedColumns names the managed columns of a user row that differ from the desired columns
// (desiredColumns), in table order.
func changedColumns(before row, want map[string]*string) []string {
	var cols []string
	for _, c := range managedColumns {
		w, ok := want[c]
		if !ok {
			continue
		}
		have, present := before[c]
		if (w == nil && present) || (w != nil && (!present || have != *w)) {
			cols = append(cols, c)
		}
	}
	return cols
}

// managedColumns are the users columns the operator writes, in table order.
var managedColumns = []string{"email", "phone_number", "status", "two_factor", "disable", "firstname",
	"lastname", "email_verified", "phone_verified", "language", "admin_notes"}

// desiredColumns are the managed columns d wants of a user row that is now before (nil for a
// user not yet created).
func desiredColumns(d DesiredUser, before row) map[string]*string {
	str := func(v string) *string { return &v }
	opt := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	flag := func(b bool) *string { return str(fmt.Sprint(boolInt(b))) }
	cols := map[string]*string{
		"email": str(d.Email), "phone_number": opt(d.Phone), "two_factor": flag(d.TwoFactor),
		"firstname": str(d.FirstName), "lastname": opt(d.LastName), "email_verified": flag(d.EmailVerified),
		"phone_verified": flag(d.PhoneVerified), "language": d.languageColumn(before), "admin_notes": opt(d.AdminNotes),
	}
	if d.State != StateUnmanaged {
		cols["status"] = str(string(d.State))
		cols["disable"] = flag(d.State == StateInactive)
	}
	return cols
}

// languageColumn is the language d wants of a user row that is now before: spec.language when
// set, else the person's own enabled choice, else the panel's default client locale.
func (d DesiredUser) languageColumn(before row) *string {
	if d.Language != "" {
		return &d.Language
	}
	if have, ok := before["language"]; ok && slices.Contains(d.ClientLanguages, have) {
		return &have
	}
	if d.DefaultLanguage == "" {
		return nil
	}
	v := d.DefaultLanguage
	return &v
}

// updateUserColumns writes the columns cols (values from want) and, when hash is set, the password,
// with updated_at, in one UPDATE, and logs one activity row. The hash never reaches the activity
// row: the panel hides the password column.
func (s *Store) updateUserColumns(ctx context.Context, tx *sql.Tx, userUUID string, before row, cols []string,
	want map[string]*string, hash string) error {
	now := s.timestamp()
	sets := make([]string, 0, len(cols)+1)
	args := make([]any, 0, len(cols)+2)
	changes := make(row, len(cols)+1)
	var nulls []string
	for _, c := range cols {
		sets = append(sets, "`"+c+"` = ?")
		if w := want[c]; w != nil {
			args = append(args, *w)
			changes[c] = *w
		} else {
			args = append(args, nil)
			nulls = append(nulls, c)
		}
	}
	if hash != "" {
		sets = append(sets, "`password` = ?")
		args = append(args, hash)
	}
	sets = append(sets, "`updated_at` = ?")
	args = append(args, now, userUUID)
	changes["updated_at"] = now
	if _, err := tx.ExecContext(ctx, "UPDATE users SET "+strings.Join(sets, ", ")+" WHERE uuid = ?", args...); err != nil {
		return err
	}
	return s.logActivity(ctx, tx, actionUpdate, userUUID, s.userJSON(before, viewOriginal), s.userJSON(changes, viewChanges, nulls...))
}

// DisableUser marks the panel user inactive and disabled (the panel then refuses its logins),
// writing nothing when it already is. A user already gone is not an error.
func (s *Store) DisableUser(ctx context.Context, userUUID string) (bool, error) {
	var changed bool
	err := s.tx(ctx, "disable the panel user", func(tx *sql.Tx) error {
		before, err := s.readUserRow(ctx, tx, "uuid = ?", userUUID, true)
		if isNoRows(err) {
			return nil
		}
		if err != nil {
			return err
		}
		changed = before["status"] != "inactive" || before["disable"] != "1"
		return s.disableLocked(ctx, tx, userUUID, before)
	})
	return changed, err
}

// validate refuses what the panel cannot store; the error names the column (never its value), so
// the condition says which value to fix.
func (d DesiredUser) validate() error {
	if strings.TrimSpace(d.Email) == "" {
		return fmt.Errorf("%w: email is empty", ErrInvalid)
	}
	for _, c := range []struct {
		column, value string
		limit         int
	}{
		{"email", d.Email, 255}, {"firstname", d.FirstName, 255}, {"lastname", d.LastName, 255},
		{"phone_number", d.Phone, 255}, {"language", d.Language, 255}, {"admin_notes", d.AdminNotes, 65535},
	} {
		if utf8.RuneCountInString(c.value) > c.limit {
			return fmt.Errorf("%w: %s is longer than %d characters", ErrInvalid, c.column, c.limit)
		}
		if strings.ContainsRune(c.value, 0) {
			return fmt.Errorf("%w: %s holds a NUL character", ErrInvalid, c.column)
		}
	}
	switch {
	case d.State != StateUnmanaged && d.State != StateActive && d.State != StateInactive:
		return fmt.Errorf("%w: state %q is not active or inactive", ErrInvalid, d.State)
	case d.DefaultMethod == MethodTOTP && d.TOTPSecret == "":
		return fmt.Errorf("%w: the totp default method needs a seed", ErrInvalid)
	case d.TOTPSecret != "" && d.RemoveTOTP:
		return fmt.Errorf("%w: a totp seed cannot be set and removed at once", ErrInvalid)
	}
	return nil
}

// verification is one verifications row.
type verification struct {
	UUID     string
	Type     string
	Value    string
	Secret   string
	Verified bool
	Default  bool
	// fresh rows are inserted once it is known whether they are the default.
	fresh bool
}

func (s *Store) readVerifications(ctx context.Context, q querier, userUUID string, lock bool) ([]verification, error) {
	query := "SELECT `uuid`, `type`, `value`, `secret`, `verified`, `default` FROM verifications " +
		"WHERE user_uuid = ? ORDER BY created_at, uuid"
	if lock {
		query += s.forUpdate()
	}
	rows, err := q.QueryContext(ctx, query, userUUID)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []verification
	for rows.Next() {
		var v verification
		var value sql.NullString
		if err := rows.Scan(&v.UUID, &v.Type, &value, &v.Secret, &v.Verified, &v.Default); err != nil {
			return nil, err
		}
		v.Value = value.String
		out = append(out, v)
	}
	return out, rows.Err()
}

// syncVerifications makes the verification rows vs (read locked in tx) match d, the panel's way: a
// row for the current email holding "verified", the operator's totp row holding its seed under
// the device name device, and exactly one default row. With a nil tx it writes nothing and only
// reports what it would change.
func syncVerifications(ctx context.Context, tx *sql.Tx, userUUID string, vs []verification, d DesiredUser, device,
	now string) ([]verification, []string, error) {
	exec := func(query string, args ...any) error {
		if tx == nil {
			return nil
		}
		_, err := tx.ExecContext(ctx, query, args...)
		return err
	}
	var changed []string
	emailRow := slices.IndexFunc(vs, func(v verification) bool { return v.Type == "email" && Fold(v.Value) == Fold(d.Email) })
	if emailRow < 0 {
		vs = append(vs, verification{UUID: uuid.NewString(), Type: "email", Value: d.Email, Secret: sixDigits(),
			Verified: d.EmailVerified, fresh: true})
		emailRow = len(vs) - 1
		changed = append(changed, "emailVerification")
	} else if vs[emailRow].Verified != d.EmailVerified {
		if err := exec("UPDATE verifications SET `verified` = ?, `updated_at` = ? WHERE uuid = ?",
			boolInt(d.EmailVerified), now, vs[emailRow].UUID); err != nil {
			return nil, nil, err
		}
		vs[emailRow].Verified = d.EmailVerified
		changed = append(changed, "emailVerification")
	}

	totpRow := -1
	if d.RemoveTOTP || d.TOTPSecret != "" {
		keep := vs[:0]
		for _, v := range vs {
			keepSeed := d.TOTPSecret != "" && v.Secret == d.TOTPSecret && v.Verified && totpRow < 0
			if v.Type == string(MethodTOTP) && !keepSeed {
				if err := exec("DELETE FROM verifications WHERE uuid = ?", v.UUID); err != nil {
					return nil, nil, err
				}
				changed = appendOnce(changed, "totp")
				continue
			}
			if v.Type == string(MethodTOTP) {
				totpRow = len(keep)
				if v.Value == "" {
					// Written by an older operator without a device name: the panel's login
					// prompt printed "null". Brought to the enrolment's form once; its last use is
					// the panel's own record when it has one, else the enrolment (created_at).
					if err := exec("UPDATE verifications SET `value` = ?, `device_name` = ?, "+
						"`last_used_at` = COALESCE(`last_used_at`, `created_at`), `updated_at` = ? WHERE uuid = ?",
						device, device, now, v.UUID); err != nil {
						return nil, nil, err
					}
					v.Value = device
					changed = appendOnce(changed, "totp")
				}
			}
			keep = append(keep, v)
		}
		vs = keep
		emailRow = slices.IndexFunc(vs, func(v verification) bool { return v.Type == "email" && Fold(v.Value) == Fold(d.Email) })
	}
	if d.TOTPSecret != "" && totpRow < 0 {
		if strings.Contains(device, d.TOTPSecret) {
			return nil, nil, fmt.Errorf("%w: the TOTP device name holds the seed", ErrInvalid)
		}
		vs = append(vs, verification{UUID: uuid.NewString(), Type: string(MethodTOTP), Value: device,
			Secret: d.TOTPSecret, Verified: true, fresh: true})
		totpRow = len(vs) - 1
		changed = appendOnce(changed, "totp")
	}

	want := chooseDefault(vs, d.DefaultMethod, emailRow, totpRow)
	for i, v := range vs {
		if v.fresh {
			// Inserted with its final default flag: one statement, not an insert and an update.
			vs[i].fresh, vs[i].Default = false, i == want
			if err := insertVerification(exec, userUUID, vs[i], now); err != nil {
				return nil, nil, err
			}
			if i == want {
				changed = appendOnce(changed, "defaultMethod")
			}
			continue
		}
		if v.Default != (i == want) {
			vs[i].Default = i == want
			if err := exec("UPDATE verifications SET `default` = ?, `updated_at` = ? WHERE uuid = ?",
				boolInt(i == want), now, v.UUID); err != nil {
				return nil, nil, err
			}
			changed = appendOnce(changed, "defaultMethod")
		}
	}
	return vs, changed, nil
}

// insertVerification inserts a verification row in the panel's form: an email row as the panel
// writes one for a new address (a 6-digit code, device "system", expired at once), or the
// operator's authenticator row as the panel's own enrolment writes one (value and device_name the
// device name, last used now, verified, the seed in plain text).
func insertVerification(exec func(string, ...any) error, userUUID string, v verification, now string) error {
	if v.Type == string(MethodTOTP) {
		return exec("INSERT INTO verifications (`uuid`, `user_uuid`, `type`, `value`, `secret`, `device_name`, "+
			"`verified`, `default`, `last_used_at`, `created_at`, `updated_at`) VALUES (?, ?, 'totp', ?, ?, ?, 1, ?, ?, ?, ?)",
			v.UUID, userUUID, v.Value, v.Secret, v.Value, boolInt(v.Default), now, now, now)
	}
	return exec("INSERT INTO verifications (`uuid`, `user_uuid`, `type`, `value`, `secret`, "+
		"`device_name`, `verified`, `default`, `expires_at`, `created_at`, `updated_at`) "+
		"VALUES (?, ?, 'email', ?, ?, 'system', ?, ?, ?, ?, ?)",
		v.UUID, userUUID, v.Value, v.Secret, boolInt(v.Verified), boolInt(v.Default), now, now, now)
}

// chooseDefault picks the row that must be the default: the one asked for; else the current
// default unless it is an email row of an old address; else the current email's row, as the
// panel does.
func chooseDefault(vs []verification, method Method, emailRow, totpRow int) int {
	switch method {
	case MethodTOTP:
		return totpRow
	case MethodEmail:
		return emailRow
	}
	for i, v := range vs {
		if v.Default && (v.Type != "email" || i == emailRow) {
			return i
		}
	}
	return emailRow
}

func appendOnce(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

// sixDigits is the random code the panel puts in a new email verification row.
func sixDigits() string {
	n, err := rand.Int(rand.Reader, big.NewInt(900000))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return fmt.Sprint(100000 + n.Int64())
}
