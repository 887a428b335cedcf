package controller_test

import (
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// sendEmailCode does what the panel's Verification::sendVerificationCode does at the first login
// step for a verified email row: a new 6-digit code and its expiry on the user's default row. It
// returns the number of rows it changed (0: the panel had no default email row to send from).
func (e *env) sendEmailCode(userUUID, code string) int64 {
	e.t.Helper()
	res, err := e.db.Exec("UPDATE verifications SET secret = ?, expires_at = FROM_UNIXTIME(?) "+
		"WHERE user_uuid = ? AND type = 'email' AND `default` = 1 AND verified = 1",
		code, loginTime.Add(10*time.Minute).Unix(), userUUID)
	if err != nil {
		e.t.Fatal(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// Email two-factor on a verified address logs the person in with the emailed code, as the panel
// decides it; the combination that would lock them out (email codes to an unverified address,
// which the panel neither sends nor accepts) is refused at apply time, for a new User and for an
// edit of a working one, and the refused edit changes nothing: the person still logs in.
func TestEmailTwoFactorLogsInWithAVerifiedAddressAndTheLockoutIsRefused(t *testing.T) {
	e := newEnv(t)
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane@example.com", func(u *v1.User) {
		u.Spec.EmailVerified = true
		u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodEmail}
	})
	e.create(u)
	id := e.waitUser(u, v1.ReasonReconciled).Status.UUID
	e.wantCodeAsked("jane's password alone", e.login("jane@example.com", testPassword, ""), "email")
	const code = "482915"
	if n := e.sendEmailCode(id, code); n != 1 {
		t.Fatalf("the panel could send a code from %d verified default email rows, want 1", n)
	}
	e.wantRefused("jane with a wrong emailed code", e.login("jane@example.com", testPassword, "111111"), 422,
		"Verification failed")
	e.wantLogsIn("jane with the emailed code", e.login("jane@example.com", testPassword, code))

	// The edit that would lock jane out is refused by the API server, naming the field.
	writes := e.count("SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ?", id)
	got := &v1.User{}
	if err := e.kube().Get(e.ctx(), client.ObjectKeyFromObject(u), got); err != nil {
		t.Fatal(err)
	}
	got.Spec.EmailVerified = false
	err := e.kube().Update(e.ctx(), got)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "emailVerified") {
		t.Fatalf("unverifying the address of Email two-factor: err = %v, want Invalid naming emailVerified", err)
	}
	e.settle()
	if n := e.count("SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ?", id) - writes; n != 0 {
		t.Errorf("the refused edit wrote %d activity rows", n)
	}
	const verifiedDefault = "SELECT COUNT(*) FROM verifications WHERE user_uuid = ? AND type = 'email' AND verified = 1 " +
		"AND `default` = 1"
	if n := e.count(verifiedDefault, id); n != 1 {
		t.Errorf("after the refused edit jane has %d verified default email rows, want 1", n)
	}
	e.wantLogsIn("jane after the refused edit", e.login("jane@example.com", testPassword, code))

	// A new User with the lock-out combination is refused too, and the panel gets no user.
	for _, method := range []v1.TwoFactorMethod{v1.TwoFactorMethodEmail, ""} {
		bob := e.newUser("bob", "bob@example.com", func(u *v1.User) {
			u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: method}
		})
		err := e.kube().Create(e.ctx(), bob)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "emailVerified") {
			t.Errorf("a new User with two-factor method %q and an unverified address: err = %v, want Invalid naming emailVerified",
				method, err)
		}
	}
	if n := e.count("SELECT COUNT(*) FROM users WHERE email = 'bob@example.com'"); n != 0 {
		t.Errorf("the refused User left %d panel users", n)
	}
}
