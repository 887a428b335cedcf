package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
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
	if w.k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: w.env.Scheme}); err != nil {
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

// manager is the real manager binary running as its own process.
type manager struct {
	cmd     *exec.Cmd
	metrics string
	done    chan struct{}
}

func (w *world) startManager(name, namespace string, args ...string) (*manager, error) {
	return w.launch(name, append([]string{"--namespace=" + namespace}, args...)...)
}

func (w *world) startManagerAll(name string, args ...string) (*manager, error) {
	return w.launch(name, args...)
}

func (w *world) launch(name string, args ...string) (*manager, error) {
	port, err := testdb.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args = append([]string{"--panel-dsn=" + w.dsn, "--metrics-bind-address=" + addr, "--metrics-secure=false",
		"--health-probe-bind-address=0", "--instance-id=bench-" + name}, args...)
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
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(m.metrics); err == nil {
			_ = resp.Body.Close()
			return m, nil
		}
	}
	m.stop()
	return nil, fmt.Errorf("the manager %s did not serve metrics within 30s (log %s)", name, log.Name())
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

// metric sums the samples of a metric: name alone sums every series; name{label="v" narrows to
// the series whose labels start that way.
func (m *manager) metric(selector string) float64 {
	name, labels, _ := strings.Cut(selector, "{")
	return m.sum(func(line string) bool {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			return false
		}
		return labels == "" || strings.HasPrefix(rest, "{"+labels)
	})
}

// apiWrites counts the manager's write requests to the API server (client-go's request metric).
func (m *manager) apiWrites() float64 {
	return m.sum(func(line string) bool {
		if !strings.HasPrefix(line, "rest_client_requests_total{") {
			return false
		}
		for _, verb := range []string{"POST", "PUT", "PATCH", "DELETE"} {
			if strings.Contains(line, `method="`+verb+`"`) {
				return true
			}
		}
		return false
	})
}

func (m *manager) sum(match func(string) bool) float64 {
	req, err := http.NewRequest(http.MethodGet, m.metrics, nil)
	if err != nil {
		return -1
	}
	req.Header.Set("Accept-Encoding", "identity") // spare the manager gzip work the measurement would include
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer func() { _ = resp.Body.Close() }()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || !match(line) {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// cpu is the manager's user+system CPU time, from /proc.
func (m *manager) cpu() time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(raw)[strings.LastIndexByte(string(raw), ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
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

// writes counts the statements that changed data: MariaDB's own counters, or for SQLite a
// fingerprint of every table the operator writes (0 while unchanged).
func (p *panelDB) writes() (float64, error) {
	if p.sqlite {
		var fp string
		err := p.conn.QueryRow("SELECT (SELECT COUNT(*) FROM activity_logs) || '|' || " +
			"IFNULL((SELECT MAX(updated_at) FROM users),'') || '|' || IFNULL((SELECT MAX(updated_at) FROM verifications),'') " +
			"|| '|' || (SELECT COUNT(*) FROM verifications) || '|' || IFNULL((SELECT MAX(updated_at) FROM client_x_user),'') " +
			"|| '|' || IFNULL((SELECT MAX(updated_at) FROM puq_operator_bindings),'')").Scan(&fp)
		if err != nil {
			return 0, err
		}
		var h float64
		for _, r := range fp {
			h = h*31 + float64(r)
		}
		return h, nil
	}
	rows, err := p.conn.Query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_insert','Com_update','Com_delete','Com_replace'," +
		"'Com_insert_select','Com_update_multi','Com_delete_multi')")
	if err != nil {
		return 0, err
	}
	defer func() { _ = rows.Close() }()
	var sum float64
	for rows.Next() {
		var name string
		var v float64
		if err := rows.Scan(&name, &v); err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, rows.Err()
}
