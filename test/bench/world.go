package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// world is the benchmark's cluster and panel database.
type world struct {
	env        *envtest.Environment
	k8s        client.WithWatch
	cfg        *rest.Config // the admin's
	kubeconfig string
	dir        string
	mariadb    *testdb.MariaDB
	dsn        string
	pwFile     string
	db         *panelDB
	managerBin string
	sqlite     bool
}

func startWorld(c config) (*world, error) {
	w := &world{managerBin: c.managerBin, sqlite: c.sqlite}
	if _, err := os.Stat(c.managerBin); err != nil {
		return nil, fmt.Errorf("%s is missing: run `make bench`, which builds it", c.managerBin)
	}
	var err error
	if w.dir, err = os.MkdirTemp("", "puq-bench-"); err != nil {
		return nil, err
	}
	fmt.Println("==> Starting kube-apiserver and etcd")
	if w.env, err = testenv.New(); err != nil {
		return nil, err
	}
	if _, err := w.env.Start(); err != nil {
		return nil, err
	}
	var cfg *rest.Config
	if w.kubeconfig, cfg, err = testenv.AdminKubeconfig(w.env, w.dir); err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = -1, 1000
	w.cfg = cfg
	if w.k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: w.env.Scheme}); err != nil {
		return nil, err
	}
	if err := testenv.GrantEverything(context.Background(), w.k8s); err != nil {
		return nil, err
	}
	if c.sqlite {
		path := filepath.Join(w.dir, "panel.db")
		w.dsn = "sqlite://" + path
		w.db = &panelDB{sqlite: true}
		store, err := panel.Open(context.Background(), panel.Options{DSN: w.dsn})
		if err != nil {
			return nil, err
		}
		_ = store.Close()
		if w.db.conn, err = sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)"); err != nil {
			return nil, err
		}
		return w, nil
	}
	fmt.Println("==> Starting MariaDB")
	if w.mariadb, err = testdb.StartMariaDB(); err != nil {
		return nil, err
	}
	p, err := w.mariadb.NewPanel(context.Background())
	if err != nil {
		return nil, err
	}
	w.dsn, w.pwFile, w.db = p.DSN, p.PasswordFile, &panelDB{conn: p.Root}
	return w, nil
}

func (w *world) close() {
	if w.mariadb != nil {
		w.mariadb.Close()
	}
	_ = w.env.Stop()
	_ = os.RemoveAll(w.dir)
}

// keep stops the servers but leaves the directory with the manager logs.
func (w *world) keep() {
	if w.mariadb != nil {
		w.mariadb.Close()
	}
	_ = w.env.Stop()
}

func (w *world) namespace(prefix string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := w.k8s.Create(context.Background(), ns); err != nil {
		return "", err
	}
	return ns.Name, nil
}

func benchUser(ns, name, email string) *v1.User {
	return &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.UserSpec{
		Email: email, PasswordSecretRef: v1.SecretKeyReference{Name: name + "-password"}, FirstName: "Ada", LastName: "Lovelace",
		Language: "en",
	}}
}

// createUsers creates n Users (and their Secrets) named prefix-i at the given concurrency.
func (w *world) createUsers(ns, prefix string, n, concurrency int) error {
	return w.createUserRange(ns, prefix, 0, n, concurrency, nil)
}

