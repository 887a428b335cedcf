package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/password"
)

// importDomain is the domain of the panel users the import figure seeds; import selects them by
// it, so the users other figures made in the same panel database are left out.
const importDomain = "import.example"

// importFigure: N panel users made the panel's way (cost-12 hashes, email rows, one client per
// ten users with its owner) imported by bin/kubectl-puq into a namespace, then applied: Users/s
// from the first create to every User and ClientMembership Ready, against a plain client
// creating the same objects with the same concurrency. It fails when the operator hashed a
// password or changed a row of a panel table (only its own binding tables may change).
func importFigure(w *world, c config) (figure, error) {
	if w.sqlite {
		return figure{}, fmt.Errorf("the import figure counts rows per table with MariaDB's userstat: run it without -sqlite")
	}
	if _, err := os.Stat(c.pluginBin); err != nil {
		return figure{}, fmt.Errorf("%s is missing: run `make bench`, which builds it", c.pluginBin)
	}
	if err := seedImportPanel(w, c.importUsers); err != nil {
		return figure{}, err
	}
	ns, err := w.namespace("import")
	if err != nil {
		return figure{}, err
	}
	baseNS, err := w.namespace("import-baseline")
	if err != nil {
		return figure{}, err
	}
	dir := filepath.Join(w.dir, "import")
	cmd := exec.Command(c.pluginBin, "import", "--kubeconfig", w.kubeconfig, "-n", ns, "--panel-dsn", w.dsn,
		"--panel-password-file", w.pwFile, "--email", "*@"+importDomain, "-o", dir)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	importTime := time.Since(t0)
	if err != nil {
		return figure{}, fmt.Errorf("kubectl puq import: %w\n%s", err, out)
	}
	if want := fmt.Sprintf("Imported %d users and %d client memberships", c.importUsers, c.importUsers); !strings.Contains(string(out), want) {
		return figure{}, fmt.Errorf("kubectl puq import did not say %q:\n%s", want, out)
	}
	peakKiB := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss

	objs, err := renderDir(dir)
	if err != nil {
		return figure{}, err
	}
	before, err := tableChanges(w)
	if err != nil {
		return figure{}, err
	}
	mgr, err := w.startManager("import", ns)
	if err != nil {
		return figure{}, err
	}
	defer mgr.stop()
	concurrency := c.concurrency * 2
	t1 := time.Now()
	if err := createAll(w, objs, "", concurrency); err != nil {
		return figure{}, err
	}
	if err := w.waitReady(ns, c.importUsers, 30*time.Minute); err != nil {
		return figure{}, err
	}
	usersTime := time.Since(t1)
	if err := waitMembershipsReady(w, ns, c.importUsers, 30*time.Minute); err != nil {
		return figure{}, err
	}
	opTime := time.Since(t1)
	hashes, err := mgr.metric("puq_user_operator_bcrypt_hash_duration_seconds_count")
	if err != nil {
		return figure{}, err
	}
	s, err := mgr.scrape()
	if err != nil {
		return figure{}, err
	}
	userReconciles, err := s.sum("controller_runtime_reconcile_total", "controller", "user")
	if err != nil {
		return figure{}, err
	}
	membershipReconciles, err := s.sum("controller_runtime_reconcile_total", "controller", "clientmembership")
	if err != nil {
		return figure{}, err
	}
	outcomes, requests := s.outcomes(), s.apiRequests()
	after, err := tableChanges(w)
	if err != nil {
		return figure{}, err
	}
	var changed []string
	for table, n := range after {
		if d := n - before[table]; d != 0 && !strings.HasPrefix(table, "puq_operator_") {
			changed = append(changed, fmt.Sprintf("%s: %d rows", table, d))
		}
	}
	if hashes != 0 || len(changed) > 0 {
		return figure{}, fmt.Errorf("adopting the import hashed %.0f passwords and changed panel tables %v: want none", hashes, changed)
	}
	bindings := after["puq_operator_bindings"] - before["puq_operator_bindings"]
	mgr.stop()

	t2 := time.Now()
	if err := createAll(w, objs, baseNS, concurrency); err != nil {
		return figure{}, err
	}
	baseTime := time.Since(t2)
	opRate := float64(c.importUsers) / opTime.Seconds()
	baseRate := float64(c.importUsers) / baseTime.Seconds()
	return ratioFigure("Import adoption", opRate, "Users/s", baseRate, ">= 0.7", func(r float64) bool { return r >= 0.7 },
		boundMeasured, "a plain client's Users/s creating the same Users and ClientMemberships with the same concurrency",
		fmt.Sprintf("%d panel users and %d memberships imported (kubectl puq import: %s, peak RSS %.1f MiB, Secrets "+
			"created included), applied with %d workers, Users Ready in %s, all Ready in %s (%.0f User and %.0f "+
			"ClientMembership reconciles; outcomes %s; API requests %s); 0 bcrypt hashes, 0 rows changed in panel tables, %d binding rows written",
			c.importUsers, c.importUsers, importTime.Round(time.Millisecond),
			float64(peakKiB)/1024, concurrency, usersTime.Round(time.Millisecond), opTime.Round(time.Millisecond),
			userReconciles, membershipReconciles, outcomes, requests, bindings)), nil
}

