package panel

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors the store returns, wrapped with detail; match them with errors.Is.
var (
	// ErrUnavailable: the database could not be reached, or a deadlock or lock timeout aborted the
	// transaction. Nothing was written; retry with backoff.
	ErrUnavailable = errors.New("panel database unavailable")
	// ErrNotFound: the user, client or association does not exist.
	ErrNotFound = errors.New("not found in the panel")
	// ErrDuplicateEmail: another panel user has the email (the comparison ignores case and accents).
	ErrDuplicateEmail = errors.New("email already used by another panel user")
	// ErrDuplicatePhone: another panel user has the phone number.
	ErrDuplicatePhone = errors.New("phone number already used by another panel user")
	// ErrSchema: the database is not a PUQcloud panel database of a known shape.
	ErrSchema = errors.New("panel database schema mismatch")
	// ErrRefused: a rule of the panel refuses the change (deleting a user with clients, removing an
	// owner from a client).
	ErrRefused = errors.New("refused by a panel rule")
	// ErrInvalid: a value the panel cannot store (bad hash, unknown permission, bad status).
	ErrInvalid = errors.New("invalid value for the panel")
)

// classify maps a driver error to one of the store's errors, keeping the original for detail.
// Duplicate-key messages name the unique index, never the value, so nothing secret leaks.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	for _, known := range []error{ErrUnavailable, ErrNotFound, ErrDuplicateEmail, ErrDuplicatePhone, ErrSchema, ErrRefused, ErrInvalid} {
		if errors.Is(err, known) {
			return err
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("cannot %s: %w: %w", op, ErrUnavailable, err)
	}
	if myErr, ok := errors.AsType[*mysql.MySQLError](err); ok {
		switch myErr.Number {
		case 1062: // ER_DUP_ENTRY
			return duplicateKey(op, myErr.Message, err)
		case 1205, 1213, 1040, 1053, 2006, 2013: // lock wait timeout, deadlock, too many connections, shutdown, gone away, lost
			return fmt.Errorf("cannot %s: %w: %w", op, ErrUnavailable, err)
		case 1146, 1054: // no such table, unknown column
			return fmt.Errorf("cannot %s: %w: %w", op, ErrSchema, err)
		}
		return fmt.Errorf("cannot %s: %w", op, err)
	}
	if liteErr, ok := errors.AsType[*sqlite.Error](err); ok {
		switch liteErr.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return duplicateKey(op, liteErr.Error(), err)
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_BUSY_SNAPSHOT, sqlite3.SQLITE_CANTOPEN:
			return fmt.Errorf("cannot %s: %w: %w", op, ErrUnavailable, err)
		}
		return fmt.Errorf("cannot %s: %w", op, err)
	}
	var netErr net.Error
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) || errors.As(err, &netErr) ||
		strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("cannot %s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("cannot %s: %w", op, err)
}

func duplicateKey(op, message string, err error) error {
	switch {
	case strings.Contains(message, "phone_number"):
		return fmt.Errorf("cannot %s: %w", op, ErrDuplicatePhone)
	case strings.Contains(message, "email"):
		return fmt.Errorf("cannot %s: %w", op, ErrDuplicateEmail)
	}
	return fmt.Errorf("cannot %s: duplicate key: %w", op, err)
}

// Outcome names an operation's result for metrics: ok, not_found, duplicate, refused, invalid,
// unavailable, schema or error.
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrDuplicateEmail), errors.Is(err, ErrDuplicatePhone):
		return "duplicate"
	case errors.Is(err, ErrRefused):
		return "refused"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrSchema):
		return "schema"
	}
	return "error"
}