// createUserRange creates the Users prefix-from .. prefix-(to-1).
func (w *world) createUserRange(ns, prefix string, from, to, concurrency int, then func(context.Context, *v1.User) error) error {
	n := to
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range max(concurrency, 1) {
		wg.Go(func() {
			ctx := context.Background()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				name := fmt.Sprintf("%s-%d", prefix, i)
				s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-password"},
					StringData: map[string]string{"password": "bench-Harbor-7-lantern"}}
				u := benchUser(ns, name, fmt.Sprintf("%s@%s.example.com", name, ns))
				err := w.k8s.Create(ctx, s)
				if err == nil {
					err = w.k8s.Create(ctx, u)
				}
				if err == nil && then != nil {
					err = then(ctx, u)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok && err != nil {
		return err
	}
	return nil
}

// waitReady waits until at least n Users in the namespace are Ready at their generation. It
// watches instead of polling lists, so waiting costs the API server (which shares the cores with
// the manager being measured) one event per change rather than a list of every User.
func (w *world) waitReady(ns string, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ready := map[string]bool{}
	count := 0
	judge := func(u *v1.User, gone bool) error {
		if s := meta.FindStatusCondition(u.Status.Conditions, v1.ConditionStalled); s != nil && s.Status == metav1.ConditionTrue {
			return fmt.Errorf("user %s/%s is stalled: %s: %s", u.Namespace, u.Name, s.Reason, s.Message)
		}
		c := meta.FindStatusCondition(u.Status.Conditions, v1.ConditionReady)
		now := !gone && c != nil && c.Status == metav1.ConditionTrue && u.Status.ObservedGeneration == u.Generation
		if now != ready[u.Name] {
			ready[u.Name] = now
			count += map[bool]int{true: 1, false: -1}[now]
		}
		return nil
	}
	var list v1.UserList
	if err := w.k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	for i := range list.Items {
		if err := judge(&list.Items[i], false); err != nil {
			return err
		}
	}
	rv := list.ResourceVersion
	for count < n {
		watcher, err := w.k8s.Watch(ctx, &v1.UserList{}, client.InNamespace(ns),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("only %d of %d Users Ready in %s after %s", count, n, ns, timeout)
			}
			return err
		}
		for ev := range watcher.ResultChan() {
			u, ok := ev.Object.(*v1.User)
			if !ok {
				continue // a watch error: watch again from the last version seen
			}
			rv = u.ResourceVersion
			if ev.Type == "BOOKMARK" {
				continue
			}
			if err := judge(u, ev.Type == "DELETED"); err != nil {
				watcher.Stop()
				return err
			}
			if count >= n {
				break
			}
		}
		watcher.Stop()
		if count < n && ctx.Err() != nil {
			return fmt.Errorf("only %d of %d Users Ready in %s after %s", count, n, ns, timeout)
		}
	}
	return nil
}

// waitEvents waits until the namespace holds at least n Events. The manager writes its Events
// from a queue of its own, after the reconcile that recorded them has finished; a figure that
// counts API writes waits for the Events of the work before it, so they do not land in its count.
func (w *world) waitEvents(ns string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		// One item and the count of the rest: the API server counts, the list stays small.
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("EventList"))
		if err := w.k8s.List(context.Background(), list, client.InNamespace(ns), client.Limit(1)); err != nil {
			return err
		}
		got := int64(len(list.Items))
		if list.Continue != "" {
			if list.RemainingItemCount == nil {
				return fmt.Errorf("the API server did not count the Events in %s", ns)
			}
			got += *list.RemainingItemCount
		}
		if got >= int64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d Events in %s after %s", got, n, ns, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// manager is the real manager binary running as its own process.
type manager struct {
	cmd     *exec.Cmd
	metrics string
	done    chan struct{}
}

// startManager starts a manager of its own instance ("bench-<name>") watching the namespaces.
func (w *world) startManager(name, namespaces string, args ...string) (*manager, error) {
	return w.launch(name, "bench-"+name, append([]string{"--namespace=" + namespaces}, args...)...)
}

// startManagerAll starts a manager of the given instance watching every namespace, as deployed.
func (w *world) startManagerAll(name, instance string, args ...string) (*manager, error) {
	return w.launch(name, instance, args...)
}

func (w *world) launch(name, instance string, args ...string) (*manager, error) {
	port, err := testdb.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args = append([]string{"--panel-dsn=" + w.dsn, "--metrics-bind-address=" + addr, "--metrics-secure=false",
		"--health-probe-bind-address=0", "--instance-id=" + instance}, args...)
	if w.pwFile != "" {
		args = append(args, "--panel-password-file="+w.pwFile)
	}
	// BENCH_PPROF=host:port serves each manager's pprof there, one at a time, for profiling a figure.
	if addr := os.Getenv("BENCH_PPROF"); addr != "" {
		args = append(args, "--pprof-bind-address="+addr)
	}
	log, err := os.Create(filepath.Join(w.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(w.managerBin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.kubeconfig)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &manager{cmd: cmd, metrics: "http://" + addr + "/metrics", done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = log.Close(); close(m.done) }()
	serving := false
	for start := time.Now(); time.Since(start) < 30*time.Second && !serving; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(m.metrics); err == nil {
			_ = resp.Body.Close()
			serving = true
		}
	}
	if !serving {
		m.stop()
		return nil, fmt.Errorf("the manager %s did not serve metrics within 30s (log %s)", name, log.Name())
	}
	// The figures read the User controller's queue and reconcile metrics from the start; they
	// exist once the controller has started, and a missing one is an error from then on.
	if _, err := m.waitFor("the User controller to start", time.Minute, 100*time.Millisecond, func(s scrape) (bool, string, error) {
		_, err := s.userQueue()
		return err == nil, fmt.Sprint(err), nil
	}); err != nil {
		m.stop()
		return nil, fmt.Errorf("the manager %s: %w (log %s)", name, err, log.Name())
	}
	return m, nil
}

func (m *manager) stop() {
	_ = m.cmd.Process.Signal(os.Interrupt)
	select {
	case <-m.done:
	case <-time.After(20 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// waitFor reads the manager's metrics every `every` until done reports true and returns that
// scrape; done also describes where things stand, for the error when timeout passes first.
func (m *manager) waitFor(what string, timeout, every time.Duration, done func(scrape) (bool, string, error)) (scrape, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := m.scrape()
		if err != nil {
			return nil, fmt.Errorf("waiting for %s: %w", what, err)
		}
		ok, state, err := done(s)
		if err != nil {
			return nil, fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return s, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("waited %s for %s: %s", timeout, what, state)
		}
		time.Sleep(every)
	}
}

// cpu is the manager's user+system CPU time, from /proc.
func (m *manager) cpu() (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("cannot read the manager's CPU time: %w", err)
	}
	return parseCPU(string(raw))
}

// parseCPU reads utime+stime (fields 14 and 15) from a /proc/<pid>/stat line.
func parseCPU(stat string) (time.Duration, error) {
	paren := strings.LastIndexByte(stat, ')')
	if paren < 0 || paren+2 > len(stat) {
		return 0, fmt.Errorf("cannot read the manager's CPU time from %q", stat)
	}
	fields := strings.Fields(stat[paren+2:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("cannot read the manager's CPU time: %d fields after the command", len(fields))
	}
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cannot read the manager's user CPU time: %w", err)
	}
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cannot read the manager's system CPU time: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / 100, nil // USER_HZ
}

// peakRSS is the manager's peak resident set (VmHWM), in bytes.
func (m *manager) peakRSS() (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM for pid %d", m.cmd.Process.Pid)
}

// panelDB reads the benchmark's panel database directly.
type panelDB struct {
	conn   *sql.DB
	sqlite bool
}

func (p *panelDB) passwordOf(userUUID string) (string, error) {
	var h string
	err := p.conn.QueryRow("SELECT password FROM users WHERE uuid = ?", userUUID).Scan(&h)
	return h, err
}

// dbMark is the panel database's state at one moment, for counting the writes after it.
type dbMark struct {
	statements float64 // MariaDB: statements that changed data, server-wide, so far
	digest     string  // SQLite: sqliteFingerprint
}

func (p *panelDB) mark() (dbMark, error) {
	if p.sqlite {
		d, err := sqliteFingerprint(context.Background(), p.conn)
		return dbMark{digest: d}, err
	}
	n, err := mariadbWrites(p.conn)
	return dbMark{statements: n}, err
}

// writesSince counts the database writes since m. MariaDB counts its statements that changed
// data (Com_insert, Com_update, ...). SQLite keeps no count another process can read, so there it
// is 0 when every row of every table is as it was and 1 ("at least one") otherwise.
func (p *panelDB) writesSince(m dbMark) (float64, error) {
	now, err := p.mark()
	if err != nil {
		return 0, err
	}
	if p.sqlite {
		if now.digest == m.digest {
			return 0, nil
		}
		return 1, nil
	}
	return now.statements - m.statements, nil
}

func mariadbWrites(db *sql.DB) (float64, error) {
	rows, err := db.Query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_insert','Com_update','Com_delete','Com_replace'," +
		"'Com_insert_select','Com_update_multi','Com_delete_multi')")
	if err != nil {
		return 0, fmt.Errorf("cannot read MariaDB's statement counters: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var sum float64
	seen := 0
	for rows.Next() {
		var name string
		var v float64
		if err := rows.Scan(&name, &v); err != nil {
			return 0, fmt.Errorf("cannot read MariaDB's statement counters: %w", err)
		}
		sum += v
		seen++
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("cannot read MariaDB's statement counters: %w", err)
	}
	if seen != 7 {
		return 0, fmt.Errorf("MariaDB reported %d of its 7 data-changing statement counters", seen)
	}
	return sum, nil
}

// sqliteFingerprint is a SHA-256 over every row of every table (tables by name, rows by rowid,
// the rowid included), each value written with its type and length. Any change to any value (a
// second of users.updated_at, a flag, a row added, removed or re-inserted) changes it.
func sqliteFingerprint(ctx context.Context, db *sql.DB) (string, error) {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}) // one snapshot across the tables
	if err != nil {
		return "", fmt.Errorf("cannot read the panel database: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var tables []string
	rows, err := tx.QueryContext(ctx, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
	if err != nil {
		return "", fmt.Errorf("cannot list the panel tables: %w", err)
	}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			_ = rows.Close()
			return "", err
		}
		tables = append(tables, t)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return "", fmt.Errorf("cannot list the panel tables: %w", err)
	}
	if len(tables) == 0 {
		return "", errors.New("the panel database has no tables")
	}
	h := sha256.New()
	for _, t := range tables {
		if err := hashTable(ctx, tx, t, h); err != nil {
			return "", fmt.Errorf("cannot read the panel table %s: %w", t, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashTable(ctx context.Context, tx *sql.Tx, table string, h hash.Hash) error {
	// An identifier cannot be a parameter; the name comes from sqlite_schema, quoted as SQLite quotes.
	quoted := `"` + strings.ReplaceAll(table, `"`, `""`) + `"`
	rows, err := tx.QueryContext(ctx, "SELECT rowid, * FROM "+quoted+" ORDER BY rowid")
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	writeField(h, "table", table)
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		writeField(h, "row", "")
		for i, v := range vals {
			kind, text := encodeValue(v)
			writeField(h, kind, cols[i]+"="+text)
		}
	}
	return rows.Err()
}

// writeField writes a tagged, length-prefixed field, so no two different rows write the same bytes.
func writeField(h hash.Hash, kind, text string) {
	_, _ = fmt.Fprintf(h, "%s:%d:%s;", kind, len(text), text) // hash.Hash writes never fail
}

func encodeValue(v any) (string, string) {
	switch x := v.(type) {
	case nil:
		return "null", ""
	case int64:
		return "int", strconv.FormatInt(x, 10)
	case float64:
		return "float", strconv.FormatUint(math.Float64bits(x), 16)
	case string:
		return "text", x
	case []byte:
		return "blob", string(x)
	case bool:
		return "bool", strconv.FormatBool(x)
	case time.Time:
		return "time", x.Format(time.RFC3339Nano)
	default:
		return fmt.Sprintf("%T", v), fmt.Sprint(v)
	}
}
