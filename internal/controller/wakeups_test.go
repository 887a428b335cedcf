package controller

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

func withReady(conds *[]metav1.Condition, status metav1.ConditionStatus, reason string) {
	meta.SetStatusCondition(conds, metav1.Condition{Type: v1.ConditionReady, Status: status, Reason: reason})
}

func TestUserWakesItsMembershipsOnlyOnWhatTheirPlansRead(t *testing.T) {
	base := func() *v1.User {
		u := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "jane", UID: "u1", Generation: 1},
			Status: v1.UserStatus{UUID: "11111111-1111-4111-8111-111111111111"}}
		withReady(&u.Status.Conditions, metav1.ConditionTrue, v1.ReasonReconciled)
		return u
	}
	now := metav1.NewTime(time.Now())
	cases := []struct {
		name   string
		change func(*v1.User)
		wake   bool
	}{
		{"status.clients changed only", func(u *v1.User) {
			u.Status.Clients = []v1.UserClient{{UUID: "c1"}}
		}, false},
		{"another condition changed only", func(u *v1.User) {
			meta.SetStatusCondition(&u.Status.Conditions, metav1.Condition{Type: "Reconciling", Status: metav1.ConditionTrue, Reason: "X"})
		}, false},
		{"a finalizer added only", func(u *v1.User) { u.Finalizers = []string{UserFinalizer} }, false},
		{"the spec changed", func(u *v1.User) { u.Generation = 2 }, true},
		{"its deletion started", func(u *v1.User) { u.DeletionTimestamp = &now }, true},
		{"its panel user is known", func(u *v1.User) { u.Status.UUID = "22222222-2222-4222-8222-222222222222" }, true},
		{"it stopped being Ready", func(u *v1.User) {
			withReady(&u.Status.Conditions, metav1.ConditionFalse, v1.ReasonDatabaseUnavailable)
		}, true},
	}
	p := userWakesMemberships()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			oldU, newU := base(), base()
			c.change(newU)
			if got := p.Update(event.UpdateEvent{ObjectOld: oldU, ObjectNew: newU}); got != c.wake {
				t.Errorf("wakes its memberships = %v, want %v", got, c.wake)
			}
		})
	}
	if !p.Create(event.CreateEvent{Object: base()}) || !p.Delete(event.DeleteEvent{Object: base()}) {
		t.Error("a User's creation and deletion must wake its memberships")
	}
}

func TestMembershipWakesItsUserOnlyWhenItWroteOrRemovedTheAssociation(t *testing.T) {
	base := func() *v1.ClientMembership {
		m := &v1.ClientMembership{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "jane-acme", Generation: 1},
			Spec: v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: "jane"}}}
		withReady(&m.Status.Conditions, metav1.ConditionFalse, v1.ReasonUserNotReady)
		return m
	}
	ready := func(m *v1.ClientMembership) {
		withReady(&m.Status.Conditions, metav1.ConditionTrue, v1.ReasonReconciled)
		m.Status.ObservedGeneration, m.Status.ClientUUID, m.Status.UserUUID = m.Generation, "c1", "u1"
	}
	now := metav1.NewTime(time.Now())
	cases := []struct {
		name        string
		old, change func(*v1.ClientMembership)
		wake        bool
	}{
		{"its finalizer and owner added", nil, func(m *v1.ClientMembership) { m.Finalizers = []string{MembershipFinalizer} }, false},
		{"it waits for another reason", nil, func(m *v1.ClientMembership) {
			withReady(&m.Status.Conditions, metav1.ConditionFalse, v1.ReasonUserNotFound)
		}, false},
		{"it became Ready (wrote its association)", nil, ready, true},
		{"Ready again at a new generation (wrote the new permissions)", ready, func(m *v1.ClientMembership) {
			m.Generation, m.Status.ObservedGeneration = 2, 2
		}, true},
		{"its spec changed, not yet applied", ready, func(m *v1.ClientMembership) { m.Generation = 2 }, false},
		{"it stopped being Ready", ready, func(m *v1.ClientMembership) {
			withReady(&m.Status.Conditions, metav1.ConditionFalse, v1.ReasonOwnerConflict)
		}, true},
		{"its deletion started", ready, func(m *v1.ClientMembership) { m.DeletionTimestamp = &now }, true},
	}
	p := membershipWakesUser()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			oldM := base()
			if c.old != nil {
				c.old(oldM)
			}
			newM := oldM.DeepCopy()
			c.change(newM)
			if got := p.Update(event.UpdateEvent{ObjectOld: oldM, ObjectNew: newM}); got != c.wake {
				t.Errorf("wakes its User = %v, want %v", got, c.wake)
			}
		})
	}
	if p.Create(event.CreateEvent{Object: base()}) {
		t.Error("a membership's creation wrote nothing and must not wake its User")
	}
	if !p.Delete(event.DeleteEvent{Object: base()}) {
		t.Error("a membership's going must wake its User (status.clients, a deletion waiting for it)")
	}
}

