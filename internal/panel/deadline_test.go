package panel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
)

// The driver's timeouts have defaults that end a read or write to a silent server in seconds,
// and a DSN that sets its own keeps them.
func TestMySQLDriverTimeoutsDefaultAndYieldToTheDSN(t *testing.T) {
	cfg, err := panel.MySQLConfig("puq@tcp(db:3306)/panel", "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Timeout != 5*time.Second || cfg.ReadTimeout != 15*time.Second || cfg.WriteTimeout != 15*time.Second {
		t.Errorf("default timeouts dial/read/write = %s/%s/%s, want 5s/15s/15s", cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout)
	}
	if cfg.ReadTimeout <= panel.DefaultOperationTimeout || cfg.WriteTimeout <= panel.DefaultOperationTimeout {
		t.Errorf("the driver's I/O timeouts (%s, %s) must exceed the operation deadline %s, so the deadline fires first",
			cfg.ReadTimeout, cfg.WriteTimeout, panel.DefaultOperationTimeout)
	}
	cfg, err = panel.MySQLConfig("puq@tcp(db:3306)/panel?timeout=2s&readTimeout=3s&writeTimeout=4s", "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Timeout != 2*time.Second || cfg.ReadTimeout != 3*time.Second || cfg.WriteTimeout != 4*time.Second {
		t.Errorf("DSN timeouts dial/read/write = %s/%s/%s, want the DSN's 2s/3s/4s", cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout)
	}
}

// stalledStore is a store on a fresh panel database reached through a proxy, and the proxy.
func stalledStore(t *testing.T, dsnParams string, opts panel.Options) (*panel.Store, *testdb.Proxy) {
	t.Helper()
	p, proxy := mariadb.ProxiedPanel(t)
	opts.DSN, opts.PasswordFile = proxy.DSN(p.DSN)+dsnParams, p.PasswordFile
	s, err := panel.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, proxy
}

// silentBound is how soon a call to a silent database must return in these tests: their 1 s
// deadline or read timeout, plus a connection's teardown.
const silentBound = 4 * time.Second

// returnsUnavailable runs call, which must end with ErrUnavailable within silentBound.
func returnsUnavailable(t *testing.T, name string, call func(context.Context) error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, panel.ErrUnavailable) {
			t.Errorf("%s against a database that stopped answering ended with %v, want ErrUnavailable", name, err)
		}
	case <-time.After(silentBound):
		t.Errorf("%s against a database that stopped answering did not return within %s", name, silentBound)
	}
}

// Every kind of store call, a query or a transaction, made with a context that has no deadline of
// its own, fails with ErrUnavailable at the operation deadline when the database stops answering.
func TestStoreCallsToASilentDatabaseFailUnavailableAtTheDeadline(t *testing.T) {
	s, proxy := stalledStore(t, "", panel.Options{OperationTimeout: time.Second})
	id := uuid.NewString()
	proxy.Stall()
	defer proxy.Resume()
	returnsUnavailable(t, "Ping", s.Ping)
	returnsUnavailable(t, "GetUser", func(ctx context.Context) error { _, err := s.GetUser(ctx, id); return err })
	returnsUnavailable(t, "Snapshots", func(ctx context.Context) error {
		_, err := s.Snapshots(ctx, []string{id})
		return err
	})
	returnsUnavailable(t, "DeleteUser (a transaction)", func(ctx context.Context) error { return s.DeleteUser(ctx, id) })
	returnsUnavailable(t, "Unbind", func(ctx context.Context) error { return s.Unbind(ctx, id) })
	returnsUnavailable(t, "ClientOwner", func(ctx context.Context) error { _, err := s.ClientOwner(ctx, id); return err })
	if proxy.Held() == 0 {
		t.Error("the proxy held nothing back: the calls did not reach it")
	}
}

// The driver's read timeout, as a DSN sets it, ends a call on an open connection to a silent
// server even when the operation deadline is far away, and the error is ErrUnavailable.
func TestDriverReadTimeoutFromTheDSNEndsACallToASilentDatabase(t *testing.T) {
	s, proxy := stalledStore(t, "?readTimeout=1s", panel.Options{OperationTimeout: time.Hour})
	proxy.Stall()
	defer proxy.Resume()
	returnsUnavailable(t, "UserExists", func(ctx context.Context) error {
		_, err := s.UserExists(ctx, uuid.NewString())
		return err
	})
}
