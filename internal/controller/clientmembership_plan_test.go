package controller

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// The planner's decisions, each from inputs alone: no database, no API server.
func TestPlanMembershipDecidesFromItsInputs(t *testing.T) {
	const (
		instance = "prod"
		cluster  = "cluster-b"
		userUUID = "11111111-1111-4111-8111-111111111111"
		client   = "22222222-2222-4222-8222-222222222222"
	)
	at := func(sec int) metav1.Time { return metav1.NewTime(time.Unix(int64(1_700_000_000+sec), 0)) }
	membership := func(mutate ...func(*v1.ClientMembership)) *v1.ClientMembership {
		m := &v1.ClientMembership{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "jane-acme", UID: "uid-self", CreationTimestamp: at(10),
				Generation: 2, Finalizers: []string{MembershipFinalizer}},
			Spec: v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: "jane"}, Client: v1.ClientSelector{UUID: client},
				Permissions: []v1.Permission{v1.PermissionManageUsers}},
		}
		for _, f := range mutate {
			f(m)
		}
		return m
	}
	readyUser := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "jane", UID: "uid-jane"},
		Status: v1.UserStatus{UUID: userUUID, Conditions: []metav1.Condition{{Type: v1.ConditionReady, Status: "True",
			Reason: v1.ReasonReconciled}}}}
	ownedBy := func(m *v1.ClientMembership) {
		m.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "User", Name: "jane",
			UID: "uid-jane"}}
	}
	goingUser := readyUser.DeepCopy()
	goingUser.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	notReady := readyUser.DeepCopy()
	notReady.Status.Conditions[0].Reason = v1.ReasonSecretNotFound
	deleted := func(m *v1.ClientMembership) { m.DeletionTimestamp = &metav1.Time{Time: time.Now()} }
	asOwner := func(m *v1.ClientMembership) { m.Spec.Owner = true }
	retain := func(m *v1.ClientMembership) { m.Spec.DeletionPolicy = v1.MembershipDeletionRetain }
	// lostStatus is the status of the window: written by no reconcile, or carrying another pair.
	lostStatus := func(m *v1.ClientMembership) { m.Status.UserUUID, m.Status.ClientUUID = "", "" }
	wasReady := func(m *v1.ClientMembership) {
		m.Status.ObservedGeneration = m.Generation
		m.Status.Conditions = []metav1.Condition{{Type: v1.ConditionReady, Status: "True", Reason: v1.ReasonReconciled}}
	}
	acme := &panel.Client{UUID: client, Name: "Ann Smith", CompanyName: "Acme", Status: "active"}
	bindingOf := func(ns, name, uid, inst string) *panel.MembershipBinding {
		return &panel.MembershipBinding{UserUUID: userUUID, ClientUUID: client, Namespace: ns, Name: name, ResourceUID: uid,
			InstanceID: inst, ClusterID: cluster}
	}
	self := bindingOf("team", "jane-acme", "uid-self", instance)
	member := &panel.Membership{Permissions: []string{"manage-users"}}
	otherPerms := &panel.Membership{Permissions: []string{"manage-orders"}}
	owner := &panel.Membership{Owner: true, Permissions: panel.PermissionKeys}
	peer := func(name string, sec int, user string, isOwner bool) v1.ClientMembership {
		return v1.ClientMembership{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, UID: types.UID("uid-" + name),
			CreationTimestamp: at(sec)}, Spec: v1.ClientMembershipSpec{Owner: isOwner},
			Status: v1.ClientMembershipStatus{UserUUID: user, ClientUUID: client}}
	}
	holder := func(name string, sec int) *v1.ClientMembership {
		h := peer(name, sec, userUUID, false)
		return &h
	}

	cases := []struct {
		name string
		in   membershipInputs
		// want is the outcome's reason and what the plan does, in planSummary's words.
		reason, want string
	}{
		{"a new membership of a missing User waits for it and gets its finalizer",
			membershipInputs{membership: membership(func(m *v1.ClientMembership) { m.Finalizers = nil })},
			v1.ReasonUserNotFound, "finalizer"},
		{"a User not Ready: wait, own the membership", membershipInputs{membership: membership(), user: notReady},
			v1.ReasonUserNotReady, "owner"},
		{"a User being deleted gets no association: it would outlive the User",
			membershipInputs{membership: membership(ownedBy), user: goingUser, client: acme},
			v1.ReasonUserNotReady, ""},
		{"no client matches: wait for a resync", membershipInputs{membership: membership(ownedBy), user: readyUser},
			v1.ReasonClientNotFound, ""},
		{"an older membership of the same user and client wins",
			membershipInputs{membership: membership(ownedBy), user: readyUser, client: acme,
				peers: []v1.ClientMembership{peer("older", 5, userUUID, false)}},
			v1.ReasonDuplicateMembership, ""},
		{"an older owner claim wins", membershipInputs{membership: membership(ownedBy, asOwner), user: readyUser, client: acme,
			peers: []v1.ClientMembership{peer("older", 5, "33333333-3333-4333-8333-333333333333", true)}},
			v1.ReasonOwnerConflict, ""},
		{"a younger duplicate does not stop the older one",
			membershipInputs{membership: membership(ownedBy), user: readyUser, client: acme,
				peers: []v1.ClientMembership{peer("younger", 20, userUUID, false)}},
			v1.ReasonReconciled, "write Updated"},
		{"no association: write it and bind it", membershipInputs{membership: membership(ownedBy), user: readyUser, client: acme},
			v1.ReasonReconciled, "write Updated"},
		{"the association matches and is bound here: nothing to write",
			membershipInputs{membership: membership(ownedBy), user: readyUser, client: acme,
				state: panel.MembershipState{Association: member, Binding: self}},
			v1.ReasonReconciled, ""},
		{"a matching association made in the panel UI is bound by writing it",
			membershipInputs{membership: membership(ownedBy), user: readyUser, client: acme,
				state: panel.MembershipState{Association: member}},
			v1.ReasonReconciled, "write Updated"},
		{"permissions changed outside the operator are repaired as drift",
			membershipInputs{membership: membership(ownedBy, wasReady), user: readyUser, client: acme,
				state: panel.MembershipState{Association: otherPerms, Binding: self}},
			v1.ReasonReconciled, "write DriftCorrected"},
		{"the owner's flag is not dropped without a transfer",
			membershipInputs{membership: membership(ownedBy), user: readyUser, client: acme,
				state: panel.MembershipState{Association: owner, Binding: self}},
			v1.ReasonOwnerConflict, ""},
		{"an association another operator instance holds is not touched",
			membershipInputs{membership: membership(ownedBy), user: readyUser, client: acme,
				state: panel.MembershipState{Association: member, Binding: bindingOf("team", "jane-acme", "uid-x", "staging")}},
			v1.ReasonBoundElsewhere, ""},
		{"an association a membership of another namespace holds is not touched",
			membershipInputs{membership: membership(ownedBy), user: readyUser, client: acme,
				state: panel.MembershipState{Association: member, Binding: bindingOf("other", "jane-acme", "uid-x", instance)}},
			v1.ReasonBoundElsewhere, ""},
		{"an older membership holding the binding wins",
			membershipInputs{membership: membership(ownedBy), user: readyUser, client: acme, holder: holder("older", 5),
				state: panel.MembershipState{Association: member, Binding: bindingOf("team", "older", "uid-older", instance)}},
			v1.ReasonDuplicateMembership, ""},
		{"the binding of a membership that is gone is taken over",
			membershipInputs{membership: membership(ownedBy), user: readyUser, client: acme,
				state: panel.MembershipState{Association: member, Binding: bindingOf("team", "jane-acme", "uid-before", instance)}},
			v1.ReasonReconciled, "write Updated replacing uid-before"},
		{"the binding of a younger membership is taken over",
			membershipInputs{membership: membership(ownedBy), user: readyUser, client: acme, holder: holder("younger", 20),
				state: panel.MembershipState{Association: member, Binding: bindingOf("team", "younger", "uid-younger", instance)}},
			v1.ReasonReconciled, "write Updated replacing uid-younger"},

		{"deleted: what the binding names is removed, whatever status says",
			membershipInputs{membership: membership(deleted, lostStatus), user: readyUser,
				bound: []panel.MembershipState{{Association: member, Binding: self}}},
			v1.ReasonReconciled, "remove " + client + "; unfinalize"},
		{"deleted: nothing bound, nothing removed (a duplicate, or an association made in the panel UI)",
			membershipInputs{membership: membership(deleted), user: readyUser},
			v1.ReasonReconciled, "unfinalize"},
		{"deleted: an association already gone only loses its binding",
			membershipInputs{membership: membership(deleted), user: readyUser, bound: []panel.MembershipState{{Binding: self}}},
			v1.ReasonReconciled, "remove " + client + "; unfinalize"},
		{"deleted on its own: the owner waits for a transfer",
			membershipInputs{membership: membership(deleted, asOwner), user: readyUser,
				bound: []panel.MembershipState{{Association: owner, Binding: self}}},
			v1.ReasonOwnerRemovalBlocked, ""},
		{"deleted with its User: the owner is released",
			membershipInputs{membership: membership(deleted, asOwner), user: goingUser,
				bound: []panel.MembershipState{{Association: owner, Binding: self}}},
			v1.ReasonReconciled, "release " + client + " owner; unfinalize"},
		{"deleted after its User is gone: the owner is released",
			membershipInputs{membership: membership(deleted, asOwner), bound: []panel.MembershipState{{Association: owner, Binding: self}}},
			v1.ReasonReconciled, "release " + client + " owner; unfinalize"},
		{"deleted with its User: a member is removed, not released",
			membershipInputs{membership: membership(deleted), user: goingUser,
				bound: []panel.MembershipState{{Association: member, Binding: self}}},
			v1.ReasonReconciled, "remove " + client + "; unfinalize"},
		{"deleted with Retain: released, left in the panel",
			membershipInputs{membership: membership(deleted, retain), user: readyUser,
				bound: []panel.MembershipState{{Association: member, Binding: self}}},
			v1.ReasonReconciled, "release " + client + "; unfinalize"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.operator = panel.Operator{Instance: instance, Cluster: cluster}
			p, o := planMembership(tc.in)
			if got := planSummary(p); o.reason != tc.reason || got != tc.want {
				t.Errorf("plan = %q with outcome %s (%s)\nwant %q with outcome %s", got, o.reason, o.message, tc.want, tc.reason)
			}
			if w := p.write; w != nil {
				want := panel.MembershipBinding{UserUUID: userUUID, ClientUUID: client, Namespace: "team", Name: "jane-acme",
					ResourceUID: "uid-self", InstanceID: instance, ClusterID: cluster}
				if w.binding != want {
					t.Errorf("the write binds %+v, want %+v", w.binding, want)
				}
				if w.want.Owner != tc.in.membership.Spec.Owner {
					t.Errorf("the write's owner flag = %v", w.want.Owner)
				}
			}
		})
	}
}

// planSummary says what a plan does, in a few words: metadata changes, the write with its event
// reason (and the binding it takes over), removals and releases by client, the finalizer's removal.
func planSummary(p membershipPlan) string {
	var parts []string
	if p.addFinalizer {
		parts = append(parts, "finalizer")
	}
	if p.setOwner != nil {
		parts = append(parts, "owner")
	}
	if w := p.write; w != nil {
		s := "write " + w.reason
		if w.replacing != "" {
			s += " replacing " + w.replacing
		}
		parts = append(parts, s)
	}
	for _, b := range p.remove {
		parts = append(parts, "remove "+b.ClientUUID)
	}
	for _, r := range p.release {
		parts = append(parts, fmt.Sprintf("release %s%s", r.binding.ClientUUID, map[bool]string{true: " owner"}[r.owner]))
	}
	if p.removeFinalizer {
		parts = append(parts, "unfinalize")
	}
	return strings.Join(parts, "; ")
}
