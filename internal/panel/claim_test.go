package panel_test

import (
	"testing"

	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// Whose a binding is: the resource's by UID in this cluster (or in a row from before clusters were
// recorded), by name in the previous cluster; an earlier resource's of the same name is stale,
// another cluster's or instance's is foreign.
func TestClaimComparesUIDAndCluster(t *testing.T) {
	here := panel.Operator{Instance: "default", Cluster: "cluster-b"}
	rebuilt := panel.Operator{Instance: "default", Cluster: "cluster-b", PreviousCluster: "cluster-a"}
	binding := func(cluster, ns, name, uid string) *panel.Binding {
		return &panel.Binding{UserUUID: "p-1", Namespace: ns, Name: name, ResourceUID: uid, InstanceID: "default", ClusterID: cluster}
	}
	for _, c := range []struct {
		what string
		o    panel.Operator
		b    *panel.Binding
		want panel.Claim
	}{
		{"no binding", here, nil, panel.ClaimNone},
		{"its own", here, binding("cluster-b", "team", "jane", "uid-1"), panel.ClaimOwn},
		{"its own, written before clusters were recorded", here, binding("", "team", "jane", "uid-1"), panel.ClaimOwn},
		{"a predecessor's of the same name", here, binding("cluster-b", "team", "jane", "uid-0"), panel.ClaimStale},
		{"a predecessor's from before clusters were recorded", here, binding("", "team", "jane", "uid-0"), panel.ClaimStale},
		{"another resource's", here, binding("cluster-b", "team", "bob", "uid-2"), panel.ClaimOther},
		{"another cluster's of the same name and UID", here, binding("cluster-a", "team", "jane", "uid-1"), panel.ClaimForeign},
		{"another cluster's, with no previous cluster named", here, binding("cluster-a", "team", "jane", "uid-0"), panel.ClaimForeign},
		{"the previous cluster's of its name", rebuilt, binding("cluster-a", "team", "jane", "uid-0"), panel.ClaimOwn},
		{"the previous cluster's of another name", rebuilt, binding("cluster-a", "team", "bob", "uid-0"), panel.ClaimOther},
		{"a third cluster's", rebuilt, binding("cluster-c", "team", "jane", "uid-0"), panel.ClaimForeign},
		{"another instance's", panel.Operator{Instance: "blue", Cluster: "cluster-b"}, binding("cluster-b", "team", "jane", "uid-1"),
			panel.ClaimForeign},
	} {
		if got := c.o.Claim(c.b, "team", "jane", "uid-1"); got != c.want {
			t.Errorf("%s: Claim = %d, want %d", c.what, got, c.want)
		}
	}
}

// A membership's binding is held as a User's is claimed: by UID here, by name in the previous
// cluster; never by a predecessor's UID, another cluster or another instance.
func TestMembershipBindingHeldByUIDAndCluster(t *testing.T) {
	here := panel.Operator{Instance: "default", Cluster: "cluster-b"}
	rebuilt := panel.Operator{Instance: "default", Cluster: "cluster-b", PreviousCluster: "cluster-a"}
	binding := func(instance, cluster, name, uid string) panel.MembershipBinding {
		return panel.MembershipBinding{UserUUID: "p-1", ClientUUID: "c-1", Namespace: "team", Name: name, ResourceUID: uid,
			InstanceID: instance, ClusterID: cluster}
	}
	for _, c := range []struct {
		what          string
		o             panel.Operator
		b             panel.MembershipBinding
		held, foreign bool
	}{
		{"its own", here, binding("default", "cluster-b", "m", "uid-1"), true, false},
		{"its own, written before clusters were recorded", here, binding("default", "", "m", "uid-1"), true, false},
		{"a predecessor's of the same name", here, binding("default", "cluster-b", "m", "uid-0"), false, false},
		{"another cluster's", here, binding("default", "cluster-a", "m", "uid-1"), false, true},
		{"the previous cluster's of its name", rebuilt, binding("default", "cluster-a", "m", "uid-0"), true, false},
		{"the previous cluster's of another name", rebuilt, binding("default", "cluster-a", "n", "uid-0"), false, false},
		{"another instance's", here, binding("blue", "cluster-b", "m", "uid-1"), false, true},
	} {
		if got := c.b.HeldBy(c.o, "team", "m", "uid-1"); got != c.held {
			t.Errorf("%s: HeldBy = %v, want %v", c.what, got, c.held)
		}
		if got := c.b.Foreign(c.o); got != c.foreign {
			t.Errorf("%s: Foreign = %v, want %v", c.what, got, c.foreign)
		}
	}
}
