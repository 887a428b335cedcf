// Package testdb starts the real databases the tests run against: a private mariadbd on a
// loopback port of its own with a temporary data directory (the way envtest starts its own
// kube-apiserver), loaded with the PUQcloud panel schema, and SQLite files.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

//go:embed panel-mariadb.sql
var panelSchema string

// PanelSchema is the PUQcloud schema as the panel's migrations create it on MariaDB.
func PanelSchema() string { return panelSchema }

// MariaDB is a private mariadbd for one test binary.
//
// Its TCP port is held by this process for the server's whole life, so a restart after Stop
// comes back on the same port, which the DSNs already handed out name, and no other process can
// take that port in between. The server does not bind the port itself: this process binds
// 127.0.0.1:port, listens, and passes the socket to mariadbd by systemd socket activation
// (LISTEN_FDS), which MariaDB's Debian builds read. Stop shuts the socket down for reading, which
// on Linux ends listening but keeps the port bound: connections are refused, as by a stopped
// server. Start listens on it again. The socket is bound without SO_REUSEADDR while the server
// is stopped, so no other socket can bind the port, and with it while listening, so that the
// connections the server closed (TIME_WAIT) do not keep it from listening again.
type MariaDB struct {
	dir          string
	serverPath   string // the mariadbd binary
	server       string // the binary and its version, for messages
	port         int
	tcp          *os.File // the listening socket on 127.0.0.1:port
	socket       string
	passwordFile string
	cmd          *exec.Cmd
	exited       chan struct{}
	dbs          atomic.Int32
}

const testUser = "puq"

// Server names the mariadbd binary the tests run and its version.
func (m *MariaDB) Server() string { return m.server }

// findServer finds mariadbd, or a mysqld that is MariaDB's (older packages name it so), and
// refuses any other server: the tests and the panel's dialect are MariaDB's.
func findServer() (path, version string, err error) {
	path, err = findBinary("mariadbd", "mysqld")
	if err != nil {
		return "", "", err
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	version = strings.TrimSpace(string(out))
	if err != nil {
		return "", "", fmt.Errorf("cannot run %s --version: %w: %s", path, err, version)
	}
	if !strings.Contains(version, "MariaDB") {
		return "", "", fmt.Errorf("%s is not MariaDB (%q): the tests need MariaDB's server; install it with "+
			"`apt-get install mariadb-server` (or run `make test-deps` as root)", path, version)
	}
	return path, version, nil
}

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

// StartMariaDB initialises a data directory and starts mariadbd on 127.0.0.1 and a port of its
// own.
func StartMariaDB() (*MariaDB, error) {
	server, version, err := findServer()
	if err != nil {
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
	m := &MariaDB{dir: dir, serverPath: server, server: server + " (" + version + ")", socket: filepath.Join(dir, "mysqld.sock"),
		passwordFile: filepath.Join(dir, "password")}
	// A private tmpdir: servers and installs of test binaries running at once must not share the
	// temporary tables' files in /tmp (their names can collide, and an install then fails).
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o700); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	args := []string{"--no-defaults", "--datadir=" + filepath.Join(dir, "data"), "--tmpdir=" + filepath.Join(dir, "tmp"),
		"--auth-root-authentication-method=socket", "--skip-test-db"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	if out, err := exec.Command(installDB, args...).CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("mariadb-install-db failed: %w\n%s", err, out)
	}
	if m.tcp, m.port, err = holdPort(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := m.Start(); err != nil {
		m.Close()
		return nil, err
	}
	// The driver quotes the arguments itself (CREATE USER cannot be a server-side prepared
	// statement).
	cfg := m.rootConfig("")
	cfg.InterpolateParams = true
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		m.Close()
		return nil, err
	}
	root := sql.OpenDB(c)
	defer func() { _ = root.Close() }()
	// A password of this server's own: a DSN can never log in to another test binary's server.
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	password := hex.EncodeToString(pw)
	if err := os.WriteFile(m.passwordFile, []byte(password+"\n"), 0o600); err != nil {
		m.Close()
		return nil, err
	}
	for _, q := range []struct {
		query string
		args  []any
	}{
		{"CREATE USER '" + testUser + "'@'127.0.0.1' IDENTIFIED BY ?", []any{password}},
		{"GRANT ALL PRIVILEGES ON *.* TO '" + testUser + "'@'127.0.0.1'", nil},
	} {
		if _, err := root.Exec(q.query, q.args...); err != nil {
			m.Close()
			return nil, fmt.Errorf("cannot set up the test user: %w", err)
		}
	}
	return m, nil
}

// holdPort binds a TCP socket to 127.0.0.1 and a port of its own, and listens on it. The port is
// chosen here, below the kernel's ephemeral range, because only a socket bound to a port it asked
// for keeps the port when Stop shuts it down (a socket bound to port 0 gives it back).
func holdPort() (*os.File, int, error) {
	var lastErr error
	for range 100 {
		port := 10000 + mathrand.IntN(22000)
		syscall.ForkLock.RLock()
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err == nil {
			syscall.CloseOnExec(fd)
		}
		syscall.ForkLock.RUnlock()
		if err != nil {
			return nil, 0, fmt.Errorf("cannot create a socket: %w", err)
		}
		err = syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		if err != nil {
			_ = syscall.Close(fd)
			lastErr = err
			continue
		}
		f := os.NewFile(uintptr(fd), fmt.Sprintf("127.0.0.1:%d", port))
		if err := listen(f); err != nil {
			_ = f.Close()
			lastErr = err
			continue
		}
		return f, port, nil
	}
	return nil, 0, fmt.Errorf("cannot bind a port on 127.0.0.1 for mariadbd: %w", lastErr)
}

// listen makes the held socket listen, with SO_REUSEADDR so that the server's closed
// connections in TIME_WAIT do not refuse it (the connections the server accepts inherit the
// flag).
func listen(f *os.File) error {
	fd := int(f.Fd())
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("cannot set SO_REUSEADDR on %s: %w", f.Name(), err)
	}
	if err := syscall.Listen(fd, 128); err != nil {
		return fmt.Errorf("cannot listen on %s: %w", f.Name(), err)
	}
	return nil
}

