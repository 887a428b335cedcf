package testdb_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/puqcloud/puq-user-operator/internal/testdb"
)

// openVia opens the panel database through the proxy, with no driver timeouts of its own: only
// the caller's context can end a call.
func openVia(t *testing.T, proxy *testdb.Proxy, p *testdb.Panel) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(strings.TrimPrefix(proxy.DSN(p.DSN), "mysql://"))
	if err != nil {
		t.Fatal(err)
	}
	pw, err := os.ReadFile(p.PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Passwd = strings.TrimSpace(string(pw))
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func selectOne(db *sql.DB, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var n int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&n)
}

// A stalled proxy answers nothing, on open connections and on new ones, without refusing or
// closing anything; after Resume both kinds answer again.
func TestStalledProxyAnswersNothingUntilResumed(t *testing.T) {
	p, proxy := mariadb.ProxiedPanel(t)
	open := openVia(t, proxy, p)
	if err := selectOne(open, 5*time.Second); err != nil {
		t.Fatalf("a query through the forwarding proxy failed: %v", err)
	}

	proxy.Stall()
	if err := selectOne(open, time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a query on an open connection during the stall ended with %v, want the caller's deadline", err)
	}
	heldByOpen := proxy.Held()
	if heldByOpen == 0 {
		t.Error("the stall held nothing back from the open connection")
	}
	fresh := openVia(t, proxy, p)
	if err := selectOne(fresh, time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a new connection during the stall ended with %v, want the caller's deadline (accepted, never answered)", err)
	}
	if proxy.Held() == heldByOpen {
		t.Error("the stall held nothing back from the new connection")
	}

	proxy.Resume()
	for name, db := range map[string]*sql.DB{"the connection pool open before the stall": open, "a new connection": fresh} {
		if err := selectOne(db, 5*time.Second); err != nil {
			t.Errorf("after Resume, %s failed: %v", name, err)
		}
	}
}