// seedImportPanel inserts n panel users the panel's way, all with one cost-12 hash (the operator
// never hashes here, so computing n of them would only slow the setup), and one client per ten
// users, owned by the first of them; the others are members with one permission.
func seedImportPanel(w *world, n int) error {
	db := w.db.conn
	if _, err := db.Exec("SET GLOBAL userstat = ON"); err != nil {
		return fmt.Errorf("cannot turn on MariaDB's table statistics: %w", err)
	}
	hash, err := password.Hash("bench-Harbor-7-lantern", 12)
	if err != nil {
		return err
	}
	const at = "2025-11-02 10:00:00"
	const batch = 500
	all := `["modify-master-profile","manage-users","manage-services","manage-domains","manage-invoices",` +
		`"manage-support-tickets","manage-affiliate","manage-orders"]`
	clientID := ""
	for start := 0; start < n; start += batch {
		var users, verifications, clients, links []string
		var ua, va, ca, la []any
		for i := start; i < min(start+batch, n); i++ {
			id, email := uuid.NewString(), fmt.Sprintf("imp-%06d@%s", i, importDomain)
			users = append(users, "(?, ?, ?, 'active', 0, 0, 'Ada', 'Lovelace', 1, 0, 'en', ?, ?)")
			ua = append(ua, id, email, hash, at, at)
			verifications = append(verifications, "(?, ?, 'email', ?, '483920', 'system', 1, 1, ?, ?, ?)")
			va = append(va, uuid.NewString(), id, email, at, at, at)
			owner, perms := i%10 == 0, `["manage-services"]`
			if owner {
				clientID = uuid.NewString()
				clients = append(clients, "(?, 'Ann', 'Smith', ?, ?, 'active', ?, ?)")
				ca = append(ca, clientID, fmt.Sprintf("Import %06d", i), fmt.Sprintf("IMP-%06d", i), at, at)
				perms = all
			}
			links = append(links, "(?, ?, ?, ?, ?, ?)")
			la = append(la, clientID, id, owner, perms, at, at)
		}
		for _, stmt := range []struct {
			sql  string
			rows []string
			args []any
		}{
			{"INSERT INTO users (uuid, email, password, status, two_factor, disable, firstname, lastname, email_verified, " +
				"phone_verified, language, created_at, updated_at) VALUES ", users, ua},
			{"INSERT INTO verifications (uuid, user_uuid, type, value, secret, device_name, verified, `default`, " +
				"expires_at, created_at, updated_at) VALUES ", verifications, va},
			{"INSERT INTO clients (uuid, firstname, lastname, company_name, tax_id, status, created_at, updated_at) VALUES ",
				clients, ca},
			{"INSERT INTO client_x_user (client_uuid, user_uuid, owner, permissions, created_at, updated_at) VALUES ",
				links, la},
		} {
			if len(stmt.rows) == 0 {
				continue
			}
			if _, err := db.Exec(stmt.sql+strings.Join(stmt.rows, ", "), stmt.args...); err != nil {
				return fmt.Errorf("cannot seed the panel: %w", err)
			}
		}
	}
	return nil
}