// unlisten ends listening on the held socket but keeps its port: connections are refused, and
// without SO_REUSEADDR no other socket can bind the port.
func unlisten(f *os.File) error {
	fd := int(f.Fd())
	if err := syscall.Shutdown(fd, syscall.SHUT_RD); err != nil {
		return fmt.Errorf("cannot stop listening on %s: %w", f.Name(), err)
	}
	return syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 0)
}

// Start starts (or restarts, after Stop) mariadbd on the same port and data directory.
func (m *MariaDB) Start() error {
	if m.cmd != nil {
		return errors.New("mariadbd is already running")
	}
	// Listening again after Stop; on the first start the socket already listens, and listening
	// again changes nothing.
	if err := listen(m.tcp); err != nil {
		return err
	}
	// The root socket lives in the server's private directory: no other process can take it, so
	// it is made afresh for every start. The server gets it by activation too, as it then binds
	// nothing itself.
	_ = os.Remove(m.socket)
	unixListener, err := net.ListenUnix("unix", &net.UnixAddr{Name: m.socket, Net: "unix"})
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", m.socket, err)
	}
	unixListener.SetUnlinkOnClose(false)
	unixSocket, err := unixListener.File()
	_ = unixListener.Close()
	if err != nil {
		return err
	}
	defer func() { _ = unixSocket.Close() }()

	args := []string{"--no-defaults", "--datadir=" + filepath.Join(m.dir, "data"), "--tmpdir=" + filepath.Join(m.dir, "tmp"),
		"--socket=" + m.socket,
		"--port=" + fmt.Sprint(m.port), "--bind-address=127.0.0.1", "--pid-file=" + filepath.Join(m.dir, "mysqld.pid"),
		"--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci", "--skip-log-bin",
		"--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2", "--performance-schema=OFF",
		"--skip-name-resolve", "--log-error=" + filepath.Join(m.dir, "error.log")}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	// Socket activation: the sockets are descriptors 3 and 4, and LISTEN_PID must be the server's
	// own process ID, which only a shell that then execs the server can set.
	m.cmd = exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, m.serverPath}, args...)...)
	m.cmd.Env = append(withoutActivation(os.Environ()), "LISTEN_FDS=2")
	m.cmd.ExtraFiles = []*os.File{m.tcp, unixSocket}
	m.exited = make(chan struct{})
	if err := m.cmd.Start(); err != nil {
		m.cmd = nil
		return fmt.Errorf("cannot start %s: %w", m.server, err)
	}
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(m.cmd, m.exited)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-m.exited:
			m.cmd = nil
			log, _ := os.ReadFile(filepath.Join(m.dir, "error.log"))
			return fmt.Errorf("%s exited during start (it must take its sockets by systemd socket "+
				"activation, as MariaDB's Debian builds do):\n%s", m.server, log)
		default:
		}
		if m.ping() == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within 60s", m.server)
}

// ping asks the server for an answer over the root socket, waiting no more than 5 s: a
// connection made while the server starts waits in the socket's queue until it serves it.
func (m *MariaDB) ping() error {
	cfg := m.rootConfig("")
	cfg.ReadTimeout = 5 * time.Second
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(c)
	defer func() { _ = db.Close() }()
	return db.Ping()
}

// withoutActivation drops the socket activation variables this process may have been given.
func withoutActivation(env []string) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		if !strings.HasPrefix(e, "LISTEN_") {
			out = append(out, e)
		}
	}
	return out
}

// Stop stops mariadbd, keeping its data and its port, to test an outage: connections are
// refused until Start brings it back.
func (m *MariaDB) Stop() error {
	if m.cmd == nil || m.cmd.Process == nil {
		return nil
	}
	// SIGTERM is mariadbd's normal shutdown (it ignores SIGINT, which cost every Stop 30 s).
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
	// Still listening, the port would take connections that hang instead of being refused: the
	// outage a test asked for would not be one.
	if err := unlisten(m.tcp); err != nil {
		return fmt.Errorf("mariadbd stopped, but its port still listens: %w", err)
	}
	return nil
}

// Close stops mariadbd, gives its port back and removes its data directory.
func (m *MariaDB) Close() {
	_ = m.Stop() // the port is closed next, whatever Stop says
	if m.tcp != nil {
		_ = m.tcp.Close()
	}
	_ = os.RemoveAll(m.dir)
}

func (m *MariaDB) rootConfig(database string) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = m.socket
	cfg.DBName = database
	cfg.MultiStatements = true
	cfg.Timeout = 2 * time.Second
	return cfg
}

func (m *MariaDB) rootDB(database string) (*sql.DB, error) {
	c, err := mysql.NewConnector(m.rootConfig(database))
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
