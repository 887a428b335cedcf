package panel

import (
	"context"
	"database/sql"
)

// MySQLConfig exposes the driver configuration a DSN opens with, for the tests of its defaults.
var MySQLConfig = mysqlConfig

// Tx runs fn in one of the store's transactions, as its own writes do (retried when InnoDB picks
// it as a deadlock's victim).
func (s *Store) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.tx(ctx, "test transaction", fn)
}

// SQLiteName exposes the driver's name for a sqlite:// path, for the DSN fuzz target.
var SQLiteName = sqliteName

// SQLitePragmas are the pragmas every sqlite name carries.
const SQLitePragmas = sqlitePragmas
