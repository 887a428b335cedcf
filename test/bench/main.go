// Command bench measures the operator against the bounds it should sit at: it starts a real
// kube-apiserver and etcd, a real MariaDB (or SQLite with -sqlite), runs the real manager binary
// as its own process, drives it through the API, reads the manager's /metrics and /proc, and
// prints each figure with its ratio to a bound measured in the same run. `make bench` runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
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
}

// figure is one measured result with its bound.
type figure struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	Bound   float64 `json:"bound"`
	Ratio   float64 `json:"ratio"`
	Target  string  `json:"target"`
	Met     bool    `json:"met"`
	Details string  `json:"details"`
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
	flag.StringVar(&c.markdownOut, "markdown", "", "where to write the results as a Markdown table (e.g. docs/benchmarks.md)")
	flag.StringVar(&c.managerBin, "manager", "bin/manager", "the manager binary")
	flag.DurationVar(&c.resyncPeriod, "noop-resync-period", 20*time.Second, "manager --resync-period in the no-op run")
	flag.StringVar(&c.only, "only", "", "run only these figures (comma-separated: memory,cold,overhead,rotation,duplicates,noop)")
	flag.Parse()
	if c.quick {
		c.coldUsers, c.overheadN, c.noopUsers, c.secrets, c.rotations = 40, 200, 500, 1000, 20
		c.dupSmall, c.dupLarge, c.dupSamples, c.resyncPeriod = 50, 500, 5, 10*time.Second
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
		{"noop", noopResync}}
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
	fmt.Printf("\nTotal %s\n", time.Since(start).Round(time.Second))
	w.close()
	return writeResults(c, root, figs, time.Since(start))
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
	samples := hashSamples(12, 7)
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
	if err := w.waitReady(ns, c.coldUsers, 30*time.Minute); err != nil {
		return figure{}, err
	}
	wall := time.Since(t0)
	hashes := mgr.metric("puq_user_operator_bcrypt_hash_duration_seconds_count")
	mgr.stop()
	median := medianOf(append(samples, hashSamples(12, 7)...))
	bound := time.Duration(float64(median) * float64(c.coldUsers) / float64(parallel))
	return ratioFigure("Cold sync", wall.Seconds(), "s", bound.Seconds(), "<= 1.15", func(r float64) bool { return r <= 1.15 },
		fmt.Sprintf("%d Users at cost 12; median hash %s (7 hashes before, 7 after); %d at once; %0.f hashes",
			c.coldUsers, median.Round(time.Millisecond),
			parallel, hashes)), nil
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
	mgr, err := w.startManager("overhead", ns, "--bcrypt-cost=4")
	if err != nil {
		return figure{}, err
	}
	defer mgr.stop()
	// The operator and the plain client take turns, a third of the Users each time, so that a drift
	// in the shared machine's speed falls on both sides alike; each side's rate is its Users over
	// its total time. The manager watches only its own namespace, so it idles during the client's
	// turns.
	const rounds = 3
	var opTime, baseTime time.Duration
	var writesPerUser float64
	var workers int
	before := mgr.apiWrites()
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
		writesPerUser = (mgr.apiWrites() - before) / float64(to)
		workers = int(mgr.metric(`controller_runtime_max_concurrent_reconciles{controller="user"`))
		// The plain client: the same creates, then the operator's writes per object, with as many
		// workers as the operator reconciles with (its --max-concurrent-reconciles).
		extra := int(writesPerUser + 0.5)
		t1 := time.Now()
		if err := w.createUserRange(baseNS, "u", from, to, workers, func(ctx context.Context, u *v1.User) error {
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
		fmt.Sprintf("%d Users in %d alternating turns; the operator made %.1f API writes per User, replayed by a plain "+
			"client with %d workers", c.overheadN, rounds, writesPerUser, workers)), nil
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
	median := medianHash(12, 5)
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
	return ratioFigure("Rotation latency p99", p99.Seconds(), "s", bound.Seconds(), "<= 1 (1 s + one hash)",
		func(r float64) bool { return r <= 1 }, fmt.Sprintf("%d rotations; p50 %s, p99 %s; one hash %s", c.rotations,
			p50.Round(time.Millisecond), p99.Round(time.Millisecond), median.Round(time.Millisecond))), nil
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
	mgr, err := w.startManager("dup", ns+","+dupNS, "--bcrypt-cost=4")
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
		var ds []time.Duration
		for i := range c.dupSamples {
			name := fmt.Sprintf("dup-%d-%d", existing, i)
			u := benchUser(dupNS, name, strings.ToUpper(fmt.Sprintf("d-%d@%s.example.com", i, ns))) // d-i's email, other case
			t0 := time.Now()
			if err := w.k8s.Create(context.Background(), u); err != nil {
				return 0, err
			}
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
		fmt.Sprintf("median of %d: %s with %d Users, %s with %d Users", c.dupSamples, small.Round(time.Millisecond), c.dupSmall,
			large.Round(time.Millisecond), c.dupLarge)), nil
}

