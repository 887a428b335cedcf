package panel_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// membershipOf is the binding of the association of a user with a client to one ClientMembership
// resource: the same resource for the same user and client.
func membershipOf(userUUID, clientUUID string) panel.MembershipBinding {
	return panel.MembershipBinding{UserUUID: userUUID, ClientUUID: clientUUID, Namespace: "team-a", Name: "membership",
		ResourceUID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(userUUID+"/"+clientUUID)).String(), InstanceID: "prod",
		ClusterID: "cluster-b"}
}

// another is the same association bound to another resource.
func another(b panel.MembershipBinding) panel.MembershipBinding {
	b.Name, b.ResourceUID = "other", uuid.NewString()
	return b
}

func member(keys ...string) panel.Membership { return panel.Membership{Permissions: keys} }

var ownerOf = panel.Membership{Owner: true}

// state reads the association and binding of b's user and client.
func (f fixture) state(t *testing.T, b panel.MembershipBinding) panel.MembershipState {
	t.Helper()
	st, err := f.store.MembershipState(context.Background(), b.UserUUID, b.ClientUUID)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (f fixture) membershipBindings(t *testing.T) int {
	t.Helper()
	return f.count(t, "SELECT COUNT(*) FROM puq_operator_membership_bindings")
}

// The association and its binding are written and removed together, and a deletion removes only
// what its own resource holds.
func TestAssociationIsBoundToItsResourceAndRemovedOnlyByIt(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		acme := f.insertClient(t, "Acme Hosting Ltd", "Ann", "Smith", "PL123", "active")
		alice, _ := f.aliceAndBob(t, jane())
		b := membershipOf(alice.UUID, acme)
		if st := f.state(t, b); st.Association != nil || st.Binding != nil {
			t.Fatalf("before any write: %+v", st)
		}
		if _, err := f.store.ApplyMembership(ctx, b, member("manage-users"), ""); err != nil {
			t.Fatal(err)
		}
		st := f.state(t, b)
		if st.Association == nil || st.Association.Owner || !slices.Equal(st.Association.Permissions, []string{"manage-users"}) ||
			st.Binding == nil || *st.Binding != b {
			t.Fatalf("after the write: association %+v binding %+v, want manage-users bound to %+v", st.Association, st.Binding, b)
		}
		// Another resource can neither write nor remove it.
		other := another(b)
		if _, err := f.store.ApplyMembership(ctx, other, member("manage-orders"), ""); !errors.Is(err, panel.ErrBoundElsewhere) {
			t.Errorf("another resource's write: want ErrBoundElsewhere, got %v", err)
		}
		if err := f.store.RemoveMembership(ctx, other); err != nil {
			t.Errorf("another resource's removal: %v", err)
		}
		if st := f.state(t, b); st.Association == nil || !slices.Equal(st.Association.Permissions, []string{"manage-users"}) ||
			st.Binding == nil || *st.Binding != b {
			t.Fatalf("another resource changed the association: %+v %+v", st.Association, st.Binding)
		}
		here := panel.Operator{Instance: b.InstanceID, Cluster: b.ClusterID}
		bound, err := f.store.BoundMemberships(ctx, here, b.Namespace, b.Name, b.ResourceUID)
		if err != nil || len(bound) != 1 || *bound[0].Binding != b || bound[0].Association == nil {
			t.Fatalf("BoundMemberships = %+v, %v", bound, err)
		}
		for what, o := range map[string]panel.Operator{
			"another instance": {Instance: "staging", Cluster: b.ClusterID},
			"another cluster":  {Instance: b.InstanceID, Cluster: "cluster-c"},
		} {
			if none, err := f.store.BoundMemberships(ctx, o, b.Namespace, b.Name, b.ResourceUID); err != nil || len(none) != 0 {
				t.Errorf("BoundMemberships of %s = %+v, %v", what, none, err)
			}
		}
		if none, err := f.store.BoundMemberships(ctx, here, b.Namespace, b.Name, uuid.NewString()); err != nil || len(none) != 0 {
			t.Errorf("BoundMemberships of a re-created resource of the same name = %+v, %v", none, err)
		}
		rebuilt := panel.Operator{Instance: b.InstanceID, Cluster: "cluster-c", PreviousCluster: b.ClusterID}
		if got, err := f.store.BoundMemberships(ctx, rebuilt, b.Namespace, b.Name, uuid.NewString()); err != nil ||
			len(got) != 1 || *got[0].Binding != b {
			t.Errorf("BoundMemberships claiming the previous cluster's by name = %+v, %v; want %+v", got, err, b)
		}
		if err := f.store.RemoveMembership(ctx, b); err != nil {
			t.Fatal(err)
		}
		if st := f.state(t, b); st.Association != nil || st.Binding != nil {
			t.Errorf("after the removal: association %+v binding %+v, want neither", st.Association, st.Binding)
		}
		// A resource that saw the binding and decided to take it over may.
		if _, err := f.store.ApplyMembership(ctx, b, member("manage-users"), ""); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.ApplyMembership(ctx, other, member("manage-orders"), b.ResourceUID); err != nil {
			t.Fatalf("taking the binding over: %v", err)
		}
		if st := f.state(t, b); st.Binding == nil || *st.Binding != other ||
			!slices.Equal(st.Association.Permissions, []string{"manage-orders"}) {
			t.Errorf("after the take-over: %+v %+v", st.Association, st.Binding)
		}
	})
}

