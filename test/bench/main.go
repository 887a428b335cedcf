// Command bench measures the operator against the bounds it should sit at: it starts a real
// kube-apiserver and etcd, a real MariaDB (or SQLite with -sqlite), runs the real manager binary
// as its own process, drives it through the API, reads the manager's /metrics and /proc, and
// prints each figure with its ratio to its bound: measured in the same run where there is one,
// and said to be a constant where it is. Each figure counts that its work is done (metrics,
// rows, Ready Users) before it reads a result, and any error aborts the run: a figure is never
// computed from a value that could not be read. `make bench` runs it.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

type config struct {
	quick        bool
	sqlite       bool
	coldUsers    int
	overheadN    int
	noopUsers    int
	secrets      int
	rotations    int
	dupSmall     int
	dupLarge     int
	concurrency  int
	jsonOut      string
	markdownOut  string
	managerBin   string
	dupSamples   int
	resyncPeriod time.Duration
	only         string
	// admissionUsers exist when admissionSamples more are created and timed by the API server.
	admissionUsers, admissionSamples int
	importUsers                      int
	pluginBin                        string
}

// Where a figure's bound comes from.
const (
	boundMeasured         = "measured in this run"
	boundConstant         = "constant"
	boundConstantMeasured = "constant + measured in this run"
)

// figure is one measured result with its bound.
type figure struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Bound  float64 `json:"bound"`
	Ratio  float64 `json:"ratio"`
	Target string  `json:"target"`
	// BoundKind is one of the bound* constants: whether the bound was measured in this run.
	BoundKind string `json:"bound_kind"`
	// BoundFrom says what the bound is.
	BoundFrom string `json:"bound_from"`
	Met       bool   `json:"met"`
	Details   string `json:"details"`
}