// noopResync: bcrypt calls, database writes and API writes over one full resync of Ready Users,
// and manager CPU per User.
func noopResync(w *world, c config) (figure, error) {
	ns, err := w.namespace("noop")
	if err != nil {
		return figure{}, err
	}
	mgr, err := w.startManager("noop", ns, "--bcrypt-cost=4", "--resync-period="+c.resyncPeriod.String())
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
	// Let the creation's follow-up reconciles drain, then watch one full resync of every User.
	time.Sleep(3 * time.Second)
	reconciles := func() float64 { return mgr.metric(`controller_runtime_reconcile_total{controller="user"`) }
	compared := func() float64 { return mgr.metric("puq_user_operator_resync_users_total") }
	hashes := func() float64 { return mgr.metric("puq_user_operator_bcrypt_hash_duration_seconds_count") }
	r0, h0, a0, c0, k0 := reconciles(), hashes(), mgr.apiWrites(), mgr.cpu(), compared()
	d0, err := w.db.writes()
	if err != nil {
		return figure{}, err
	}
	if addr := os.Getenv("BENCH_PPROF"); addr != "" {
		// A CPU profile of the manager over the resync, for finding what a no-op costs.
		go func() {
			resp, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=" + fmt.Sprint(int(c.resyncPeriod.Seconds())))
			if err != nil {
				return
			}
			defer func() { _ = resp.Body.Close() }()
			if f, err := os.Create(filepath.Join(testenv.RepoRoot(), "bin", "bench", "noop.pprof")); err == nil {
				_, _ = io.Copy(f, resp.Body)
				_ = f.Close()
			}
		}()
	}
	// One full resync: every User compared with the panel (and any User found to differ reconciled).
	deadline := time.Now().Add(c.resyncPeriod*3 + 5*time.Minute)
	for compared()-k0 < float64(c.noopUsers) {
		if time.Now().After(deadline) {
			return figure{}, fmt.Errorf("only %.0f of %d Users resynced", compared()-k0, c.noopUsers)
		}
		time.Sleep(time.Second)
	}
	time.Sleep(time.Second) // the reconciles the resync queued, if any
	r1, h1, a1, c1, k1 := reconciles(), hashes(), mgr.apiWrites(), mgr.cpu(), compared()
	d1, err := w.db.writes()
	if err != nil {
		return figure{}, err
	}
	n := k1 - k0
	cpuPerUser := (c1 - c0).Seconds() / n * 1e6
	writes := h1 - h0 + d1 - d0 + a1 - a0
	return figure{Name: "No-op resync", Value: cpuPerUser, Unit: "µs CPU/User", Bound: 200, Ratio: cpuPerUser / 200,
		Target: "0 bcrypt, 0 DB writes, 0 API writes; <= 200 µs CPU/User", Met: writes == 0 && cpuPerUser <= 200,
		Details: fmt.Sprintf("%d Users, %.0f compared with the panel, %.0f reconciles: %.0f bcrypt calls, %.0f database writes, "+
			"%.0f API writes", c.noopUsers, n, r1-r0, h1-h0, d1-d0, a1-a0)}, nil
}

