package panel

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/puqcloud/puq-user-operator/internal/password"
)

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func quoteColumns(cols []string) string {
	return "`" + strings.Join(cols, "`, `") + "`"
}

// scanRow reads one row of text columns; NULL columns are left out of the map.
func scanRow(r *sql.Row, cols []string) (row, error) {
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := r.Scan(ptrs...); err != nil {
		return nil, err
	}
	out := make(row, len(cols))
	for i, c := range cols {
		if vals[i].Valid {
			out[c] = vals[i].String
		}
	}
	return out, nil
}

// PanelHash checks a bcrypt hash and returns it in the $2y$ form the panel needs.
func PanelHash(h string) (string, error) {
	out, err := password.PanelForm(h)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return out, nil
}

// Activity actions, with the level the panel gives each.
type action struct{ name, level string }

var (
	actionCreate = action{"create", "notice"}
	actionUpdate = action{"update", "info"}
	actionDelete = action{"delete", "warning"}
)

// UserModelType is the activity_logs.model_type of panel users.
const UserModelType = `App\Models\User`

// logActivity writes an activity_logs row in the panel's form, with no actor (no one is logged in
// when the operator writes) and no IP address.
func (s *Store) logActivity(ctx context.Context, tx *sql.Tx, a action, modelUUID string, oldData, newData []byte) error {
	now := s.timestamp()
	_, err := tx.ExecContext(ctx, "INSERT INTO activity_logs (`uuid`, `admin_uuid`, `client_uuid`, `user_uuid`, "+
		"`level`, `action`, `description`, `model_type`, `model_uuid`, `model_old_data`, `model_new_data`, "+
		"`ip_address`, `created_at`, `updated_at`) VALUES (?, NULL, NULL, NULL, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
		uuid.NewString(), a.level, a.name, UserModelType+":"+modelUUID, UserModelType, modelUUID,
		nullableBytes(oldData), nullableBytes(newData), now, now)
	return err
}

func nullableBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}