func main() {
	var c config
	flag.BoolVar(&c.quick, "quick", false, "small sizes, for development")
	flag.BoolVar(&c.sqlite, "sqlite", false, "use the embedded SQLite panel database instead of MariaDB")
	flag.IntVar(&c.coldUsers, "cold-users", 1000, "Users in the cold sync (bcrypt cost 12)")
	flag.IntVar(&c.overheadN, "overhead-users", 1000, "Users in the overhead run (bcrypt cost 4)")
	flag.IntVar(&c.noopUsers, "noop-users", 10000, "Ready Users in the no-op resync")
	flag.IntVar(&c.secrets, "unrelated-secrets", 10000, "unrelated 10 KiB Secrets in the memory run")
	flag.IntVar(&c.rotations, "rotations", 100, "Secret rotations timed")
	flag.IntVar(&c.dupSmall, "dup-small", 100, "existing Users for the small duplicate-detection run")
	flag.IntVar(&c.dupLarge, "dup-large", 10000, "existing Users for the large duplicate-detection run")
	flag.IntVar(&c.dupSamples, "dup-samples", 7, "duplicates timed per size")
	flag.IntVar(&c.concurrency, "concurrency", runtime.NumCPU(), "the driver's concurrency (creates use multiples of it)")
	flag.StringVar(&c.jsonOut, "json", "bin/bench/results.json", "where to write the results as JSON")
	flag.StringVar(&c.markdownOut, "markdown", "", "where to also write the Markdown table the run prints "+
		"(e.g. bin/bench/results.md)")
	flag.StringVar(&c.managerBin, "manager", "bin/manager", "the manager binary")
	flag.StringVar(&c.pluginBin, "plugin", "bin/kubectl-puq", "the kubectl puq binary (the import figure)")
	flag.IntVar(&c.importUsers, "import-users", 10000, "panel users imported and adopted in the import figure")
	flag.DurationVar(&c.resyncPeriod, "noop-resync-period", 20*time.Second, "manager --resync-period in the no-op run")
	flag.StringVar(&c.only, "only", "", "run only these figures (comma-separated: memory,cold,overhead,rotation,duplicates,noop,"+
		"admission,import)")
	flag.IntVar(&c.admissionUsers, "admission-users", 10000, "existing Users when the admission webhook is timed")
	flag.IntVar(&c.admissionSamples, "admission-samples", 1000, "User creates whose admission the API server times")
	flag.Parse()
	if c.quick {
		c.coldUsers, c.overheadN, c.noopUsers, c.secrets, c.rotations = 40, 200, 500, 1000, 20
		c.dupSmall, c.dupLarge, c.dupSamples, c.resyncPeriod = 50, 500, 5, 10*time.Second
		c.admissionUsers, c.admissionSamples = 500, 200
		c.importUsers = 300
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	root := testenv.RepoRoot()
	if !filepath.IsAbs(c.managerBin) {
		c.managerBin = filepath.Join(root, c.managerBin)
	}
	c.pluginBin = pluginPath(root, c.pluginBin)
	w, err := startWorld(c)
	if err != nil {
		return err
	}
	start := time.Now()
	var figs []figure
	// Memory first: its manager watches every namespace, as deployed; the others watch their own.
	steps := []struct {
		name string
		fn   func(*world, config) (figure, error)
	}{{"memory", memory}, {"cold", coldSync}, {"overhead", overhead}, {"rotation", rotation}, {"duplicates", duplicates},
		{"noop", noopResync}, {"admission", admission}, {"import", importFigure}}
	for _, step := range steps {
		if c.only != "" && !slices.Contains(strings.Split(c.only, ","), step.name) {
			continue
		}
		f, err := step.fn(w, c)
		if err != nil {
			w.keep()
			return fmt.Errorf("%s: %w (manager logs kept in %s)", step.name, err, w.dir)
		}
		printFigure(f)
		figs = append(figs, f)
	}
	took := time.Since(start)
	fmt.Printf("\nTotal %s\n", took.Round(time.Second))
	w.close()
	return writeResults(c, root, figs, took)
}

// coldSync: wall time from the first create to all Ready for N Users at bcrypt cost 12, against
// N x the median hash time / the hashes that can run at once.
func coldSync(w *world, c config) (figure, error) {
	ns, err := w.namespace("cold")
	if err != nil {
		return figure{}, err
	}
	// The single-hash time is sampled before and after the sync (the machine's speed drifts over
	// minutes on a shared host) and the median of all samples is the bound's hash time.
	before, err := hashSamples(12, 7)
	if err != nil {
		return figure{}, err
	}
	parallel := runtime.NumCPU() // the hashes that can run at once on this machine
	mgr, err := w.startManager("cold", ns, "--bcrypt-cost=12")
	if err != nil {
		return figure{}, err
	}
	defer mgr.stop()
	t0 := time.Now()
	if err := w.createUsers(ns, "u", c.coldUsers, c.concurrency*2); err != nil {
		return figure{}, err
	}
	// The namespace and its Users are new and only this manager watches it, so Ready at their
	// generation is this manager's work; the hash count confirms every User got its password.
	if err := w.waitReady(ns, c.coldUsers, 30*time.Minute); err != nil {
		return figure{}, err
	}
	wall := time.Since(t0)
	hashes, err := mgr.metric("puq_user_operator_bcrypt_hash_duration_seconds_count")
	if err != nil {
		return figure{}, err
	}
	if hashes < float64(c.coldUsers) {
		return figure{}, fmt.Errorf("%d Users Ready after only %.0f bcrypt hashes: each needs one", c.coldUsers, hashes)
	}
	mgr.stop()
	after, err := hashSamples(12, 7)
	if err != nil {
		return figure{}, err
	}
	median := medianOf(append(before, after...))
	bound := time.Duration(float64(median) * float64(c.coldUsers) / float64(parallel))
	return ratioFigure("Cold sync", wall.Seconds(), "s", bound.Seconds(), "<= 1.15", func(r float64) bool { return r <= 1.15 },
		boundMeasured, "N x the median single hash at cost 12 (timed in this run) / the cores",
		fmt.Sprintf("%d Users at cost 12; median hash %s (7 hashes before, 7 after); %d at once; %0.f hashes",
			c.coldUsers, median.Round(time.Millisecond), parallel, hashes)), nil
}

// overhead: Users/s to Ready at bcrypt cost 4, against a plain client doing the same API writes.
func overhead(w *world, c config) (figure, error) {
	ns, err := w.namespace("overhead")
	if err != nil {
		return figure{}, err
	}
	baseNS, err := w.namespace("baseline")
	if err != nil {
		return figure{}, err
	}
	mgr, err := w.startManager("overhead", ns, "--bcrypt-cost=4", "--password-hash-min-cost=4")
	if err != nil {
		return figure{}, err
	}
	defer mgr.stop()
	s, err := mgr.scrape()
	if err != nil {
		return figure{}, err
	}
	// The plain client works with as many workers as the operator reconciles with (its
	// --max-concurrent-reconciles); without that number the comparison has no meaning.
	workers, err := s.sum("controller_runtime_max_concurrent_reconciles", "controller", "user")
	if err != nil {
		return figure{}, err
	}
	if workers < 1 {
		return figure{}, fmt.Errorf("the manager reports %.0f User workers", workers)
	}
	before, err := s.apiWrites()
	if err != nil {
		return figure{}, err
	}
	// The operator and the plain client take turns, a third of the Users each time, so that a drift
	// in the shared machine's speed falls on both sides alike; each side's rate is its Users over
	// its total time. The manager watches only its own namespace, so it idles during the client's
	// turns.
	const rounds = 3
	var opTime, baseTime time.Duration
	var writesPerUser float64
	for r := range rounds {
		from, to := r*c.overheadN/rounds, (r+1)*c.overheadN/rounds
		t0 := time.Now()
		if err := w.createUserRange(ns, "u", from, to, c.concurrency*2, nil); err != nil {
			return figure{}, err
		}
		if err := w.waitReady(ns, to, 30*time.Minute); err != nil {
			return figure{}, err
		}
		opTime += time.Since(t0)
		s, err := mgr.scrape()
		if err != nil {
			return figure{}, err
		}
		writes, err := s.apiWrites()
		if err != nil {
			return figure{}, err
		}
		writesPerUser = (writes - before) / float64(to)
		if writesPerUser < 1 {
			return figure{}, fmt.Errorf("%d Users Ready after %.0f API writes by the manager: each needs at least its status",
				to, writes-before)
		}
		// The plain client: the same creates, then the operator's writes per object.
		extra := int(writesPerUser + 0.5)
		t1 := time.Now()
		if err := w.createUserRange(baseNS, "u", from, to, int(workers), func(ctx context.Context, u *v1.User) error {
			for i := range extra {
				if i%2 == 0 {
					u.Annotations = map[string]string{"bench": fmt.Sprint(i)}
					if err := w.k8s.Update(ctx, u); err != nil {
						return err
					}
					continue
				}
				u.Status.PanelStatus = fmt.Sprint("NEW", i)
				if err := w.k8s.Status().Update(ctx, u); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return figure{}, err
		}
		baseTime += time.Since(t1)
	}
	opRate := float64(c.overheadN) / opTime.Seconds()
	baseRate := float64(c.overheadN) / baseTime.Seconds()
	return ratioFigure("Overhead (cost 4)", opRate, "Users/s", baseRate, ">= 0.7", func(r float64) bool { return r >= 0.7 },
		boundMeasured, "a plain client's Users/s making the same API writes, in turns with the operator",
		fmt.Sprintf("%d Users in %d alternating turns; the operator made %.1f API writes per User, replayed by a plain "+
			"client with %.0f workers", c.overheadN, rounds, writesPerUser, workers)), nil
}

// rotation: time from a Secret change to the new hash in the database.
func rotation(w *world, c config) (figure, error) {
	ns, err := w.namespace("rotation")
	if err != nil {
		return figure{}, err
	}
	mgr, err := w.startManager("rotation", ns, "--bcrypt-cost=12")
	if err != nil {
		return figure{}, err
	}
	defer mgr.stop()
	if err := w.createUsers(ns, "r", 1, 1); err != nil {
		return figure{}, err
	}
	if err := w.waitReady(ns, 1, 2*time.Minute); err != nil {
		return figure{}, err
	}
	u := &v1.User{}
	if err := w.k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "r-0"}, u); err != nil {
		return figure{}, err
	}
	samples, err := hashSamples(12, 5)
	if err != nil {
		return figure{}, err
	}
	median := medianOf(samples)
	var lat []time.Duration
	for i := range c.rotations {
		old, err := w.db.passwordOf(u.Status.UUID)
		if err != nil {
			return figure{}, err
		}
		s := &corev1.Secret{}
		if err := w.k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "r-0-password"}, s); err != nil {
			return figure{}, err
		}
		s.Data = map[string][]byte{"password": fmt.Appendf(nil, "rotated-Quartz-%d-river", i)}
		t0 := time.Now()
		if err := w.k8s.Update(context.Background(), s); err != nil {
			return figure{}, err
		}
		// Done when the row holds a new hash: the rotation's own effect, read from the database.
		for {
			h, err := w.db.passwordOf(u.Status.UUID)
			if err != nil {
				return figure{}, err
			}
			if h != old {
				break
			}
			if time.Since(t0) > time.Minute {
				return figure{}, fmt.Errorf("rotation %d not applied within a minute", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[(len(lat)*99+99)/100-1]
	bound := time.Second + median
	return ratioFigure("Rotation latency p99", p99.Seconds(), "s", bound.Seconds(), "<= 1", func(r float64) bool { return r <= 1 },
		boundConstantMeasured, "a constant 1 s plus one hash at cost 12 timed in this run",
		fmt.Sprintf("%d rotations; p50 %s, p99 %s; one hash %s", c.rotations, p50.Round(time.Millisecond),
			p99.Round(time.Millisecond), median.Round(time.Millisecond))), nil
}

// duplicates: time to mark a duplicate-email User with few vs many existing Users.
func duplicates(w *world, c config) (figure, error) {
	ns, err := w.namespace("dup")
	if err != nil {
		return figure{}, err
	}
	// The duplicates go to a namespace of their own, so the existing Users' namespace stays all Ready.
	dupNS, err := w.namespace("dupes")
	if err != nil {
		return figure{}, err
	}
	mgr, err := w.startManager("dup", ns+","+dupNS, "--bcrypt-cost=4", "--password-hash-min-cost=4")
	if err != nil {
		return figure{}, err
	}
	defer mgr.stop()
	created := 0
	measure := func(existing int) (time.Duration, error) {
		if err := w.createUserRange(ns, "d", created, existing, c.concurrency*4, nil); err != nil {
			return 0, err
		}
		created = existing
		if err := w.waitReady(ns, existing, 30*time.Minute); err != nil {
			return 0, err
		}
		// Ready Users may still have reconciles queued (a status patch wakes the next look): the
		// detection is timed against a manager that holds the existing Users, not one still
		// catching up with their creation.
		if _, err := mgr.waitFor("the existing Users' reconciles to finish", 5*time.Minute, 50*time.Millisecond,
			queueIdle(nil)); err != nil {
			return 0, err
		}
		var ds []time.Duration
		for i := range c.dupSamples {
			name := fmt.Sprintf("dup-%d-%d", existing, i)
			u := benchUser(dupNS, name, strings.ToUpper(fmt.Sprintf("d-%d@%s.example.com", i, ns))) // d-i's email, other case
			t0 := time.Now()
			if err := w.k8s.Create(context.Background(), u); err != nil {
				return 0, err
			}
			// Done when the manager has marked this new User a duplicate.
			for {
				got := &v1.User{}
				if err := w.k8s.Get(context.Background(), client.ObjectKeyFromObject(u), got); err != nil {
					return 0, err
				}
				if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady); c != nil && c.Reason == v1.ReasonDuplicateEmail {
					break
				}
				if time.Since(t0) > time.Minute {
					return 0, fmt.Errorf("duplicate %s not marked within a minute", name)
				}
				time.Sleep(5 * time.Millisecond)
			}
			ds = append(ds, time.Since(t0))
		}
		slices.Sort(ds)
		return ds[len(ds)/2], nil
	}
	small, err := measure(c.dupSmall)
	if err != nil {
		return figure{}, err
	}
	large, err := measure(c.dupLarge)
	if err != nil {
		return figure{}, err
	}
	return ratioFigure("Duplicate detection", large.Seconds(), "s", small.Seconds(), "<= 1.5", func(r float64) bool { return r <= 1.5 },
		boundMeasured, fmt.Sprintf("the same detection with %d existing Users", c.dupSmall),
		fmt.Sprintf("median of %d: %s with %d Users, %s with %d Users", c.dupSamples, small.Round(time.Millisecond), c.dupSmall,
			large.Round(time.Millisecond), c.dupLarge)), nil
}

// noopCPUPerUser is the no-op resync's CPU target per User: a constant, not measured in the run.
const noopCPUPerUser = 200

// noopResync: bcrypt calls, database writes and API writes over one full resync of Ready Users,
// and manager CPU per User.
func noopResync(w *world, c config) (figure, error) {
	ns, err := w.namespace("noop")
	if err != nil {
		return figure{}, err
	}
	mgr, err := w.startManager("noop", ns, "--bcrypt-cost=4", "--password-hash-min-cost=4", "--resync-period="+c.resyncPeriod.String())
	if err != nil {
		return figure{}, err
	}
	defer mgr.stop()
	if err := w.createUsers(ns, "n", c.noopUsers, c.concurrency*4); err != nil {
		return figure{}, err
	}
	if err := w.waitReady(ns, c.noopUsers, 60*time.Minute); err != nil {
		return figure{}, err
	}
	// The creation's work finishes before the count starts: its Events (one Created per User)
	// are written, and every User queued so far has been reconciled to the end.
	if err := w.waitEvents(ns, c.noopUsers, 10*time.Minute); err != nil {
		return figure{}, err
	}
	s0, err := mgr.waitFor("the creation's reconciles to finish", 10*time.Minute, 250*time.Millisecond, queueIdle(nil))
	if err != nil {
		return figure{}, err
	}
	base, err := readNoop(s0)
	if err != nil {
		return figure{}, err
	}
	c0, err := mgr.cpu()
	if err != nil {
		return figure{}, err
	}
	d0, err := w.db.mark()
	if err != nil {
		return figure{}, err
	}
	if addr := os.Getenv("BENCH_PPROF"); addr != "" {
		go profileManager(addr, c.resyncPeriod)
	}
	// One full resync: every User compared with the panel ...
	if _, err := mgr.waitFor("one full resync", c.resyncPeriod*3+5*time.Minute, time.Second, func(s scrape) (bool, string, error) {
		compared, err := s.sum("puq_user_operator_resync_users_total")
		if err != nil {
			return false, "", err
		}
		return compared-base.compared >= float64(c.noopUsers),
			fmt.Sprintf("%.0f of %d Users compared with the panel", compared-base.compared, c.noopUsers), nil
	}); err != nil {
		return figure{}, err
	}
	// ... and every User the resync queued reconciled to the end.
	resyncQueued := func(s scrape) (bool, string, error) {
		n, err := readNoop(s)
		if err != nil {
			return false, "", err
		}
		return n.reconciles-base.reconciles >= n.queued-base.queued,
			fmt.Sprintf("%.0f reconciles for %.0f Users queued by the resync", n.reconciles-base.reconciles, n.queued-base.queued), nil
	}
	s1, err := mgr.waitFor("the reconciles the resync queued", 10*time.Minute, 250*time.Millisecond, queueIdle(resyncQueued))
	if err != nil {
		return figure{}, err
	}
	c1, err := mgr.cpu()
	if err != nil {
		return figure{}, err
	}
	end, err := readNoop(s1)
	if err != nil {
		return figure{}, err
	}
	dbWrites, err := w.db.writesSince(d0)
	if err != nil {
		return figure{}, err
	}
	n := end.compared - base.compared
	cpuPerUser := (c1 - c0).Seconds() / n * 1e6
	hashes, apiWrites := end.hashes-base.hashes, end.apiWrites-base.apiWrites
	dbText := fmt.Sprintf("%.0f database writes", dbWrites)
	if w.sqlite {
		dbText = map[bool]string{true: "0 database writes (every SQLite row unchanged)",
			false: "database writes: SQLite rows CHANGED"}[dbWrites == 0]
	}
	f := ratioFigure("No-op resync", cpuPerUser, "µs CPU/User", noopCPUPerUser,
		fmt.Sprintf("0 bcrypt, 0 DB writes, 0 API writes; <= %d µs CPU/User", noopCPUPerUser), func(r float64) bool { return r <= 1 },
		boundConstant, fmt.Sprintf("a constant %d µs CPU per User, and zero writes", noopCPUPerUser),
		fmt.Sprintf("%d Users, %.0f compared with the panel, %.0f queued, %.0f reconciles: %.0f bcrypt calls, %s, %.0f API writes",
			c.noopUsers, n, end.queued-base.queued, end.reconciles-base.reconciles, hashes, dbText, apiWrites))
	f.Met = f.Met && hashes == 0 && dbWrites == 0 && apiWrites == 0
	return f, nil
}

// noopCounts are the manager's counters the no-op resync figure reads from one scrape.
type noopCounts struct{ reconciles, hashes, apiWrites, compared, queued float64 }

func readNoop(s scrape) (noopCounts, error) {
	var n noopCounts
	var err error
	if n.reconciles, err = s.sum("controller_runtime_reconcile_total", "controller", "user"); err != nil {
		return n, err
	}
	if n.hashes, err = s.sum("puq_user_operator_bcrypt_hash_duration_seconds_count"); err != nil {
		return n, err
	}
	if n.apiWrites, err = s.apiWrites(); err != nil {
		return n, err
	}
	if n.compared, err = s.sum("puq_user_operator_resync_users_total"); err != nil {
		return n, err
	}
	if n.queued, err = s.sum("puq_user_operator_resync_users_total", "result", "reconcile"); err != nil {
		return n, err
	}
	return n, nil
}

// queueIdle is a waitFor condition: the User controller's queue is idle, and also (when given) more.
func queueIdle(and func(scrape) (bool, string, error)) func(scrape) (bool, string, error) {
	return func(s scrape) (bool, string, error) {
		q, err := s.userQueue()
		if err != nil {
			return false, "", err
		}
		ok, state := q.idle(), fmt.Sprintf("%.0f of %.0f queued reconciles done, %.0f running", q.reconciles, q.adds, q.active)
		if and != nil {
			more, moreState, err := and(s)
			if err != nil {
				return false, "", err
			}
			ok, state = ok && more, state+"; "+moreState
		}
		return ok, state, nil
	}
}

// profileManager saves a CPU profile of the manager over the resync, for finding what a no-op
// costs. It is a side output: a failure is reported and the figure goes on.
func profileManager(addr string, d time.Duration) {
	resp, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=" + fmt.Sprint(int(d.Seconds())))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: no CPU profile:", err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	f, err := os.Create(filepath.Join(testenv.RepoRoot(), "bin", "bench", "noop.pprof"))
	if err == nil {
		_, err = io.Copy(f, resp.Body)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: no CPU profile:", err)
	}
}

// memInstance is the operator instance of the memory figure's managers.
const memInstance = "bench-mem"

// memory: the manager's peak RSS while it starts over Users that are already in sync, with many
// unrelated Secrets in the cluster, against the same start without them.
func memory(w *world, c config) (figure, error) {
	const users = 100
	ns, err := w.namespace("mem")
	if err != nil {
		return figure{}, err
	}
	if err := w.createUsers(ns, "m", users, c.concurrency*4); err != nil {
		return figure{}, err
	}
	// Made before the first manager starts: that one brings the PanelAccessPolicy's status (the
	// namespaces it covers) up to date, so the measured starts find nothing to write there either.
	junk, err := w.namespace("junk")
	if err != nil {
		return figure{}, err
	}
	// A first manager creates the panel users and binds them to memInstance. The two measured
	// managers run as that same instance, so each finds every User bound to itself and in sync
	// and does the same work: list every Secret, reconcile every User, write nothing. Only the
	// unrelated Secrets differ between them.
	prime, err := w.startManagerAll("mem-prime", memInstance, "--bcrypt-cost=4", "--password-hash-min-cost=4")
	if err != nil {
		return figure{}, err
	}
	err = w.waitReady(ns, users, 10*time.Minute)
	prime.stop()
	if err != nil {
		return figure{}, err
	}
	without, err := startupPeak(w, "mem-without", users, users)
	if err != nil {
		return figure{}, err
	}
	blob := strings.Repeat("x", 10*1024)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range c.concurrency * 8 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(c.secrets); i = next.Add(1) - 1 {
				s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: junk, Name: fmt.Sprintf("junk-%d", i)},
					StringData: map[string]string{"blob": blob}}
				if err := w.k8s.Create(context.Background(), s); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok && err != nil {
		return figure{}, err
	}
	with, err := startupPeak(w, "mem-with", users, users+c.secrets)
	if err != nil {
		return figure{}, err
	}
	// The unrelated Secrets (100 MiB in etcd and in the API server's watch cache) are this
	// figure's load only: they go, so they do not slow the API server in the figures after it.
	if err := w.k8s.DeleteAllOf(context.Background(), &corev1.Secret{}, client.InNamespace(junk)); err != nil {
		return figure{}, err
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	return ratioFigure("Memory with unrelated Secrets", mib(with.peak), "MiB peak RSS", mib(without.peak), "<= 1.10",
		func(r float64) bool { return r <= 1.10 }, boundMeasured, "the same manager start without the unrelated Secrets",
		fmt.Sprintf("%d unrelated 10 KiB Secrets: %.1f MiB vs %.1f MiB without; each start reconciled all %d Users "+
			"(%.0f vs %.0f reconciles) and wrote nothing; Secrets listed %.0f vs %.0f",
			c.secrets, mib(with.peak), mib(without.peak), users, with.reconciles, without.reconciles, with.listed,
			without.listed)), nil
}

// startup is what one measured manager start did, and its peak RSS.
type startup struct {
	peak               int64
	listed, reconciles float64
}

// startupPeak starts a manager of memInstance over every namespace and reads its peak RSS once
// its Secret watch has finished a list of at least `secrets` Secrets, every one of the `users`
// Users has been reconciled by it (the users gauge counts the Users this process has matched
// with their panel users), and its queue is idle. It fails when the manager wrote to the API
// server or the database: then the Users were not in sync with it, and two starts would not do
// the same work.
func startupPeak(w *world, name string, users, secrets int) (startup, error) {
	d0, err := w.db.mark()
	if err != nil {
		return startup{}, err
	}
	mgr, err := w.startManagerAll(name, memInstance, "--bcrypt-cost=4", "--password-hash-min-cost=4")
	if err != nil {
		return startup{}, err
	}
	defer mgr.stop()
	var st startup
	wrote := func(apiWrites, dbWrites float64) error {
		return fmt.Errorf("the manager %s made %.0f API writes and %.0f database writes over Users that were in sync "+
			"with it: the two starts would not do the same work (log in %s)", name, apiWrites, dbWrites,
			filepath.Join(w.dir, name+".log"))
	}
	s, err := mgr.waitFor("the start to list every Secret and reconcile every User", 5*time.Minute, 250*time.Millisecond,
		queueIdle(func(s scrape) (bool, string, error) {
			if apiWrites, err := s.apiWrites(); err != nil || apiWrites > 0 {
				return false, "", cmp.Or(err, wrote(apiWrites, 0))
			}
			lists, err := s.sum("puq_user_operator_secret_lists_total")
			if err != nil {
				return false, "", err
			}
			if st.listed, err = s.sum("puq_user_operator_secrets_listed_total"); err != nil {
				return false, "", err
			}
			seen, err := s.sum("puq_user_operator_users")
			if err != nil {
				return false, "", err
			}
			return lists >= 1 && st.listed >= float64(secrets) && seen >= float64(users),
				fmt.Sprintf("%.0f complete Secret lists, %.0f of %d Secrets listed, %.0f of %d Users reconciled",
					lists, st.listed, secrets, seen, users), nil
		}))
	if err != nil {
		return startup{}, err
	}
	if st.peak, err = mgr.peakRSS(); err != nil {
		return startup{}, err
	}
	if st.reconciles, err = s.sum("controller_runtime_reconcile_total", "controller", "user"); err != nil {
		return startup{}, err
	}
	apiWrites, err := s.apiWrites()
	if err != nil {
		return startup{}, err
	}
	dbWrites, err := w.db.writesSince(d0)
	if err != nil {
		return startup{}, err
	}
	if apiWrites != 0 || dbWrites != 0 {
		return startup{}, wrote(apiWrites, dbWrites)
	}
	return st, nil
}

func ratioFigure(name string, value float64, unit string, bound float64, target string, met func(float64) bool,
	boundKind, boundFrom, details string) figure {
	r := value / bound
	return figure{Name: name, Value: value, Unit: unit, Bound: bound, Ratio: r, Target: target, BoundKind: boundKind,
		BoundFrom: boundFrom, Met: met(r), Details: details}
}

// hashSamples times n single bcrypt hashes at the cost, one at a time.
func hashSamples(cost, n int) ([]time.Duration, error) {
	ds := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := password.Hash("bench-Harbor-7-lantern", cost); err != nil {
			return nil, fmt.Errorf("cannot time a bcrypt hash: %w", err)
		}
		ds = append(ds, time.Since(t0))
	}
	return ds, nil
}

func medianOf(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func printFigure(f figure) {
	mark := "MET"
	if !f.Met {
		mark = "MISSED"
	}
	fmt.Printf("%-30s %10.3f %-14s bound %10.3f  ratio %6.3f  target %-10s %s\n    bound: %s (%s)\n    %s\n", f.Name, f.Value,
		f.Unit, f.Bound, f.Ratio, f.Target, mark, f.BoundFrom, f.BoundKind, f.Details)
}

// commit names the code the run measured: the short hash, "+dirty" when the work tree differs.
func commit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err != nil ||
		len(st) > 0 {
		c += "+dirty"
	}
	return c
}

// markdownTable is the figures as the table docs/benchmarks.md shows, ready to paste.
func markdownTable(figs []figure) string {
	var b strings.Builder
	b.WriteString("| figure | value | bound | bound is | ratio | target | met | details |\n|---|---|---|---|---|---|---|---|\n")
	for _, f := range figs {
		fmt.Fprintf(&b, "| %s | %.3f %s | %.3f | %s: %s | %.3f | %s | %s | %s |\n", f.Name, f.Value, f.Unit, f.Bound,
			f.BoundKind, f.BoundFrom, f.Ratio, f.Target, map[bool]string{true: "yes", false: "**no**"}[f.Met], f.Details)
	}
	return b.String()
}

func writeResults(c config, root string, figs []figure, took time.Duration) error {
	path := c.jsonOut
	if !filepath.IsAbs(path) {
		path = filepath.Join(root, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	engine := "MariaDB"
	if c.sqlite {
		engine = "SQLite"
	}
	rev := commit(root)
	out := map[string]any{"date": time.Now().UTC().Format(time.RFC3339), "commit": rev, "cores": runtime.NumCPU(),
		"go": runtime.Version(), "engine": engine, "quick": c.quick, "seconds": took.Seconds(), "figures": figs}
	raw, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return err
	}
	table := markdownTable(figs)
	fmt.Printf("\nResults: %s\n\nCommit %s, %s, quick=%v, %s:\n\n%s", path, rev, engine, c.quick, took.Round(time.Second), table)
	if c.markdownOut == "" {
		return nil
	}
	md := c.markdownOut
	if !filepath.IsAbs(md) {
		md = filepath.Join(root, md)
	}
	return os.WriteFile(md, []byte(table), 0o644)
}
