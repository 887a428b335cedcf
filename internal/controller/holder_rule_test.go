package controller

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// TestEmailHolderIsTheBoundPeerElseTheOldest is the holder rule every peer of an email applies:
// the User the panel user with the email is bound to holds it whatever the ages; only when no peer
// is bound (in this operator instance) does age, then namespace/name, decide. Each peer computes
// the same holder from the same facts, whichever order they are listed in.
func TestEmailHolderIsTheBoundPeerElseTheOldest(t *testing.T) {
	at := func(sec int) metav1.Time { return metav1.NewTime(time.Unix(int64(1_700_000_000+sec), 0)) }
	user := func(ns, name string, sec int) v1.User {
		return v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name),
			CreationTimestamp: at(sec)}}
	}
	bound := func(ns, name, instance string) *panel.Binding {
		return &panel.Binding{UserUUID: "u-1", Namespace: ns, Name: name, ResourceUID: "uid-" + name, InstanceID: instance,
			ClusterID: "cluster-b"}
	}
	earlier := bound("b", "young", "test")
	earlier.ResourceUID = "uid-of-an-earlier-young"
	otherCluster := bound("b", "young", "test")
	otherCluster.ClusterID = "cluster-a"
	o := panel.Operator{Instance: "test", Cluster: "cluster-b"}
	older, younger, sameSecond := user("a", "old", 5), user("b", "young", 9), user("a", "zed", 5)
	cases := []struct {
		name      string
		users     []v1.User
		bound     *panel.Binding
		want      string
		byBinding bool
	}{
		{"no panel user bound: the oldest", []v1.User{younger, older}, nil, "a/old", false},
		{"same second: by namespace/name", []v1.User{sameSecond, older}, nil, "a/old", false},
		{"the younger is bound: it holds", []v1.User{older, younger}, bound("b", "young", "test"), "b/young", true},
		{"same second, the later name is bound: it holds", []v1.User{older, sameSecond}, bound("a", "zed", "test"), "a/zed", true},
		{"bound by another instance: the oldest", []v1.User{younger, older}, bound("b", "young", "other"), "a/old", false},
		{"bound in another cluster: the oldest", []v1.User{younger, older}, otherCluster, "a/old", false},
		{"bound to an earlier User of the name: the oldest", []v1.User{younger, older}, earlier, "a/old", false},
		{"bound to a resource that is no peer: the oldest", []v1.User{younger, older}, bound("c", "gone", "test"), "a/old", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, users := range [][]v1.User{tc.users, {tc.users[1], tc.users[0]}} {
				h, byBinding := emailHolderOf(users, tc.bound, o)
				if got := h.Namespace + "/" + h.Name; got != tc.want || byBinding != tc.byBinding {
					t.Errorf("holder of %s, %s = %s (by binding %v), want %s (by binding %v)",
						users[0].Name, users[1].Name, got, byBinding, tc.want, tc.byBinding)
				}
			}
		})
	}
	if h, _ := emailHolderOf(nil, bound("b", "young", "test"), o); h != nil {
		t.Error("no users must have no holder")
	}
}
