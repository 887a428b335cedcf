// Package testdb starts the real databases the tests run against: a private mariadbd on a free
// loopback port with a temporary data directory (the way envtest starts its own kube-apiserver),
// loaded with the PUQcloud panel schema, and SQLite files.
package testdb

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

//go:embed panel-mariadb.sql
var panelSchema string

// PanelSchema is the PUQcloud schema as the panel's migrations create it on MariaDB.
func PanelSchema() string { return panelSchema }

// MariaDB is a private mariadbd for one test binary.
type MariaDB struct {
	dir          string
	port         int
	socket       string
	passwordFile string
	cmd          *exec.Cmd
	exited       chan struct{}
	dbs          atomic.Int32
}

const testUser = "puq"

func findBinary(names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin"} {
			if p := filepath.Join(dir, n); fileExists(p) {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%s not found: the tests need a real MariaDB server; install it with "+
		"`apt-get install mariadb-server` (or run `make test-deps` as root)", names[0])
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// StartMariaDB initialises a data directory and starts mariadbd on 127.0.0.1 and a free port.
func StartMariaDB() (*MariaDB, error) {
	if _, err := findBinary("mariadbd", "mysqld"); err != nil {
		return nil, err
	}
	installDB, err := findBinary("mariadb-install-db", "mysql_install_db")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "puq-mariadb-")
	if err != nil {
		return nil, err
	}
	m := &MariaDB{dir: dir, socket: filepath.Join(dir, "mysqld.sock"), passwordFile: filepath.Join(dir, "password")}
	args := []string{"--no-defaults", "--datadir=" + filepath.Join(dir, "data"), "--auth-root-authentication-method=socket",
		"--skip-test-db"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	if out, err := exec.Command(installDB, args...).CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("mariadb-install-db failed: %w\n%s", err, out)
	}
	if m.port, err = FreePort(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := m.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	root, err := m.rootDB("")
	if err != nil {
		m.Close()
		return nil, err
	}
	defer func() { _ = root.Close() }()
	if err := os.WriteFile(m.passwordFile, []byte("s3cret-panel-db-pw\n"), 0o600); err != nil {
		m.Close()
		return nil, err
	}
	for _, q := range []string{
		"CREATE USER '" + testUser + "'@'127.0.0.1' IDENTIFIED BY 's3cret-panel-db-pw'",
		"GRANT ALL PRIVILEGES ON *.* TO '" + testUser + "'@'127.0.0.1'",
	} {
		if _, err := root.Exec(q); err != nil {
			m.Close()
			return nil, fmt.Errorf("cannot set up the test user: %w", err)
		}
	}
	return m, nil
}

// Start starts (or restarts, after Stop) mariadbd on the same port and data directory.
func (m *MariaDB) Start() error {
	server, err := findBinary("mariadbd", "mysqld")
	if err != nil {
		return err
	}
	args := []string{"--no-defaults", "--datadir=" + filepath.Join(m.dir, "data"), "--socket=" + m.socket,
		"--port=" + fmt.Sprint(m.port), "--bind-address=127.0.0.1", "--pid-file=" + filepath.Join(m.dir, "mysqld.pid"),
		"--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci", "--skip-log-bin",
		"--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2", "--performance-schema=OFF",
		"--skip-name-resolve", "--log-error=" + filepath.Join(m.dir, "error.log")}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	m.cmd = exec.Command(server, args...)
	m.exited = make(chan struct{})
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("cannot start mariadbd: %w", err)
	}
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(m.cmd, m.exited)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-m.exited:
			log, _ := os.ReadFile(filepath.Join(m.dir, "error.log"))
			return fmt.Errorf("mariadbd exited during start:\n%s", log)
		default:
		}
		if db, err := m.rootDB(""); err == nil {
			err = db.Ping()
			_ = db.Close()
			if err == nil {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("mariadbd did not answer within 60s")
}

// Stop stops mariadbd, keeping its data, to test an outage. Start brings it back.
func (m *MariaDB) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(os.Interrupt)
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// Close stops mariadbd and removes its data directory.
func (m *MariaDB) Close() {
	m.Stop()
	_ = os.RemoveAll(m.dir)
}

func (m *MariaDB) rootDB(database string) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = m.socket
	cfg.DBName = database
	cfg.MultiStatements = true
	cfg.Timeout = 2 * time.Second
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// Panel is one panel database on the server.
type Panel struct {
	// DSN is the operator's form, mysql://user@tcp(host:port)/database, without the password.
	DSN string
	// PasswordFile holds the database password.
	PasswordFile string
	// Name is the database name.
	Name string
	// Root is a root connection to the database, for tests to inspect or change rows directly.
	Root *sql.DB
}

// NewPanel creates a fresh database loaded with the panel schema.
func (m *MariaDB) NewPanel(ctx context.Context) (*Panel, error) {
	return m.NewDatabase(ctx, panelSchema)
}

// NewDatabase creates a fresh database loaded with the given SQL (empty: no tables).
func (m *MariaDB) NewDatabase(ctx context.Context, schema string) (*Panel, error) {
	name := fmt.Sprintf("panel_%d", m.dbs.Add(1))
	root, err := m.rootDB("")
	if err != nil {
		return nil, err
	}
	_, err = root.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
	_ = root.Close()
	if err != nil {
		return nil, fmt.Errorf("cannot create database %s: %w", name, err)
	}
	db, err := m.rootDB(name)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(schema) != "" {
		if _, err := db.ExecContext(ctx, schema); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("cannot load the schema into %s: %w", name, err)
		}
	}
	return &Panel{
		DSN:          fmt.Sprintf("mysql://%s@tcp(127.0.0.1:%d)/%s", testUser, m.port, name),
		PasswordFile: m.passwordFile,
		Name:         name,
		Root:         db,
	}, nil
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
