package controller

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
)

// A binding is the User's only when it was written for its UID in this cluster (or for its name in
// the previous cluster named): a User re-created under an old name inherits nothing, another
// cluster's binding is never taken, and a row from before the upgrade is claimed by UID with a
// write of the binding alone.
func TestPlanUserClaimsBindingsByUIDAndCluster(t *testing.T) {
	opts := Options{InstanceID: "default", ClusterID: "cluster-b", Languages: []string{"en"},
		PasswordPolicy: password.Policy{MinLength: 8}}
	rebuilt := opts
	rebuilt.PreviousClusterID = "cluster-a"
	user := func(adopt bool) *v1.User {
		u := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "jane", UID: "uid-new", Generation: 1},
			Spec: v1.UserSpec{Email: "jane@example.com", FirstName: "Jane",
				PasswordSecretRef: v1.SecretKeyReference{Name: "jane-password"}}}
		if adopt {
			u.Spec.Adoption = v1.AdoptionIfExists
		}
		return u
	}
	binding := func(cluster, uid string) *panel.Binding {
		return &panel.Binding{UserUUID: "p-1", Namespace: "ns", Name: "jane", ResourceUID: uid, InstanceID: "default",
			ClusterID: cluster, SecretVersion: "s/1"}
	}
	facts := func(u *v1.User, b *panel.Binding, via panel.Via) userFacts {
		return userFacts{user: u, found: panel.Located{Snapshot: panel.SnapshotOf("p-1", desiredFields(opts, u), b, nil), Via: via},
			password: secretFacts{read: true, value: "correct horse battery staple", version: "s/1"}}
	}
	for _, tc := range []struct {
		name      string
		o         Options
		f         userFacts
		stop      string
		adopt     bool
		password  bool
		expect    *panel.Binding // the binding the write expects to replace
		forbidden []string       // never in the stop message
	}{
		{"a predecessor's binding of the same name is not inherited", opts, facts(user(false), binding("cluster-b", "uid-old"),
			panel.ViaEmail), v1.ReasonEmailTakenInPanel, false, false, nil, []string{"p-1"}},
		{"a predecessor's binding from before the upgrade is not inherited", opts, facts(user(false), binding("", "uid-old"),
			panel.ViaEmail), v1.ReasonEmailTakenInPanel, false, false, nil, []string{"p-1"}},
		{"with adoption, a predecessor's panel user is adopted like an unbound one", opts,
			facts(user(true), binding("cluster-b", "uid-old"), panel.ViaEmail), "", true, true, binding("cluster-b", "uid-old"), nil},
		{"another cluster's binding is never taken, and not named", opts, facts(user(true), binding("cluster-a", "uid-new"),
			panel.ViaEmail), v1.ReasonBoundElsewhere, false, false, nil, []string{"p-1", "ns/jane", "cluster-a"}},
		{"a row from before the upgrade with the User's UID is its own: only the binding is written", opts,
			facts(user(false), binding("", "uid-new"), panel.ViaStatus), "", false, false, binding("", "uid-new"), nil},
		{"the previous cluster's binding of the name is claimed", rebuilt, facts(user(false), binding("cluster-a", "uid-old"),
			panel.ViaBinding), "", false, false, binding("cluster-a", "uid-old"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.grants = grantEverything(tc.f.user.Namespace) // these cases are not about policies
			p := planUser(tc.o, tc.f)
			if tc.stop != "" {
				if p.stop == nil || p.stop.reason != tc.stop {
					t.Fatalf("plan = %+v, want stop %s", p, tc.stop)
				}
				for _, s := range tc.forbidden {
					if strings.Contains(p.stop.message, s) {
						t.Errorf("the message names %q: %s", s, p.stop.message)
					}
				}
				return
			}
			if p.stop != nil || p.change == nil {
				t.Fatalf("plan stops with %+v (change %+v), want a write", p.stop, p.change)
			}
			if p.adopt != tc.adopt || (p.cleartext != "") != tc.password {
				t.Errorf("adopt %v, password written %v; want %v, %v", p.adopt, p.cleartext != "", tc.adopt, tc.password)
			}
			if p.change.Expect == nil || *p.change.Expect != *tc.expect {
				t.Errorf("the write expects %+v, want %+v", p.change.Expect, tc.expect)
			}
			want := panel.Binding{UserUUID: "p-1", Namespace: "ns", Name: "jane", ResourceUID: "uid-new", InstanceID: "default",
				ClusterID: "cluster-b", SecretVersion: "s/1"}
			if p.change.Binding == nil || *p.change.Binding != want {
				t.Errorf("the write binds %+v, want %+v", p.change.Binding, want)
			}
		})
	}
}

// grantEverything is what an allowAll policy selecting the namespace grants.
func grantEverything(namespace string) tenancy.Grants {
	return tenancy.For([]v1.PanelAccessPolicy{{ObjectMeta: metav1.ObjectMeta{Name: "all"},
		Spec: v1.PanelAccessPolicySpec{AllowAll: true, Namespaces: v1.PolicyNamespaces{Names: []string{namespace}}}}},
		namespace, nil)
}