// An association made in the panel UI, which no resource holds, is never removed by one.
func TestAssociationNotBoundIsNeverRemoved(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		acme := f.insertClient(t, "Acme Hosting Ltd", "Ann", "Smith", "PL123", "active")
		alice, _ := f.aliceAndBob(t, jane())
		if _, err := f.db.Exec("INSERT INTO client_x_user (client_uuid, user_uuid, owner, permissions) VALUES (?, ?, 0, ?)",
			acme, alice.UUID, `["manage-users"]`); err != nil {
			t.Fatal(err)
		}
		b := membershipOf(alice.UUID, acme)
		if err := f.store.RemoveMembership(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if st := f.state(t, b); st.Association == nil {
			t.Error("RemoveMembership removed an association no resource holds")
		}
	})
}

// The binding is written in the association's transaction: when it cannot be written, the
// association is not either; a refused write leaves no binding.
func TestAssociationIsNeverCommittedWithoutItsBinding(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		acme := f.insertClient(t, "Acme Hosting Ltd", "Ann", "Smith", "PL123", "active")
		alice, bob := f.aliceAndBob(t, jane())
		trigger := "CREATE TRIGGER refuse_binding BEFORE INSERT ON puq_operator_membership_bindings " +
			"FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'binding refused'"
		if f.store.Engine() == panel.EngineSQLite {
			trigger = "CREATE TRIGGER refuse_binding BEFORE INSERT ON puq_operator_membership_bindings " +
				"BEGIN SELECT RAISE(ABORT, 'binding refused'); END"
		}
		if _, err := f.db.Exec(trigger); err != nil {
			t.Fatal(err)
		}
		b := membershipOf(alice.UUID, acme)
		if _, err := f.store.ApplyMembership(ctx, b, member("manage-users"), ""); err == nil {
			t.Fatal("the write succeeded although its binding could not be written")
		}
		if st := f.state(t, b); st.Association != nil || st.Binding != nil {
			t.Errorf("a failed binding left association %+v, binding %+v; want neither", st.Association, st.Binding)
		}
		if _, err := f.db.Exec("DROP TRIGGER refuse_binding"); err != nil {
			t.Fatal(err)
		}
		// Bob owns the client in the panel UI; a write that would take ownership away is refused.
		if _, err := f.db.Exec("INSERT INTO client_x_user (client_uuid, user_uuid, owner, permissions) VALUES (?, ?, 1, ?)",
			acme, bob.UUID, `[]`); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.ApplyMembership(ctx, membershipOf(bob.UUID, acme), member("manage-users"), ""); !errors.Is(err, panel.ErrRefused) {
			t.Fatalf("dropping the owner flag: want ErrRefused, got %v", err)
		}
		if n := f.membershipBindings(t); n != 0 {
			t.Errorf("failed writes left %d bindings", n)
		}
	})
}

// The panel never removes a client's owner: the removal is refused and keeps the binding; a
// release forgets the binding and leaves the association to the panel.
func TestOwnerIsReleasedNotRemoved(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		acme := f.insertClient(t, "Acme Hosting Ltd", "Ann", "Smith", "PL123", "active")
		alice, _ := f.aliceAndBob(t, jane())
		b := membershipOf(alice.UUID, acme)
		if _, err := f.store.ApplyMembership(ctx, b, ownerOf, ""); err != nil {
			t.Fatal(err)
		}
		if err := f.store.RemoveMembership(ctx, b); !errors.Is(err, panel.ErrRefused) {
			t.Errorf("removing the owner: want ErrRefused, got %v", err)
		}
		if st := f.state(t, b); st.Association == nil || !st.Association.Owner || st.Binding == nil {
			t.Fatalf("a refused removal changed %+v %+v", st.Association, st.Binding)
		}
		if err := f.store.ReleaseMembership(ctx, another(b)); err != nil {
			t.Fatal(err)
		}
		if st := f.state(t, b); st.Binding == nil {
			t.Error("another resource's release removed the binding")
		}
		if err := f.store.ReleaseMembership(ctx, b); err != nil {
			t.Fatal(err)
		}
		if st := f.state(t, b); st.Association == nil || !st.Association.Owner || st.Binding != nil {
			t.Errorf("after the release: association %+v binding %+v; want the owner kept, unbound", st.Association, st.Binding)
		}
	})
}

// The operator's membership binding table holds one binding per association: keyed by
// (user_uuid, client_uuid), as client_x_user is.
func TestMembershipBindingTableIsKeyedLikeTheAssociation(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		query := "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = DATABASE() " +
			"AND table_name = 'puq_operator_membership_bindings' AND constraint_name = 'PRIMARY' ORDER BY ordinal_position"
		if f.store.Engine() == panel.EngineSQLite {
			query = "SELECT name FROM pragma_table_info('puq_operator_membership_bindings') WHERE pk > 0 ORDER BY pk"
		}
		rows, err := f.db.Query(query)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = rows.Close() }()
		var key []string
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			key = append(key, c)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(key, []string{"user_uuid", "client_uuid"}) {
			t.Errorf("primary key = %v, want [user_uuid client_uuid]", key)
		}
	})
}
