package controller_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// loseTOTPSecretName clears status.totpSecretName, as if the status write that recorded it had
// been lost. The manager must be stopped, so that nothing writes it back in between.
func (e *env) loseTOTPSecretName(u *v1.User) {
	e.t.Helper()
	for range 10 {
		got := &v1.User{}
		if err := k8s.Get(e.ctx(), client.ObjectKeyFromObject(u), got); err != nil {
			e.t.Fatal(err)
		}
		got.Status.TOTPSecretName = ""
		err := k8s.Status().Update(e.ctx(), got)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			e.t.Fatal(err)
		}
	}
	e.t.Fatal("the status update kept conflicting")
}

// totpSecretName is status.totpSecretName of the User as stored now.
func (e *env) totpSecretName(u *v1.User) string {
	e.t.Helper()
	got := &v1.User{}
	if err := k8s.Get(e.ctx(), client.ObjectKeyFromObject(u), got); err != nil {
		e.t.Fatal(err)
	}
	return got.Status.TOTPSecretName
}

// A lost status write (the one that recorded the TOTP Secret's name) neither keeps a withdrawn
// seed nor lets re-enabling reuse it: removal is decided from the Secret the User owns.
func TestTOTPWithdrawnAndReissuedAfterALostStatusWrite(t *testing.T) {
	e := newEnv(t)
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane@example.com", func(u *v1.User) {
		u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP}
	})
	e.create(u)
	id := e.waitUser(u, v1.ReasonReconciled).Status.UUID
	seed := totpSeed(t, e)

	// Lost while TOTP stays on: the next reconcile records the name again.
	e.shutdown()
	e.loseTOTPSecretName(u)
	e.start()
	e.eventually(30*time.Second, func() string {
		if e.totpSecretName(u) != "jane-totp" {
			return "status.totpSecretName was not recorded again after the lost write"
		}
		return ""
	})

	// Lost again, and the next reconcile is the one that turns TOTP off.
	e.shutdown()
	e.loseTOTPSecretName(u)
	update(e, u, func(u *v1.User) { u.Spec.TwoFactor = v1.TwoFactor{} })
	e.start()
	got := e.waitUser(u, v1.ReasonReconciled)
	err := k8s.Get(e.ctx(), client.ObjectKey{Namespace: e.ns, Name: "jane-totp"}, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("with TOTP off and the Secret's name lost from status, the TOTP Secret is still there (get: %v)", err)
	}
	if n := e.count("SELECT COUNT(*) FROM verifications WHERE user_uuid = ? AND type = 'totp'", id); n != 0 {
		t.Errorf("%d totp rows left after TOTP was turned off, want 0", n)
	}
	if got.Status.TwoFactor != "Disabled" || got.Status.TOTPSecretName != "" {
		t.Errorf("after disabling: twoFactor %q, totpSecretName %q", got.Status.TwoFactor, got.Status.TOTPSecretName)
	}
	const email = "jane@example.com"
	e.wantLogsIn("with two-factor off, jane's password alone", e.login(email, testPassword, ""))

	// On again: a new seed; the old seed's codes are refused, the new one's accepted.
	update(e, u, func(u *v1.User) { u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP} })
	e.waitUser(u, v1.ReasonReconciled)
	again := totpSeed(t, e)
	if again == seed {
		t.Fatal("re-enabling after a lost status write reused the old seed")
	}
	e.wantOnlyNewSeedLogsIn(email, seed, again)
}

// A Secret named <user>-totp that the User does not control is someone else's: with TOTP off it
// is left exactly as it is, whether the User never had TOTP or its own seed Secret was replaced.
func TestTOTPSecretNotOwnedByTheUserIsNeverDeleted(t *testing.T) {
	e := newEnv(t)
	handMade := map[string]string{"secret": "made by hand", "note": "not the operator's"}
	// bob never had TOTP; a Secret of his TOTP Secret's name was made by hand.
	e.secret("bob-totp", handMade)
	bob, _ := e.readyUser("bob")
	// jane had TOTP; her seed Secret is replaced by a hand-made one, then she turns TOTP off
	// (status still names the Secret).
	e.secret("jane-password", map[string]string{"password": testPassword})
	jane := e.newUser("jane", "jane@example.com", func(u *v1.User) {
		u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP}
	})
	e.create(jane)
	e.waitUser(jane, v1.ReasonReconciled)
	e.shutdown()
	own := &corev1.Secret{}
	if err := k8s.Get(e.ctx(), client.ObjectKey{Namespace: e.ns, Name: "jane-totp"}, own); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(e.ctx(), own); err != nil {
		t.Fatal(err)
	}
	e.waitGone(own)
	e.secret("jane-totp", handMade)
	update(e, jane, func(u *v1.User) { u.Spec.TwoFactor = v1.TwoFactor{} })
	e.start()
	e.waitUser(jane, v1.ReasonReconciled)

	before := map[string]*corev1.Secret{}
	for _, name := range []string{"bob-totp", "jane-totp"} {
		s := &corev1.Secret{}
		if err := k8s.Get(e.ctx(), client.ObjectKey{Namespace: e.ns, Name: name}, s); err != nil {
			t.Fatalf("Secret %s, not the User's, is gone after TOTP was off: %v", name, err)
		}
		before[name] = s
	}
	// More reconciles of both, counted: each edit is one at least.
	reconciled := metricDelta(t, "controller_runtime_reconcile_total", map[string]string{"controller": e.controller("user")})
	for _, first := range []string{"Edit1", "Edit2"} {
		for _, u := range []*v1.User{bob, jane} {
			update(e, u, func(u *v1.User) { u.Spec.FirstName = first })
			e.waitUser(u, v1.ReasonReconciled)
		}
	}
	e.eventually(30*time.Second, func() string {
		if _, idle := reconciles(t, e.controller("user")); !idle || reconciled() < 4 {
			return "the user controller has not finished the 4 reconciles of the edits"
		}
		return ""
	})
	t.Logf("%v reconciles of the two Users with a hand-made TOTP Secret", reconciled())
	for name, b := range before {
		s := &corev1.Secret{}
		if err := k8s.Get(e.ctx(), client.ObjectKey{Namespace: e.ns, Name: name}, s); err != nil {
			t.Fatalf("Secret %s, not the User's, is gone after %v reconciles: %v", name, reconciled(), err)
		}
		if s.ResourceVersion != b.ResourceVersion || s.UID != b.UID || !maps.EqualFunc(s.Data, b.Data, slices.Equal) {
			t.Errorf("Secret %s, not the User's, was changed by the reconciles", name)
		}
		for k, v := range handMade {
			if string(s.Data[k]) != v {
				t.Errorf("Secret %s, not the User's, lost its key %s", name, k)
			}
		}
	}
}
