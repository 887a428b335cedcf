package testdb

import (
	"context"
	"fmt"
	"os"
	"testing"
)

// Main is a TestMain for packages that need a private mariadbd: it starts one into *server, runs
// the tests, stops it and exits. A server that cannot start fails the run, saying how to get one.
func Main(m *testing.M, server **MariaDB) {
	var err error
	if *server, err = StartMariaDB(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start MariaDB for the tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	(*server).Close()
	os.Exit(code)
}

// ProxiedPanel is a fresh panel database and a proxy in front of the server, both closed when
// the test ends: connect through proxy.DSN(panel.DSN) to reach the database through the proxy.
func (m *MariaDB) ProxiedPanel(t testing.TB) (*Panel, *Proxy) {
	t.Helper()
	p, err := m.NewPanel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Root.Close() })
	proxy, err := m.StartProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	return p, proxy
}