func TestMembershipWakesItsPeersOnlyOnWhatTheirPlansRead(t *testing.T) {
	base := func() *v1.ClientMembership {
		m := &v1.ClientMembership{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "jane-acme", Generation: 1},
			Status: v1.ClientMembershipStatus{ClientUUID: "c1", UserUUID: "u1", ObservedGeneration: 1}}
		withReady(&m.Status.Conditions, metav1.ConditionTrue, v1.ReasonReconciled)
		return m
	}
	now := metav1.NewTime(time.Now())
	cases := []struct {
		name   string
		change func(*v1.ClientMembership)
		wake   bool
	}{
		{"its finalizer changed only", func(m *v1.ClientMembership) { m.Finalizers = []string{MembershipFinalizer} }, false},
		{"it stopped being Ready", func(m *v1.ClientMembership) {
			withReady(&m.Status.Conditions, metav1.ConditionFalse, v1.ReasonOwnerConflict)
		}, true},
		{"its spec (owner) changed", func(m *v1.ClientMembership) { m.Generation = 2 }, true},
		{"it applied a new generation (a transfer made)", func(m *v1.ClientMembership) { m.Status.ObservedGeneration = 2 }, true},
		{"it is refused NotPermitted", func(m *v1.ClientMembership) {
			withReady(&m.Status.Conditions, metav1.ConditionFalse, v1.ReasonNotPermitted)
		}, true},
		{"it names another user", func(m *v1.ClientMembership) { m.Status.UserUUID = "u2" }, true},
		{"its deletion started", func(m *v1.ClientMembership) { m.DeletionTimestamp = &now }, true},
	}
	p := membershipWakesPeers()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			oldM, newM := base(), base()
			c.change(newM)
			if got := p.Update(event.UpdateEvent{ObjectOld: oldM, ObjectNew: newM}); got != c.wake {
				t.Errorf("wakes its peers = %v, want %v", got, c.wake)
			}
		})
	}
	waiting := func() *v1.ClientMembership {
		m := base()
		withReady(&m.Status.Conditions, metav1.ConditionFalse, v1.ReasonUserNotReady)
		return m
	}
	oldM, newM := waiting(), waiting()
	withReady(&newM.Status.Conditions, metav1.ConditionFalse, v1.ReasonOwnerConflict)
	if p.Update(event.UpdateEvent{ObjectOld: oldM, ObjectNew: newM}) {
		t.Error("a change between two waiting reasons (neither NotPermitted) must not wake the peers")
	}
	refused := waiting()
	withReady(&refused.Status.Conditions, metav1.ConditionFalse, v1.ReasonNotPermitted)
	if !p.Update(event.UpdateEvent{ObjectOld: waiting(), ObjectNew: refused}) {
		t.Error("a waiting membership refused NotPermitted claims nothing any more: its peers must be woken")
	}
}

func TestPeerSettledOnlyWhenReadyAndOlderThanTheChange(t *testing.T) {
	peer := func(name string, sec int64, mutate ...func(*v1.ClientMembership)) *v1.ClientMembership {
		m := &v1.ClientMembership{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, Generation: 1,
			CreationTimestamp: metav1.NewTime(time.Unix(sec, 0))}, Status: v1.ClientMembershipStatus{ObservedGeneration: 1}}
		withReady(&m.Status.Conditions, metav1.ConditionTrue, v1.ReasonReconciled)
		for _, f := range mutate {
			f(m)
		}
		return m
	}
	changed := peer("changed", 10)
	now := metav1.NewTime(time.Now())
	cases := []struct {
		name    string
		m       *v1.ClientMembership
		settled bool
	}{
		{"older and Ready", peer("older", 5), true},
		{"younger and Ready", peer("younger", 20), false},
		{"older, Ready at an older generation", peer("older", 5, func(m *v1.ClientMembership) { m.Generation = 2 }), false},
		{"older and waiting", peer("older", 5, func(m *v1.ClientMembership) {
			withReady(&m.Status.Conditions, metav1.ConditionFalse, v1.ReasonOwnerConflict)
		}), false},
		{"older, Ready and being deleted", peer("older", 5, func(m *v1.ClientMembership) { m.DeletionTimestamp = &now }), false},
	}
	for _, c := range cases {
		if got := peerSettled(c.m, changed); got != c.settled {
			t.Errorf("%s: settled = %v, want %v", c.name, got, c.settled)
		}
	}
}
