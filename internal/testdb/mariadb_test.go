package testdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// While the server is stopped its port stays its own: connecting is refused, as by a stopped
// server, no other socket can bind the port, and after Start the DSN handed out before reaches the
// same server, with the same data.
func TestStoppedServerKeepsItsPortAndComesBackOnIt(t *testing.T) {
	m, err := StartMariaDB()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !strings.Contains(m.Server(), "MariaDB") {
		t.Errorf("Server() = %q, want the binary and its MariaDB version", m.Server())
	}
	ctx := context.Background()
	p, err := m.NewDatabase(ctx, "CREATE TABLE marker (id INT PRIMARY KEY); INSERT INTO marker VALUES (42);")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Root.Close() }()
	db := openDSN(t, p)
	if got := marker(t, db); got != 42 {
		t.Fatalf("marker = %d before the stop", got)
	}

	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", m.port)
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			_ = c.Close()
		}
		t.Errorf("connecting to the stopped server: %v, want connection refused", err)
	}
	// net.Listen sets SO_REUSEADDR, as most servers do; a plain bind does not.
	if l, err := net.Listen("tcp", addr); err == nil {
		_ = l.Close()
		t.Errorf("another listener took %s while the server was stopped", addr)
	}
	if err := plainBind(m.port); err == nil {
		t.Errorf("a plain bind took %s while the server was stopped", addr)
	}

	if err := m.Start(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if got := marker(t, db); got != 42 {
		t.Errorf("marker = %d after the restart", got)
	}
}

// Only MariaDB's server is used: a mysqld that is another server is refused, saying what it is.
func TestFindServerRefusesAMysqldThatIsNotMariaDB(t *testing.T) {
	dir := t.TempDir()
	fake := "#!/bin/sh\necho 'mysqld  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)'\n"
	if err := os.WriteFile(filepath.Join(dir, "mariadbd"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	_, _, err := findServer()
	if err == nil || !strings.Contains(err.Error(), "is not MariaDB") || !strings.Contains(err.Error(), "MySQL Community Server") {
		t.Errorf("findServer with a MySQL server first on PATH: %v, want a refusal naming it", err)
	}
}

func openDSN(t *testing.T, p *Panel) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(strings.TrimPrefix(p.DSN, "mysql://"))
	if err != nil {
		t.Fatal(err)
	}
	pw, err := os.ReadFile(p.PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Passwd = strings.TrimSpace(string(pw))
	cfg.Timeout = 2 * time.Second
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func marker(t *testing.T, db *sql.DB) int {
	t.Helper()
	var id int
	if err := db.QueryRow("SELECT id FROM marker").Scan(&id); err != nil {
		t.Fatalf("read the marker through the DSN: %v", err)
	}
	return id
}

// plainBind binds 127.0.0.1:port without SO_REUSEADDR.
func plainBind(port int) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer func() { _ = syscall.Close(fd) }()
	return syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
}