// tableChanges are the rows changed so far per table of the panel database (userstat).
func tableChanges(w *world) (map[string]int64, error) {
	rows, err := w.db.conn.Query("SELECT table_name, rows_changed FROM information_schema.table_statistics " +
		"WHERE table_schema = DATABASE()")
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, err
		}
		out[name] = n
	}
	return out, rows.Err()
}

// renderDir reads the objects of import's output directory, Users first, the way
// `kubectl apply --server-side -R -f users/ -f clientmemberships/` does. Not `kustomize build`:
// kustomize's build of 20,000 resources ran for more than ten minutes of CPU (it is quadratic in
// places), which measures kustomize rather than the operator; the README says to apply large
// imports this way.
func renderDir(dir string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, sub := range []string{"users", "clientmemberships"} {
		files, err := filepath.Glob(filepath.Join(dir, sub, "*.yaml"))
		if err != nil {
			return nil, err
		}
		slices.Sort(files)
		for _, f := range files {
			y, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			j, err := yaml.YAMLToJSON(y)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(j); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			out = append(out, u)
		}
	}
	return out, nil
}

// createAll creates the objects (into namespace when not "") with that many workers, Users first
// in each worker's share as kubectl apply sends them in the kustomization's order.
func createAll(w *world, objs []*unstructured.Unstructured, namespace string, workers int) error {
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(objs)); i = next.Add(1) - 1 {
				o := objs[i].DeepCopy()
				if namespace != "" {
					o.SetNamespace(namespace)
				}
				if err := w.k8s.Create(context.Background(), o); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("create %s %s: %w", o.GetKind(), o.GetName(), err))
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

// waitMembershipsReady waits until at least n ClientMemberships in the namespace are Ready at their
// generation, watching as waitReady does.
func waitMembershipsReady(w *world, ns string, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ready := map[string]bool{}
	count := 0
	judge := func(m *v1.ClientMembership) {
		c := meta.FindStatusCondition(m.Status.Conditions, v1.ConditionReady)
		now := c != nil && c.Status == metav1.ConditionTrue && m.Status.ObservedGeneration == m.Generation
		if now != ready[m.Name] {
			ready[m.Name] = now
			count += map[bool]int{true: 1, false: -1}[now]
		}
	}
	var list v1.ClientMembershipList
	if err := w.k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	for i := range list.Items {
		judge(&list.Items[i])
	}
	rv := list.ResourceVersion
	for count < n {
		watcher, err := w.k8s.Watch(ctx, &v1.ClientMembershipList{}, client.InNamespace(ns),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("only %d of %d ClientMemberships Ready in %s after %s", count, n, ns, timeout)
			}
			return err
		}
		for ev := range watcher.ResultChan() {
			m, ok := ev.Object.(*v1.ClientMembership)
			if !ok {
				continue
			}
			rv = m.ResourceVersion
			if ev.Type != "BOOKMARK" {
				judge(m)
			}
			if count >= n {
				break
			}
		}
		watcher.Stop()
		if count < n && ctx.Err() != nil {
			return fmt.Errorf("only %d of %d ClientMemberships Ready in %s after %s", count, n, ns, timeout)
		}
	}
	return nil
}

// pluginPath is the plugin binary, relative to the repository root unless absolute.
func pluginPath(root, bin string) string {
	if filepath.IsAbs(bin) {
		return bin
	}
	return filepath.Join(root, bin)
}