// memory: manager peak RSS with many unrelated Secrets, against the same run without them.
func memory(w *world, c config) (figure, error) {
	ns, err := w.namespace("mem")
	if err != nil {
		return figure{}, err
	}
	if err := w.createUsers(ns, "m", 100, c.concurrency*4); err != nil {
		return figure{}, err
	}
	peak := func(name string) (int64, error) {
		mgr, err := w.startManagerAll(name, "--bcrypt-cost=4")
		if err != nil {
			return 0, err
		}
		defer mgr.stop()
		if err := w.waitReady(ns, 100, 10*time.Minute); err != nil {
			return 0, err
		}
		time.Sleep(5 * time.Second)
		return mgr.peakRSS()
	}
	without, err := peak("mem-without")
	if err != nil {
		return figure{}, err
	}
	junk, err := w.namespace("junk")
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
	with, err := peak("mem-with")
	if err != nil {
		return figure{}, err
	}
	// The unrelated Secrets (100 MiB in etcd and in the API server's watch cache) are this
	// figure's load only: they go, so they do not slow the API server in the figures after it.
	if err := w.k8s.DeleteAllOf(context.Background(), &corev1.Secret{}, client.InNamespace(junk)); err != nil {
		return figure{}, err
	}
	return ratioFigure("Memory with unrelated Secrets", float64(with)/(1<<20), "MiB peak RSS", float64(without)/(1<<20), "<= 1.10",
		func(r float64) bool { return r <= 1.10 }, fmt.Sprintf("%d unrelated 10 KiB Secrets: %.1f MiB vs %.1f MiB without",
			c.secrets, float64(with)/(1<<20), float64(without)/(1<<20))), nil
}

func ratioFigure(name string, value float64, unit string, bound float64, target string, met func(float64) bool, details string) figure {
	r := value / bound
	return figure{Name: name, Value: value, Unit: unit, Bound: bound, Ratio: r, Target: target, Met: met(r), Details: details}
}

func medianHash(cost, n int) time.Duration { return medianOf(hashSamples(cost, n)) }

// hashSamples times n single bcrypt hashes at the cost, one at a time.
func hashSamples(cost, n int) []time.Duration {
	ds := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		_, _ = password.Hash("bench-Harbor-7-lantern", cost)
		ds = append(ds, time.Since(t0))
	}
	return ds
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
	fmt.Printf("%-30s %10.3f %-14s bound %10.3f  ratio %6.3f  target %-10s %s\n    %s\n", f.Name, f.Value, f.Unit, f.Bound,
		f.Ratio, f.Target, mark, f.Details)
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
	out := map[string]any{"date": time.Now().UTC().Format(time.RFC3339), "cores": runtime.NumCPU(), "go": runtime.Version(),
		"engine": engine, "quick": c.quick, "seconds": took.Seconds(), "figures": figs}
	raw, _ := json.MarshalIndent(out, "", "  ")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return err
	}
	fmt.Println("Results:", path)
	if c.markdownOut == "" {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| figure | value | bound (same run) | ratio | target | met | details |\n|---|---|---|---|---|---|---|\n")
	for _, f := range figs {
		fmt.Fprintf(&b, "| %s | %.3f %s | %.3f | %.3f | %s | %v | %s |\n", f.Name, f.Value, f.Unit, f.Bound, f.Ratio, f.Target,
			map[bool]string{true: "yes", false: "**no**"}[f.Met], f.Details)
	}
	md := c.markdownOut
	if !filepath.IsAbs(md) {
		md = filepath.Join(root, md)
	}
	return os.WriteFile(md, []byte(b.String()), 0o644)
}
