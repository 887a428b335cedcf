package controller

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
)

// The planner decides every reconcile from facts alone: these cases are the decisions, with no
// database or API server behind them.
func TestPlanUserDecidesFromFactsAlone(t *testing.T) {
	opts := Options{InstanceID: "test", HashCosts: password.DefaultCostRange, Languages: []string{"en", "pl"},
		PasswordPolicy: password.Policy{MinLength: 8}}
	base := func(mutate ...func(*v1.User)) *v1.User {
		u := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "jane", UID: "uid-jane", Generation: 1},
			Spec: v1.UserSpec{Email: "jane@example.com", FirstName: "Jane",
				PasswordSecretRef: v1.SecretKeyReference{Name: "jane-password"}}}
		for _, m := range mutate {
			m(u)
		}
		return u
	}
	own := func(u *v1.User, version string) *panel.Binding {
		return &panel.Binding{UserUUID: "p-1", Namespace: u.Namespace, Name: u.Name, ResourceUID: string(u.UID),
			InstanceID: "test", SecretVersion: version}
	}
	snapOf := func(u *v1.User, b *panel.Binding) *panel.Snapshot {
		return panel.SnapshotOf("p-1", desiredFields(opts, u), b, nil)
	}
	read := func(value, version string) secretFacts {
		return secretFacts{read: true, value: value, version: version}
	}
	const strong = "correct horse battery staple"
	policy := func(name string, spec v1.PanelAccessPolicySpec) v1.PanelAccessPolicy {
		spec.Namespaces = v1.PolicyNamespaces{Names: []string{"ns"}}
		return v1.PanelAccessPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	}
	grant := func(policies ...v1.PanelAccessPolicy) tenancy.Grants { return tenancy.For(policies, "ns", nil) }
	everything := grant(policy("all", v1.PanelAccessPolicySpec{AllowAll: true}))
	examples := grant(policy("examples", v1.PanelAccessPolicySpec{Emails: []v1.EmailPattern{"*@example.com"}}))
	adoptable := grant(policy("adopt", v1.PanelAccessPolicySpec{Emails: []v1.EmailPattern{"*@example.com"},
		Adoption: &v1.AdoptionGrant{Mode: v1.AdoptionModeIfEmailAllowed}}))

	type want struct {
		stop       string // the outcome's reason; "" when the plan goes ahead
		incomplete bool
		create     bool
		write      bool // a panel change
		cleartext  bool
		adopt      bool
		issueTOTP  bool
		adoptTOTP  bool
		withdraw   bool
		version    string
		msg        string // in the stop message
	}
	cases := []struct {
		name  string
		facts func() userFacts
		want  want
	}{
		{"a namespace no policy selects is refused every email", func() userFacts {
			return userFacts{user: base(), grants: grant(), password: read(strong, "s/1")}
		}, want{stop: v1.ReasonNotPermitted, msg: "no PanelAccessPolicy selects namespace ns"}},
		{"an email outside the policy's patterns is refused", func() userFacts {
			return userFacts{user: base(func(u *v1.User) { u.Spec.Email = "jane@elsewhere.org" }), grants: examples,
				password: read(strong, "s/1")}
		}, want{stop: v1.ReasonNotPermitted, msg: "spec.emails of a PanelAccessPolicy selecting ns"}},
		{"a bound User whose namespace lost the grant writes nothing", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.FirstName = "Changed" })
			return userFacts{user: u, grants: grant(), found: panel.Located{Snapshot: snapOf(base(), own(u, "s/1")),
				Via: panel.ViaStatus}, password: read(strong, "s/2")}
		}, want{stop: v1.ReasonNotPermitted}},
		{"adoption the policy does not grant is refused", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.Adoption = v1.AdoptionIfExists })
			return userFacts{user: u, grants: examples, found: panel.Located{Snapshot: snapOf(u, nil), Via: panel.ViaEmail},
				password: read(strong, "s/1")}
		}, want{stop: v1.ReasonNotPermitted, msg: "adopt the existing panel user"}},
		{"a panel user found through status whose email is not granted is not adopted for a granted spec.email", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.Adoption = v1.AdoptionIfExists; u.Status.UUID = "p-1" })
			victim := base(func(v *v1.User) { v.Spec.Email = "victim@elsewhere.org" })
			return userFacts{user: u, grants: adoptable, found: panel.Located{Snapshot: snapOf(victim, nil), Via: panel.ViaStatus},
				password: read(strong, "s/1")}
		}, want{stop: v1.ReasonNotPermitted, msg: "would adopt holds an email other than spec.email"}},
		{"adoption the policy grants goes ahead", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.Adoption = v1.AdoptionIfExists })
			return userFacts{user: u, grants: adoptable, found: panel.Located{Snapshot: snapOf(u, nil), Via: panel.ViaEmail},
				password: read(strong, "s/1")}
		}, want{write: true, cleartext: true, adopt: true, version: "s/1"}},
		{"a language the panel does not offer stops before anything is read", func() userFacts {
			return userFacts{user: base(func(u *v1.User) { u.Spec.Language = "xx" })}
		}, want{stop: v1.ReasonUnsupportedLanguage, msg: "en, pl"}},
		{"an older User holding the email makes this one wait", func() userFacts {
			u := base()
			older := *base()
			older.Name, older.UID, older.CreationTimestamp = "older", "uid-older", metav1.Unix(1, 0)
			u.CreationTimestamp = metav1.Unix(2, 0)
			return userFacts{user: u, peersRead: true, peers: []v1.User{older, *u}}
		}, want{stop: v1.ReasonDuplicateEmail, msg: "ns/older, created earlier"}},
		{"the peer bound to the panel user holds the email whatever the ages", func() userFacts {
			u := base()
			older := *base()
			older.Name, older.UID, older.CreationTimestamp = "older", "uid-older", metav1.Unix(1, 0)
			u.CreationTimestamp = metav1.Unix(2, 0)
			return userFacts{user: u, peersRead: true, peers: []v1.User{older, *u}, emailBound: own(u, "v1"),
				found: panel.Located{}, password: read(strong, "v1")}
		}, want{create: true, write: true, cleartext: true, version: "v1"}},
		{"no panel user: create it with its binding, carrying the resource's UID", func() userFacts {
			return userFacts{user: base(), password: read(strong, "s/1")}
		}, want{create: true, write: true, cleartext: true, version: "s/1"}},
		{"a missing Secret stops the create", func() userFacts {
			return userFacts{user: base(), password: secretFacts{read: true, missing: true}}
		}, want{stop: v1.ReasonSecretNotFound, msg: "ns/jane-password"}},
		{"a Secret without the key stops", func() userFacts {
			return userFacts{user: base(), password: read("", "s/1")}
		}, want{stop: v1.ReasonSecretKeyMissing}},
		{"a weak password stops and names no password", func() userFacts {
			return userFacts{user: base(), password: read("short", "s/1")}
		}, want{stop: v1.ReasonWeakPassword}},
		{"a key passwordHash that is not bcrypt stops", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.PasswordSecretRef.Key = v1.PasswordKeyHash })
			return userFacts{user: u, password: read("not-a-hash", "s/1/passwordHash")}
		}, want{stop: v1.ReasonInvalidPasswordHash}},
		{"a hash of a cost above the accepted range stops (cost 31: 2^19 checks per login attempt)", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.PasswordSecretRef.Key = v1.PasswordKeyHash })
			return userFacts{user: u, password: read(atCost(t, 31), "s/1/passwordHash")}
		}, want{stop: v1.ReasonHashCostOutOfRange, msg: "cost 31; this operator accepts costs 10 to 14"}},
		{"a hash of a cost below the accepted range stops (cost 04: cheap to crack)", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.PasswordSecretRef.Key = v1.PasswordKeyHash })
			return userFacts{user: u, password: read(atCost(t, 4), "s/1/passwordHash")}
		}, want{stop: v1.ReasonHashCostOutOfRange, msg: "cost 4;"}},
		{"a hash of a cost within the range is written as it is", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.PasswordSecretRef.Key = v1.PasswordKeyHash })
			return userFacts{user: u, password: read(atCost(t, 14), "s/1/passwordHash")}
		}, want{create: true, write: true, version: "s/1/passwordHash"}},
		{"an unbound panel user with the email is not taken without adoption", func() userFacts {
			u := base()
			return userFacts{user: u, found: panel.Located{Snapshot: snapOf(u, nil), Via: panel.ViaEmail}, password: read(strong, "s/1")}
		}, want{stop: v1.ReasonEmailTakenInPanel, msg: "adoption: IfExists"}},
		{"a status naming an unbound panel user (copied from elsewhere) does not take it", func() userFacts {
			u := base(func(u *v1.User) { u.Status.UUID = "p-1" })
			return userFacts{user: u, found: panel.Located{Snapshot: snapOf(u, nil), Via: panel.ViaStatus}, password: read(strong, "s/1")}
		}, want{stop: v1.ReasonEmailTakenInPanel, msg: "status.uuid"}},
		{"adoption takes an unbound panel user, expecting it still unbound at commit", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.Adoption = v1.AdoptionIfExists })
			return userFacts{user: u, found: panel.Located{Snapshot: snapOf(u, nil), Via: panel.ViaEmail}, password: read(strong, "s/1")}
		}, want{adopt: true, write: true, cleartext: true, version: "s/1"}},
		{"a panel user bound to another resource is never taken", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.Adoption = v1.AdoptionIfExists })
			b := own(u, "s/1")
			b.Name = "someone-else"
			return userFacts{user: u, found: panel.Located{Snapshot: snapOf(u, b), Via: panel.ViaEmail}, password: read(strong, "s/1")}
		}, want{stop: v1.ReasonBoundElsewhere, msg: "ns/someone-else"}},
		{"a panel user bound in another namespace is never taken, and its holder is not named", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.Adoption = v1.AdoptionIfExists })
			b := own(u, "s/1")
			b.Namespace = "tenant-a"
			return userFacts{user: u, found: panel.Located{Snapshot: snapOf(u, b), Via: panel.ViaEmail}, password: read(strong, "s/1")}
		}, want{stop: v1.ReasonBoundElsewhere, msg: "a User in another namespace"}},
		{"an email held by a User of another namespace is refused without naming it", func() userFacts {
			u := base()
			other := *base()
			other.Namespace, other.UID, other.CreationTimestamp = "tenant-a", "uid-other", metav1.Unix(1, 0)
			u.CreationTimestamp = metav1.Unix(2, 0)
			return userFacts{user: u, peersRead: true, peers: []v1.User{other, *u}}
		}, want{stop: v1.ReasonDuplicateEmail, msg: "held by a User in another namespace"}},
		{"in sync: nothing to write, no Secret needed", func() userFacts {
			u := base()
			return userFacts{user: u, found: panel.Located{Snapshot: snapOf(u, own(u, "s/1")), Via: panel.ViaStatus},
				password: secretFacts{version: "s/1"}}
		}, want{version: "s/1"}},
		{"a rotated Secret is hashed and written with its new version", func() userFacts {
			u := base()
			return userFacts{user: u, found: panel.Located{Snapshot: snapOf(u, own(u, "s/1")), Via: panel.ViaStatus},
				password: read(strong, "s/2")}
		}, want{write: true, cleartext: true, version: "s/2"}},
		{"a rotation the resync cannot read is left to a reconcile", func() userFacts {
			u := base()
			return userFacts{user: u, found: panel.Located{Snapshot: snapOf(u, own(u, "s/1")), Via: panel.ViaStatus},
				password: secretFacts{version: "s/2"}}
		}, want{incomplete: true}},
		{"a field changed in the panel is written back", func() userFacts {
			u := base()
			snap := snapOf(u, own(u, "s/1"))
			u.Spec.FirstName = "Janet"
			return userFacts{user: u, found: panel.Located{Snapshot: snap, Via: panel.ViaStatus}, password: secretFacts{version: "s/1"}}
		}, want{write: true, version: "s/1"}},
		{"TOTP wanted with no Secret: issue one", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP} })
			return userFacts{user: u, password: read(strong, "s/1"), totp: totpFacts{read: true}}
		}, want{create: true, write: true, cleartext: true, issueTOTP: true, version: "s/1"}},
		{"TOTP wanted and a Secret of that name someone else owns: stop", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP} })
			return userFacts{user: u, password: read(strong, "s/1"), totp: totpFacts{read: true, exists: true}}
		}, want{stop: "TOTPSecretConflict", msg: "ns/jane-totp"}},
		{"an unowned TOTP Secret kubectl puq import made with the panel's seed: adopted, nothing written to the panel", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP} })
			d := desiredFields(opts, u)
			d.TOTPSecret = "SEED"
			return userFacts{user: u, found: panel.Located{Snapshot: panel.SnapshotOf("p-1", d, own(u, "s/1"), nil), Via: panel.ViaStatus},
				password: secretFacts{version: "s/1"}, totp: totpFacts{read: true, exists: true, imported: true, seed: "SEED"}}
		}, want{adoptTOTP: true, version: "s/1"}},
		{"an imported TOTP Secret without a seed is a conflict", func() userFacts {
			u := base(func(u *v1.User) { u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP} })
			return userFacts{user: u, password: read(strong, "s/1"), totp: totpFacts{read: true, exists: true, imported: true}}
		}, want{stop: "TOTPSecretConflict", msg: "ns/jane-totp"}},
		{"TOTP off with an owned Secret left (a lost status write): withdraw the seed", func() userFacts {
			u := base()
			d := desiredFields(opts, u)
			d.TOTPSecret, d.DefaultMethod = "SEED", panel.MethodTOTP
			snap := panel.SnapshotOf("p-1", d, own(u, "s/1"), nil)
			return userFacts{user: u, found: panel.Located{Snapshot: snap, Via: panel.ViaStatus},
				password: secretFacts{version: "s/1"}, totp: totpFacts{read: true, exists: true, owned: true, seed: "SEED"}}
		}, want{write: true, withdraw: true, version: "s/1"}},
		{"TOTP off, the seed's Secret deleted by hand: the panel's seed still goes, no Secret is deleted", func() userFacts {
			u := base(func(u *v1.User) { u.Status.TOTPSecretName = "jane-totp" })
			d := desiredFields(opts, u)
			d.TOTPSecret, d.DefaultMethod = "SEED", panel.MethodTOTP
			snap := panel.SnapshotOf("p-1", d, own(u, "s/1"), nil)
			return userFacts{user: u, found: panel.Located{Snapshot: snap, Via: panel.ViaStatus},
				password: secretFacts{version: "s/1"}, totp: totpFacts{read: true}}
		}, want{write: true, version: "s/1"}},
		{"TOTP off and a seed the person enrolled in the panel themselves stays", func() userFacts {
			u := base()
			d := desiredFields(opts, u)
			d.TOTPSecret, d.DefaultMethod = "THEIRS", panel.MethodTOTP
			snap := panel.SnapshotOf("p-1", d, own(u, "s/1"), nil)
			return userFacts{user: u, found: panel.Located{Snapshot: snap, Via: panel.ViaStatus},
				password: secretFacts{version: "s/1"}, totp: totpFacts{read: true}}
		}, want{version: "s/1"}},
		{"TOTP off and status names a Secret the resync did not read: left to a reconcile", func() userFacts {
			u := base(func(u *v1.User) { u.Status.TOTPSecretName = "jane-totp" })
			return userFacts{user: u, found: panel.Located{Snapshot: snapOf(u, own(u, "s/1")), Via: panel.ViaStatus},
				password: secretFacts{version: "s/1"}}
		}, want{incomplete: true}},
		{"a status naming a panel user deleted outside the operator: create anew", func() userFacts {
			return userFacts{user: base(func(u *v1.User) { u.Status.UUID = "p-gone" }), password: read(strong, "s/1")}
		}, want{create: true, write: true, cleartext: true, version: "s/1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.facts()
			if f.grants.Namespace() == "" {
				f.grants = everything // the cases above that are not about policies
			}
			p := planUser(opts, f)
			got := want{incomplete: p.incomplete, write: p.change != nil, cleartext: p.cleartext != "", adopt: p.adopt,
				issueTOTP: p.issueTOTP, adoptTOTP: p.adoptTOTP, withdraw: p.withdrawTOTP, create: p.change != nil && p.change.UUID == ""}
			if p.stop != nil {
				got.stop = p.stop.reason
			}
			if got.stop == "" && !got.incomplete {
				got.version = p.version
			}
			msg := tc.want.msg
			tc.want.msg = ""
			if got != tc.want {
				t.Errorf("plan = %+v, want %+v", got, tc.want)
			}
			if p.stop != nil && !strings.Contains(p.stop.message, msg) {
				t.Errorf("stop message %q does not say %q", p.stop.message, msg)
			}
			if p.stop != nil && (strings.Contains(p.stop.message, strong) || strings.Contains(p.stop.message, "short")) {
				t.Errorf("stop message %q holds the password", p.stop.message)
			}
			if p.stop != nil && (strings.Contains(p.stop.message, "tenant-a") || strings.Contains(p.stop.message, "p-1")) {
				t.Errorf("stop message %q names another namespace or a panel user's UUID", p.stop.message)
			}
			if p.stop != nil && f.password.value != "" && strings.Contains(p.stop.message, fmt.Sprint(len(f.password.value))) {
				t.Errorf("stop message %q tells the password's length", p.stop.message)
			}
			if c := p.change; c != nil {
				b := c.Binding
				if b == nil || b.ResourceUID != string(f.user.UID) || b.InstanceID != "test" || b.SecretVersion != p.version {
					t.Errorf("the change binds %+v, want the User's UID, instance and version %q", b, p.version)
				}
				if c.UUID != "" && f.found.Snapshot != nil && !sameExpect(c.Expect, f.found.Snapshot.Binding) {
					t.Errorf("the change expects binding %+v, want the one read (%+v)", c.Expect, f.found.Snapshot.Binding)
				}
			}
		})
	}
}

func sameExpect(a, b *panel.Binding) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// atCost is a well-formed bcrypt hash that says the cost (a cost-4 hash relabelled: the planner
// reads the cost, it does not verify the hash, so a cost-31 one needs no days of hashing).
func atCost(t *testing.T, cost int) string {
	t.Helper()
	h, err := password.Hash("correct horse battery staple", 4)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s%02d%s", h[:4], cost, h[6:])
}
