package controller_test

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
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

// totpRowForm is the User's totp row as the panel shows it: value and device_name, verified,
// default, and whether last_used_at is set to its enrolment (created_at); never the seed.
func (e *env) totpRowForm(userUUID string) string {
	e.t.Helper()
	return e.str("SELECT CONCAT(COALESCE(`value`, 'NULL'), '|', `device_name`, '|', `verified`, '|', `default`, '|', "+
		"CASE WHEN `last_used_at` IS NULL THEN 'never used' WHEN `last_used_at` = `created_at` THEN 'used at enrolment' "+
		"ELSE 'used later' END, '|', `updated_at`) FROM verifications WHERE user_uuid = ? AND type = 'totp'", userUUID)
}

// The authenticator row is the one the panel's own enrolment writes (its login prompt shows
// value as the device), so the panel prints no "null"; a row an older operator wrote without a
// device name is completed by one UPDATE, once; resyncs after that write nothing, and the person
// still logs in with the authenticator's code.
func TestTOTPRowHasTheDeviceNameAndAnOldRowIsCompletedOnce(t *testing.T) {
	e := newEnv(t, withResync(500*time.Millisecond))
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane@example.com", func(u *v1.User) {
		u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP}
	})
	e.create(u)
	id := e.waitUser(u, v1.ReasonReconciled).Status.UUID
	seed := totpSeed(t, e)
	e.waitReconciles("user", 2)
	updated := e.str("SELECT updated_at FROM verifications WHERE user_uuid = ? AND type = 'totp'", id)
	want := panel.DefaultTOTPDeviceName + "|" + panel.DefaultTOTPDeviceName + "|1|1|used at enrolment|" + updated
	if got := e.totpRowForm(id); got != want {
		t.Errorf("totp row\n got %s\nwant %s", got, want)
	}
	// Written in that form at enrolment: the email row and the totp row inserted, nothing rewritten.
	if n := e.tableStatistics()["verifications"].changed; n != 2 {
		t.Errorf("%d verifications rows changed creating the User, want 2 (the email and totp rows, inserted once)", n)
	}

	// The row as an older operator left it: no value, never used.
	e.shutdown()
	if _, err := e.db.Exec("UPDATE verifications SET `value` = NULL, `last_used_at` = NULL WHERE user_uuid = ? AND type = 'totp'",
		id); err != nil {
		t.Fatal(err)
	}
	before := e.dbStatements()
	e.start()
	e.eventually(30*time.Second, func() string {
		if v := e.str("SELECT COALESCE(`value`, '') FROM verifications WHERE user_uuid = ? AND type = 'totp'", id); v == "" {
			return "the totp row still has no value"
		}
		return ""
	})
	e.waitReconciles("user", 2)
	after := e.dbStatements()
	for _, c := range dbDataCounters {
		want := int64(0)
		if c == "Com_update" {
			want = 1
		}
		if n := after[c] - before[c]; n != want {
			t.Errorf("%s moved by %d while completing the old totp row, want %d", c, n, want)
		}
	}
	completed := e.totpRowForm(id)
	if !strings.HasPrefix(completed, panel.DefaultTOTPDeviceName+"|"+panel.DefaultTOTPDeviceName+"|1|1|used at enrolment|") {
		t.Errorf("completed totp row = %s", completed)
	}

	// Resyncs after that write nothing, and last_used_at does not move.
	e.waitReconciles("user", 3)
	final := e.dbStatements()
	for _, c := range dbWriteCounters {
		if n := final[c] - after[c]; n != 0 {
			t.Errorf("%s moved by %d during resyncs of a completed totp row", c, n)
		}
	}
	if got := e.totpRowForm(id); got != completed {
		t.Errorf("totp row moved during resyncs\n got %s\nwant %s", got, completed)
	}
	if msg := codeAsked(e.login("jane@example.com", testPassword, ""), "totp"); msg != "" {
		t.Error(msg)
	}
	if msg := loggedIn(e.login("jane@example.com", testPassword, oathtoolCode(t, seed, loginTime))); msg != "" {
		t.Error(msg)
	}
}

// A User that does not want TOTP reads no TOTP Secret while the Secret watch knows it has none:
// a reconcile that finds it in sync sends the API server no request but its status patch, if
// any (the password Secret's version is the watch's too). Before, each asked twice for a Secret
// that does not exist.
func TestUserWithoutTOTPReadsNoTOTPSecretWhenInSync(t *testing.T) {
	e := newEnv(t)
	u, _ := e.readyUser("jane")
	e.waitReconciles("user", 0)
	before := apiRequests(t)
	for i := range 3 {
		// An annotation change wakes the User (AnnotationChangedPredicate); the test's own client is
		// not the manager's, so the updates are not counted.
		start := e.reconcilesDone("user") // the reconcile may finish before the wait begins
		update(e, u, func(o *v1.User) { o.SetAnnotations(map[string]string{"example.com/touch": strconv.Itoa(i)}) })
		e.waitReconcilesSince("user", start, 1)
	}
	after := apiRequests(t)
	if d := after["GET"] - before["GET"]; d != 0 {
		t.Errorf("3 reconciles of a Ready User without TOTP sent %v GET requests, want none", d)
	}
}
