package controller_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// withCluster sets the cluster identity the env's manager records in its bindings.
func withCluster(cluster string) envOption {
	return func(e *env) { e.opts.ClusterID = cluster }
}

// panelUserRows is every column of every row the panel and the operator keep about one panel user
// (its users row, verification rows, client associations, binding) and the number of its activity
// rows, as text: equal strings mean the rows are byte-for-byte the same. For comparing only: it
// holds the password hash and must never be printed.
func (e *env) panelUserRows(userUUID string) string {
	e.t.Helper()
	var b strings.Builder
	for _, q := range []string{
		"SELECT * FROM users WHERE uuid = ?",
		"SELECT * FROM verifications WHERE user_uuid = ? ORDER BY uuid",
		"SELECT * FROM client_x_user WHERE user_uuid = ? ORDER BY client_uuid",
		"SELECT * FROM puq_operator_bindings WHERE user_uuid = ?",
		"SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ?",
	} {
		rows, err := e.db.Query(q, userUUID)
		if err != nil {
			e.t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				e.t.Fatal(err)
			}
			fmt.Fprintf(&b, "%v\n", vals)
		}
		if err := rows.Err(); err != nil {
			e.t.Fatal(err)
		}
		_ = rows.Close()
	}
	return b.String()
}

// wantRowsUnchanged fails unless the panel user's rows are what they were and no statement
// changed any row since writes.
func (e *env) wantRowsUnchanged(what, userUUID, before string, writes int) {
	e.t.Helper()
	if e.panelUserRows(userUUID) != before {
		e.t.Errorf("%s: the rows of panel user %s changed", what, userUUID)
	}
	if n := e.writeStatements() - writes; n != 0 {
		e.t.Errorf("%s: %d INSERT/UPDATE/DELETE statements, want 0", what, n)
	}
}

// deleteBehindTheOperator deletes a User while no manager runs and strips its finalizer, as a
// tenant with update rights on Users can: its panel user is left bound to an object that is gone.
func (e *env) deleteBehindTheOperator(u *v1.User) {
	e.t.Helper()
	e.shutdown()
	if err := e.k8s.Delete(e.ctx(), u); err != nil {
		e.t.Fatal(err)
	}
	update(e, u, func(u *v1.User) { u.Finalizers = nil })
	e.waitGone(u)
}

// bindingRow is the binding of a panel user as "namespace/name uid cluster".
func (e *env) bindingRow(userUUID string) string {
	e.t.Helper()
	return e.str("SELECT CONCAT(namespace, '/', name, ' ', resource_uid, ' ', cluster_id) FROM puq_operator_bindings "+
		"WHERE user_uuid = ?", userUUID)
}

// A User re-created under the namespace and name of one whose finalizer was stripped inherits
// nothing: without adoption it is refused, and the old panel user keeps every row; deleting it
// releases nothing of its predecessor's; only adoption takes the panel user over.
func TestRecreatedUserUnderAnOldNameInheritsNothing(t *testing.T) {
	e := newEnv(t, withCluster("cluster-b"))
	old, id := e.readyUser("jane")
	e.deleteBehindTheOperator(old)
	e.start()
	before, writes := e.panelUserRows(id), e.writeStatements()

	again := e.newUser("jane", "jane@example.com")
	e.create(again)
	got := e.waitUser(again, v1.ReasonEmailTakenInPanel)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady); c.Status != metav1.ConditionFalse ||
		strings.Contains(c.Message, id) {
		t.Errorf("Ready = %s %q; want False, without the panel user's UUID", c.Status, c.Message)
	}
	if got.Status.UUID != "" {
		t.Errorf("the re-created User reports panel user %s", got.Status.UUID)
	}
	e.wantRowsUnchanged("a User re-created under an old name", id, before, writes)

	if err := e.k8s.Delete(e.ctx(), again); err != nil {
		t.Fatal(err)
	}
	e.waitGone(again)
	e.wantRowsUnchanged("deleting the re-created User", id, before, writes)

	adopter := e.newUser("jane", "jane@example.com", adoptIfExists)
	e.create(adopter)
	if got := e.waitUser(adopter, v1.ReasonReconciled); got.Status.UUID != id {
		t.Errorf("the adopting User manages %q, want the earlier panel user %s", got.Status.UUID, id)
	}
	if b, want := e.bindingRow(id), fmt.Sprintf("%s/jane %s cluster-b", e.ns, adopter.UID); b != want {
		t.Errorf("binding after the adoption = %q, want %q", b, want)
	}
}

