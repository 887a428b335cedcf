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
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
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
		{"a new membership of a missing User waits for it with no metadata update",
			membershipInputs{membership: membership(func(m *v1.ClientMembership) { m.Finalizers = nil })},
			v1.ReasonUserNotFound, ""},
		{"a new membership of an existing User gets its finalizer and owner in one update",
			membershipInputs{membership: membership(func(m *v1.ClientMembership) { m.Finalizers = nil }), user: notReady},
			v1.ReasonUserNotReady, "finalizer; owner"},
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
	everything := grantEverything("team")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.operator = panel.Operator{Instance: instance, Cluster: cluster}
			tc.in.grants = everything // these cases are not about policies
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

// The grant decisions, each from inputs alone: the namespace's grants, spec.client, the UUID a
// company name stands for and the owner's namespace, before anything of the client is known.
func TestPlanMembershipDecidesGrantsFromItsInputs(t *testing.T) {
	const (
		userUUID = "11111111-1111-4111-8111-111111111111"
		client   = "22222222-2222-4222-8222-222222222222"
		other    = "44444444-4444-4444-8444-444444444444"
	)
	policy := func(name string, spec v1.PanelAccessPolicySpec) v1.PanelAccessPolicy {
		spec.Namespaces = v1.PolicyNamespaces{Names: []string{"team"}}
		return v1.PanelAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	}
	grant := func(policies ...v1.PanelAccessPolicy) tenancy.Grants { return tenancy.For(policies, "team", nil) }
	emails := []v1.EmailPattern{"*@example.com"}
	everything := grant(policy("all", v1.PanelAccessPolicySpec{AllowAll: true}))
	byUUID := grant(policy("acme", v1.PanelAccessPolicySpec{Emails: emails, Clients: &v1.ClientGrant{UUIDs: []string{client}},
		MaxPermissions: []v1.Permission{v1.PermissionManageUsers}}))
	otherOnly := grant(policy("other", v1.PanelAccessPolicySpec{Emails: emails, Clients: &v1.ClientGrant{UUIDs: []string{other}}}))
	owning := grant(policy("acme-owner", v1.PanelAccessPolicySpec{Emails: emails,
		Clients: &v1.ClientGrant{UUIDs: []string{client}, Ownership: v1.OwnershipAllowed}}))
	byOwner := grant(policy("team-clients", v1.PanelAccessPolicySpec{Emails: emails,
		Clients: &v1.ClientGrant{OwnedFromNamespace: true}, MaxPermissions: []v1.Permission{v1.PermissionManageUsers}}))
	emailsOnly := grant(policy("people", v1.PanelAccessPolicySpec{Emails: emails}))
	otherEmails := grant(policy("elsewhere", v1.PanelAccessPolicySpec{Emails: []v1.EmailPattern{"*@elsewhere.org"},
		Clients: &v1.ClientGrant{UUIDs: []string{client}}, MaxPermissions: v1.AllPermissions}))

	membership := func(mutate ...func(*v1.ClientMembership)) *v1.ClientMembership {
		m := &v1.ClientMembership{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "jane-acme", UID: "uid-self", Generation: 2,
				Finalizers: []string{MembershipFinalizer}, OwnerReferences: []metav1.OwnerReference{{UID: "uid-jane"}}},
			Spec: v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: "jane"}, Client: v1.ClientSelector{UUID: client},
				Permissions: []v1.Permission{v1.PermissionManageUsers}},
		}
		for _, f := range mutate {
			f(m)
		}
		return m
	}
	user := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "jane", UID: "uid-jane"},
		Spec: v1.UserSpec{Email: "jane@example.com"},
		Status: v1.UserStatus{UUID: userUUID, Conditions: []metav1.Condition{{Type: v1.ConditionReady, Status: "True",
			Reason: v1.ReasonReconciled}}}}
	asOwner := func(m *v1.ClientMembership) { m.Spec.Owner = true }
	byName := func(m *v1.ClientMembership) { m.Spec.Client = v1.ClientSelector{CompanyName: "Acme"} }
	morePerms := func(m *v1.ClientMembership) {
		m.Spec.Permissions = []v1.Permission{v1.PermissionManageUsers, v1.PermissionManageOrders, v1.PermissionManageInvoices}
	}
	wasReady := func(m *v1.ClientMembership) {
		m.Status = v1.ClientMembershipStatus{ObservedGeneration: m.Generation, UserUUID: userUUID, ClientUUID: client,
			Conditions: []metav1.Condition{{Type: v1.ConditionReady, Status: "True", Reason: v1.ReasonReconciled}}}
	}
	acme := &panel.Client{UUID: client, Name: "Ann Smith", CompanyName: "Acme", TaxID: "TAX-1", Status: "active"}
	self := &panel.MembershipBinding{UserUUID: userUUID, ClientUUID: client, Namespace: "team", Name: "jane-acme",
		ResourceUID: "uid-self", InstanceID: "prod"}
	selfHere := &panel.MembershipBinding{UserUUID: userUUID, ClientUUID: client, Namespace: "team", Name: "jane-acme",
		ResourceUID: "uid-self", InstanceID: "prod", ClusterID: "c1"}
	// drifted is an association this membership made, changed since in the panel.
	drifted := panel.MembershipState{Association: &panel.Membership{Permissions: []string{"manage-orders"}}, Binding: self}
	notGranted := `No PanelAccessPolicy grants namespace team the client "Acme" (policies selecting namespace team: acme)`

	cases := []struct {
		name string
		in   membershipInputs
		// reason and plan (planSummary) are the decision; message a part of the outcome's
		// message; recheck whether the membership looks again every resync.
		reason, plan, message string
		recheck               bool
	}{
		{"no policy: refused, naming the policy to write",
			membershipInputs{membership: membership(), user: user, grants: grant(), clientUUID: client},
			v1.ReasonNotPermitted, "", "no PanelAccessPolicy selects namespace team", false},
		{"a client no policy lists is refused from the spec alone",
			membershipInputs{membership: membership(), user: user, grants: otherOnly, clientUUID: client},
			v1.ReasonNotPermitted, "", "the client " + client + " (policies selecting namespace team: other)", false},
		{"a listed client is joined", membershipInputs{membership: membership(), user: user, grants: byUUID, clientUUID: client,
			client: acme}, v1.ReasonReconciled, "write Updated", "", false},
		{"permissions beyond maxPermissions are refused, naming them",
			membershipInputs{membership: membership(morePerms), user: user, grants: byUUID, clientUUID: client, client: acme},
			v1.ReasonNotPermitted, "", "the permissions manage-invoices, manage-orders on client " + client, false},
		{"ownership of a granted client is refused where the policy does not allow it, and the owner looked at again",
			membershipInputs{membership: membership(asOwner), user: user, grants: byUUID, clientUUID: client, client: acme},
			v1.ReasonNotPermitted, "", "take ownership of client " + client, true},
		{"a member asking for ownership where it is not allowed is refused: it would make someone owner",
			membershipInputs{membership: membership(asOwner), user: user, grants: byUUID, clientUUID: client, client: acme,
				state: panel.MembershipState{Association: &panel.Membership{Permissions: []string{"manage-users"}}}},
			v1.ReasonNotPermitted, "", "take ownership of client " + client, true},
		{"the panel's owner re-asserted needs no ownership grant: only the binding is written, keeping the owner",
			membershipInputs{membership: membership(asOwner), user: user, grants: byUUID, clientUUID: client, client: acme,
				state: panel.MembershipState{Association: &panel.Membership{Owner: true, Permissions: []string{"manage-users"}}}},
			v1.ReasonReconciled, "write Updated keeping the owner", "", false},
		{"the panel's owner re-asserted and bound: nothing to write",
			membershipInputs{membership: membership(asOwner), user: user, grants: byUUID, clientUUID: client, client: acme,
				state: panel.MembershipState{Association: &panel.Membership{Owner: true}, Binding: selfHere}},
			v1.ReasonReconciled, "", "", false},
		{"an owner of a client not granted at all is refused, whatever the panel holds",
			membershipInputs{membership: membership(asOwner), user: user, grants: otherOnly, clientUUID: client, client: acme,
				state: panel.MembershipState{Association: &panel.Membership{Owner: true}, Binding: self}},
			v1.ReasonNotPermitted, "", "the client " + client, false},
		{"ownership is taken where the policy allows it",
			membershipInputs{membership: membership(asOwner), user: user, grants: owning, clientUUID: client, client: acme},
			v1.ReasonReconciled, "write Updated", "", false},
		{"a client its namespace's people own is joined",
			membershipInputs{membership: membership(), user: user, grants: byOwner, clientUUID: client, ownerNamespace: "team",
				ownerRead: true, client: acme}, v1.ReasonReconciled, "write Updated", "", false},
		{"a client owned from elsewhere, ownerless or missing is refused, and looked at again",
			membershipInputs{membership: membership(), user: user, grants: byOwner, clientUUID: client, ownerRead: true},
			v1.ReasonNotPermitted, "", "the client " + client, true},
		{"a drifted association is not repaired once the namespace lost the client",
			membershipInputs{membership: membership(wasReady), user: user, grants: emailsOnly, clientUUID: client, client: acme,
				state: drifted}, v1.ReasonNotPermitted, "", "the client " + client, false},
		{"a User whose namespace lost its email gets nothing written",
			membershipInputs{membership: membership(wasReady), user: user, grants: otherEmails, clientUUID: client, client: acme,
				state: drifted}, v1.ReasonNotPermitted, "", "User jane may not hold its email", false},
		{"a company name standing for a granted client is joined",
			membershipInputs{membership: membership(byName), user: user, grants: byUUID, named: 1, clientUUID: client, client: acme},
			v1.ReasonReconciled, "write Updated", "", false},
		{"a company name matching no client is refused as one not granted",
			membershipInputs{membership: membership(byName), user: user, grants: byUUID},
			v1.ReasonNotPermitted, "", notGranted, false},
		{"a company name matching several clients is refused as one not granted",
			membershipInputs{membership: membership(byName), user: user, grants: byUUID, named: 2},
			v1.ReasonNotPermitted, "", notGranted, false},
		{"a company name standing for a client not granted is refused, naming the name only",
			membershipInputs{membership: membership(byName), user: user, grants: byUUID, named: 1,
				clientUUID: other}, v1.ReasonNotPermitted, "", notGranted, false},
		{"an older owner claim in another namespace is not named",
			membershipInputs{membership: membership(asOwner), user: user, grants: everything, clientUUID: client, client: acme,
				peers: []v1.ClientMembership{{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "older", UID: "uid-older"},
					Spec: v1.ClientMembershipSpec{Owner: true}, Status: v1.ClientMembershipStatus{ClientUUID: client}}}},
			v1.ReasonOwnerConflict, "", "a ClientMembership in another namespace, created earlier", false},
		{"an older owner claim refused NotPermitted claims nothing",
			membershipInputs{membership: membership(asOwner), user: user, grants: everything, clientUUID: client, client: acme,
				peers: []v1.ClientMembership{{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "older", UID: "uid-older"},
					Spec: v1.ClientMembershipSpec{Owner: true}, Status: v1.ClientMembershipStatus{ClientUUID: client,
						Conditions: []metav1.Condition{{Type: v1.ConditionReady, Status: metav1.ConditionFalse,
							Reason: v1.ReasonNotPermitted}}}}}},
			v1.ReasonReconciled, "write Updated", "", false},
		{"an association bound in another namespace does not name its holder",
			membershipInputs{membership: membership(), user: user, grants: everything, clientUUID: client, client: acme,
				state: panel.MembershipState{Binding: &panel.MembershipBinding{UserUUID: userUUID, ClientUUID: client,
					Namespace: "other", Name: "theirs", ResourceUID: "uid-theirs", InstanceID: "prod"}}},
			v1.ReasonBoundElsewhere, "", "belongs to a ClientMembership in another namespace;", false},
		{"any client allowed: a company name matching none is ClientNotFound",
			membershipInputs{membership: membership(byName), user: user, grants: everything},
			v1.ReasonClientNotFound, "", `companyName "Acme"`, false},
		{"any client allowed: a company name matching several is AmbiguousClient",
			membershipInputs{membership: membership(byName), user: user, grants: everything, named: 2},
			v1.ReasonAmbiguousClient, "", `Several panel clients have companyName "Acme"`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.operator = panel.Operator{Instance: "prod", Cluster: "c1"}
			p, o := planMembership(tc.in)
			if got := planSummary(p); o.reason != tc.reason || got != tc.plan || !strings.Contains(o.message, tc.message) {
				t.Errorf("plan = %q with outcome %s (%s)\nwant %q with outcome %s (containing %q)", got, o.reason, o.message,
					tc.plan, tc.reason, tc.message)
			}
			if p.recheck != tc.recheck {
				t.Errorf("recheck = %v, want %v", p.recheck, tc.recheck)
			}
			if o.reason == v1.ReasonNotPermitted && (p.clientUUID != "" || p.client != nil) {
				t.Errorf("a refused membership shows the client in its status: %q %+v", p.clientUUID, p.client)
			}
			if strings.Contains(o.message, "other/") || strings.Contains(o.message, "theirs") {
				t.Errorf("the message names another namespace's resource: %s", o.message)
			}
			if o.reason == v1.ReasonNotPermitted && (strings.Contains(o.message, acme.Name) || strings.Contains(o.message, acme.TaxID)) {
				t.Errorf("the refusal shows the client's fields: %s", o.message)
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
		if w.want.KeepOwner {
			s += " keeping the owner"
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
