package faults

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// recoveryBound is how soon after the database's return everything must converge (issue 12).
const recoveryBound = 30 * time.Second

// mariadbd is killed with SIGKILL in the middle of a sync, stays down, and is started again on
// its data directory and port.
func TestDatabaseKilledMidSyncConvergesWithin30sOfItsReturn(t *testing.T) {
	s := newScenario(t, "dbkill")
	s.outage(size(15*time.Second, 60*time.Second), func() (string, func() error) {
		if err := mariadb.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { // a scenario that failed during the outage leaves the server up
			if mariadb.PID() == 0 {
				_ = mariadb.Start()
			}
		})
		return "mariadbd killed (SIGKILL)", mariadb.Start
	})
}

// The database stops answering in the middle of a sync without going away: a proxy between the
// manager and mariadbd holds every connection open and forwards nothing, then forwards again.
func TestDatabaseThatStopsAnsweringMidSyncConvergesWithin30sOfItsReturn(t *testing.T) {
	s := newScenario(t, "dbstall")
	proxy, err := mariadb.StartProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	s.dsn = proxy.DSN(s.dsn)
	viaProxy := proxyDB(t, s.w.Panel, proxy)
	s.w.Reach = viaProxy.PingContext
	s.outage(size(15*time.Second, 60*time.Second), func() (string, func() error) {
		proxy.Stall()
		t.Cleanup(proxy.Resume)
		return "the database stopped answering (a proxy holding every connection)", func() error {
			if proxy.Held() == 0 {
				t.Error("the stall held no call: the manager did not reach the database during the outage")
			}
			proxy.Resume()
			return nil
		}
	})
}

// outage runs a sync of Users through a database outage: the first quarter of the Users is made
// Ready, fault begins the outage while the rest are still being created, and Users that were
// Ready are edited during it. The manager must stay up (same process), say DatabaseUnavailable
// during the outage, finish reconciles during it instead of hanging on the database, and
// converge within recoveryBound of the database's return.
func (s *scenario) outage(length time.Duration, fault func() (what string, recover func() error)) {
	t := s.t
	ctx := context.Background()
	users := size(40, 200)
	m := s.start()
	pid := m.PID()
	created := make(chan error, 1)
	go func() { created <- s.createUsers(users, 4) }()
	s.waitReadyCount(users/4, 2*time.Minute)

	reconcilesBefore := m.Metric("controller_runtime_reconcile_total", "controller", "user")
	what, recoverFn := fault()
	began := time.Now()
	edited, maxUnavailable := 0, 0
	for time.Since(began) < length {
		if edited < 5 {
			if err := s.w.EditUser(ctx, fmt.Sprintf("u-%d", edited)); err != nil {
				t.Fatalf("cannot edit a User during the outage: %v", err)
			}
			edited++
		}
		if _, n, err := s.countReady(v1.ReasonDatabaseUnavailable); err == nil {
			maxUnavailable = max(maxUnavailable, n)
		}
		if m.Exited() {
			t.Fatalf("the manager exited during the outage:\n%s", testenv.Tail(m.Out.String(), 20))
		}
		time.Sleep(500 * time.Millisecond) // the outage's own length; each look is counted above
	}
	reconcilesDuring := m.Metric("controller_runtime_reconcile_total", "controller", "user") - reconcilesBefore
	if err := recoverFn(); err != nil {
		t.Fatalf("cannot end the outage: %v", err)
	}
	outage := time.Since(began)
	if err := <-created; err != nil {
		t.Fatalf("cannot create the Users: %v", err)
	}
	f := CheckInvariant(t, s.w, 2*time.Minute)

	if m.Exited() || m.PID() != pid {
		t.Errorf("the manager did not stay up through the outage")
	}
	if maxUnavailable == 0 {
		t.Errorf("no User said %s during the %s outage", v1.ReasonDatabaseUnavailable, length)
	}
	if reconcilesDuring == 0 {
		t.Errorf("no User reconcile finished during the %s outage: they hang on the database", length)
	}
	slow, err := slowReconciles(m, "user", 30)
	if err != nil {
		t.Fatal(err)
	}
	if slow > 0 {
		t.Errorf("%v User reconciles took longer than 30s: they hung on the database", slow)
	}
	if f.Converged && f.Converge > recoveryBound {
		t.Errorf("converged %.1fs after the database's return, want within %s", f.Converge.Seconds(), recoveryBound)
	}
	if len(f.NotReady) > 0 {
		t.Errorf("objects not Ready at the end: %v", f.NotReady)
	}
	s.figures("%d Users (%d Ready before); %s for %.0fs; %d Users edited during it; up to %d Users said %s; "+
		"%v reconciles finished during it, none over 30s: %v; manager PID unchanged: %v; %s",
		users, users/4, what, outage.Seconds(), edited, maxUnavailable, v1.ReasonDatabaseUnavailable, reconcilesDuring,
		slow == 0, m.PID() == pid && !m.Exited(), f)
}

// slowReconciles counts the reconciles of a controller that took longer than over seconds (a
// bucket bound of controller_runtime_reconcile_time_seconds).
func slowReconciles(m *testenv.Process, controller string, over float64) (float64, error) {
	fams, err := m.Scrape()
	if err != nil {
		return 0, err
	}
	fam := fams["controller_runtime_reconcile_time_seconds"]
	if fam == nil {
		return 0, fmt.Errorf("manager %s exports no controller_runtime_reconcile_time_seconds", m.Name)
	}
	for _, s := range fam.GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() != "controller" || l.GetValue() != controller {
				continue
			}
			h := s.GetHistogram()
			for _, b := range h.GetBucket() {
				if b.GetUpperBound() == over {
					return float64(h.GetSampleCount() - b.GetCumulativeCount()), nil
				}
			}
			return 0, fmt.Errorf("controller_runtime_reconcile_time_seconds has no bucket at %vs", over)
		}
	}
	return 0, nil
}

// proxyDB is a connection to the panel database through the proxy, the way the manager reaches
// it, waiting at most 2 s for an answer.
func proxyDB(t *testing.T, p *testdb.Panel, proxy *testdb.Proxy) *sql.DB {
	t.Helper()
	raw, err := os.ReadFile(p.PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := mysql.NewConfig()
	user, _, _ := strings.Cut(strings.TrimPrefix(p.DSN, "mysql://"), "@")
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, strings.TrimSpace(string(raw)), "tcp", proxy.Addr(), p.Name
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() })
	return db
}