// A binding written before the upgrade (no cluster) is claimed by the User with its UID, and the
// only row written is the binding's, stamped with the cluster.
func TestUpgradeClaimsABindingWithoutClusterWritingOnlyTheBinding(t *testing.T) {
	e := newEnv(t) // no cluster identity: the bindings are written as before the upgrade
	u, id := e.readyUser("jane")
	if b := e.bindingRow(id); b != fmt.Sprintf("%s/jane %s ", e.ns, u.UID) {
		t.Fatalf("binding before the upgrade = %q", b)
	}
	e.shutdown()
	stats, writes := e.tableStatistics(), e.writeStatements()
	e.opts.ClusterID = "cluster-b"
	e.start()
	e.eventually(30*time.Second, func() string {
		if b := e.bindingRow(id); !strings.HasSuffix(b, " cluster-b") {
			return "binding " + b + ", waiting for the cluster"
		}
		return ""
	})
	e.waitReconciles("user", 0)
	after := e.tableStatistics()
	for _, table := range panelTables {
		want := int64(0)
		if table == "puq_operator_bindings" {
			want = 1
		}
		if n := after[table].changed - stats[table].changed; n != want {
			t.Errorf("%d rows of %s changed by the upgrade, want %d", n, table, want)
		}
	}
	if n := e.writeStatements() - writes; n != 1 {
		t.Errorf("%d INSERT/UPDATE/DELETE statements by the upgrade, want 1 (the binding)", n)
	}
	if got := e.waitUser(u, v1.ReasonReconciled); got.Status.UUID != id {
		t.Errorf("after the upgrade the User manages %q, want %s", got.Status.UUID, id)
	}
}

// membershipBindingRow is the binding of an association as "namespace/name uid cluster".
func (e *env) membershipBindingRow(userUUID, clientUUID string) string {
	e.t.Helper()
	return e.str("SELECT CONCAT(namespace, '/', name, ' ', resource_uid, ' ', cluster_id) FROM "+
		"puq_operator_membership_bindings WHERE user_uuid = ? AND client_uuid = ?", userUUID, clientUUID)
}

// A cluster rebuilt from git has new UIDs: its managers claim nothing of the previous cluster's
// until --previous-cluster-id names it, and then claim by namespace and name, the User's binding
// and its ClientMembership's alike.
func TestPreviousClusterIDClaimsBindingsByName(t *testing.T) {
	e := newEnv(t, withCluster("cluster-a"))
	old, id := e.readyUser("jane")
	acme := e.insertClient("Acme")
	oldMembership := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageUsers))
	e.create(oldMembership)
	e.waitMembership(oldMembership, v1.ReasonReconciled)
	association := e.row(id, acme)
	e.shutdown() // the old cluster is gone
	if err := e.k8s.Delete(e.ctx(), oldMembership); err != nil {
		t.Fatal(err)
	}
	update(e, oldMembership, func(m *v1.ClientMembership) { m.Finalizers = nil })
	e.waitGone(oldMembership)
	e.deleteBehindTheOperator(old)
	e.opts.ClusterID = "cluster-b"
	e.start()
	before, writes := e.panelUserRows(id), e.writeStatements()

	restored := e.newUser("jane", "jane@example.com", adoptIfExists)
	e.create(restored)
	got := e.waitUser(restored, v1.ReasonBoundElsewhere)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady); strings.Contains(c.Message, id) ||
		strings.Contains(c.Message, "cluster-a") || strings.Contains(c.Message, "/jane") {
		t.Errorf("the message names the other cluster's panel user or resource: %q", c.Message)
	}
	e.wantRowsUnchanged("a new cluster without --previous-cluster-id", id, before, writes)

	e.opts.PreviousClusterID = "cluster-a" // read when the manager starts
	e.restart()
	if got := e.waitUser(restored, v1.ReasonReconciled); got.Status.UUID != id {
		t.Errorf("with --previous-cluster-id the User manages %q, want %s", got.Status.UUID, id)
	}
	if b, want := e.bindingRow(id), fmt.Sprintf("%s/jane %s cluster-b", e.ns, restored.UID); b != want {
		t.Errorf("binding after the claim = %q, want %q", b, want)
	}
	m := e.membership("jane-acme", "jane", v1.ClientSelector{UUID: acme}, perms(v1.PermissionManageUsers))
	e.create(m)
	e.waitMembership(m, v1.ReasonReconciled)
	if b, want := e.membershipBindingRow(id, acme), fmt.Sprintf("%s/jane-acme %s cluster-b", e.ns, m.UID); b != want {
		t.Errorf("membership binding after the claim = %q, want %q", b, want)
	}
	if got := e.row(id, acme); got != association {
		t.Errorf("the association changed when its binding was claimed: %s, was %s", got, association)
	}
}

