package controller

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// An association's binding is the membership's as a User's binding is the User's: another
// cluster's is never taken (and not named), a row from before the upgrade is rewritten with the
// cluster, and the previous cluster's binding of the name is taken over.
func TestPlanMembershipClaimsBindingsByUIDAndCluster(t *testing.T) {
	const userUUID, client = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
	here := panel.Operator{Instance: "default", Cluster: "cluster-b"}
	rebuilt := panel.Operator{Instance: "default", Cluster: "cluster-b", PreviousCluster: "cluster-a"}
	m := &v1.ClientMembership{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "jane-acme", UID: "uid-self", Generation: 1,
			Finalizers: []string{MembershipFinalizer}},
		Spec: v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: "jane"}, Client: v1.ClientSelector{UUID: client},
			Permissions: []v1.Permission{v1.PermissionManageUsers}},
	}
	m.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "User", Name: "jane", UID: "uid-jane"}}
	user := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "jane", UID: "uid-jane"},
		Status: v1.UserStatus{UUID: userUUID, Conditions: []metav1.Condition{{Type: v1.ConditionReady, Status: "True",
			Reason: v1.ReasonReconciled}}}}
	binding := func(cluster, uid string) *panel.MembershipBinding {
		return &panel.MembershipBinding{UserUUID: userUUID, ClientUUID: client, Namespace: "team", Name: "jane-acme",
			ResourceUID: uid, InstanceID: "default", ClusterID: cluster}
	}
	member := &panel.Membership{Permissions: []string{"manage-users"}}
	for _, tc := range []struct {
		name    string
		o       panel.Operator
		bound   *panel.MembershipBinding
		reason  string
		summary string
	}{
		{"its own binding: nothing to write", here, binding("cluster-b", "uid-self"), v1.ReasonReconciled, ""},
		{"another cluster's binding is not taken", here, binding("cluster-a", "uid-self"), v1.ReasonBoundElsewhere, ""},
		{"a row from before the upgrade is rewritten with the cluster", here, binding("", "uid-self"), v1.ReasonReconciled,
			"write Updated"},
		{"the previous cluster's binding of the name is taken over", rebuilt, binding("cluster-a", "uid-old"),
			v1.ReasonReconciled, "write Updated replacing uid-old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := membershipInputs{membership: m, operator: tc.o, user: user, grants: grantEverything(m.Namespace),
				client: &panel.Client{UUID: client, Name: "Ann Smith", CompanyName: "Acme", Status: "active"},
				state:  panel.MembershipState{Association: member, Binding: tc.bound}}
			p, o := planMembership(in)
			if got := planSummary(p); o.reason != tc.reason || got != tc.summary {
				t.Fatalf("plan = %q with %s (%s), want %q with %s", got, o.reason, o.message, tc.summary, tc.reason)
			}
			if o.reason == v1.ReasonBoundElsewhere && (strings.Contains(o.message, "jane-acme") || strings.Contains(o.message, "cluster-a")) {
				t.Errorf("the message names the other cluster's resource: %s", o.message)
			}
			if p.write != nil && (p.write.binding.ClusterID != "cluster-b" || p.write.binding.ResourceUID != "uid-self") {
				t.Errorf("the write binds %+v, want this cluster and UID", p.write.binding)
			}
		})
	}
}