// newControlPlane starts another kube-apiserver and etcd (another cluster) for the test, with the
// CRDs and the manager's ClusterRole bound to its ServiceAccount.
func newControlPlane(t *testing.T) controlPlane {
	t.Helper()
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("cannot start a second kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.BindManagerRole(context.Background(), c, managerTestRole, testenv.Manager); err != nil {
		t.Fatal(err)
	}
	if err := testenv.GrantEverything(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return controlPlane{k8s: c, manager: testenv.Manager.Impersonate(cfg)}
}

// clusterUID is the UID of a control plane's kube-system namespace, as the manager reads it.
func clusterUID(t *testing.T, cp controlPlane) string {
	t.Helper()
	ns := &corev1.Namespace{}
	if err := cp.k8s.Get(context.Background(), client.ObjectKey{Name: metav1.NamespaceSystem}, ns); err != nil {
		t.Fatal(err)
	}
	return string(ns.UID)
}

// Two clusters whose managers both keep the default instance ID share one panel database: each
// makes and deletes its own panel users, and neither claims, changes or releases the other's, not
// even through a User of the same namespace and name.
func TestTwoClustersWithTheDefaultInstanceIDClaimNothingOfEachOther(t *testing.T) {
	po, root := newSharedPanel(t)
	if _, err := root.Exec("SET GLOBAL userstat = ON"); err != nil {
		t.Fatal(err)
	}
	cpA := mainControlPlane()
	defaultInstance := func(e *env) { e.opts.InstanceID = "default" }
	a := startEnv(t, po, root, defaultInstance, withCluster(clusterUID(t, cpA)))
	cpB := newControlPlane(t)
	b := startEnvOn(t, cpB, a.ns, po, root, defaultInstance, withCluster(clusterUID(t, cpB)))
	if a.opts.ClusterID == b.opts.ClusterID {
		t.Fatalf("both control planes have kube-system UID %s", a.opts.ClusterID)
	}
	_, janeA := a.readyUser("jane")
	_, bobB := b.readyUserWithPassword("bob", "bob@example.com", testPassword)
	rowsA, rowsB := a.panelUserRows(janeA), a.panelUserRows(bobB)

	// Cluster B's User of the same namespace and name, with another email, makes its own panel user.
	b.secret("jane-password", map[string]string{"password": testPassword})
	janeB := b.newUser("jane", "jane.b@example.com")
	b.create(janeB)
	if got := b.waitUser(janeB, v1.ReasonReconciled); got.Status.UUID == janeA || got.Status.UUID == "" {
		t.Errorf("cluster B's jane manages %q; want a panel user of its own, not cluster A's %s", got.Status.UUID, janeA)
	}
	if a.panelUserRows(janeA) != rowsA || a.panelUserRows(bobB) != rowsB {
		t.Error("cluster B's jane changed a panel user it does not own")
	}
	// Even with adoption, cluster B does not take cluster A's panel user by its email, nor A B's.
	b.secret("carol-password", map[string]string{"password": testPassword})
	carolB := b.newUser("carol", "jane@example.com", adoptIfExists)
	b.create(carolB)
	b.waitUser(carolB, v1.ReasonBoundElsewhere)
	a.secret("bob-password", map[string]string{"password": testPassword})
	bobA := a.newUser("bob", "bob@example.com", adoptIfExists)
	a.create(bobA)
	a.waitUser(bobA, v1.ReasonBoundElsewhere)
	if a.panelUserRows(janeA) != rowsA || a.panelUserRows(bobB) != rowsB {
		t.Error("a User with adoption changed the other cluster's panel user")
	}

	// Deleting, in cluster A, its bob (bound to nothing) and, in cluster B, its jane releases only B's jane.
	janeBID := b.waitUser(janeB, v1.ReasonReconciled).Status.UUID
	for _, del := range []struct {
		e   *env
		obj client.Object
	}{{a, bobA}, {b, janeB}, {b, carolB}} {
		if err := del.e.k8s.Delete(del.e.ctx(), del.obj); err != nil {
			t.Fatal(err)
		}
		del.e.waitGone(del.obj)
	}
	if n := a.count("SELECT COUNT(*) FROM users WHERE uuid = ?", janeBID); n != 0 {
		t.Error("deleting cluster B's jane left its panel user")
	}
	if a.panelUserRows(janeA) != rowsA || a.panelUserRows(bobB) != rowsB {
		t.Error("deleting Users in one cluster changed the other cluster's panel users")
	}
}
