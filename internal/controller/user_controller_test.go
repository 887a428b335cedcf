package controller_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

func newUUID() string { return uuid.NewString() }

// storedHashVerifies checks a cleartext against the stored hash without printing either.
func (e *env) storedHashVerifies(userUUID, cleartext string) bool {
	e.t.Helper()
	h := e.str("SELECT password FROM users WHERE uuid = ?", userUUID)
	if !strings.HasPrefix(h, "$2y$") {
		e.t.Fatal("the stored hash lacks the $2y$ prefix")
	}
	return password.Verify(h, cleartext)
}

// phpVerifies asks PHP whether the cleartext matches the stored hash and the hash is one PHP takes
// for bcrypt ($2y$). The SQLite flow checks passwords with it; on MariaDB, e.login asks the
// panel's whole login decision instead.
func (e *env) phpVerifies(userUUID, cleartext string) bool {
	e.t.Helper()
	php, err := exec.LookPath("php")
	if err != nil {
		e.t.Fatal("php not found: install php-cli (`apt-get install php-cli`)")
	}
	cmd := exec.Command(php, "-r", `$in = explode("\n", stream_get_contents(STDIN));
echo password_verify($in[0], $in[1]) && password_get_info($in[1])["algoName"] === "bcrypt" ? "yes" : "no";`)
	cmd.Stdin = strings.NewReader(cleartext + "\n" + e.str("SELECT password FROM users WHERE uuid = ?", userUUID))
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("php: %v", err)
	}
	return string(out) == "yes"
}

func TestUserBecomesAPanelLoginWithStatus(t *testing.T) {
	e := newEnv(t)
	// The metrics are the process's, so earlier tests moved them too: what counts is the change.
	type metric struct {
		name   string
		labels map[string]string
		want   func(delta float64) bool
		expect string
	}
	exactly := func(n float64) func(float64) bool { return func(d float64) bool { return d == n } }
	watched := []metric{
		{"puq_user_operator_users", map[string]string{"panel_status": "NEW"}, exactly(1), "1: one more NEW user"},
		{"puq_user_operator_reconcile_outcomes_total", map[string]string{"kind": "User", "reason": "Reconciled"},
			func(d float64) bool { return d >= 1 }, "at least 1"},
		{"puq_user_operator_panel_db_operation_duration_seconds", map[string]string{"operation": "create_the_panel_user"},
			exactly(1), "1: one panel user created"},
		{"puq_user_operator_bcrypt_hash_duration_seconds", nil, exactly(1), "1: one password hashed"},
	}
	deltas := make([]func() float64, len(watched))
	for i, m := range watched {
		deltas[i] = metricDelta(t, m.name, m.labels)
	}
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "Jane.Doe@Example.com", func(u *v1.User) {
		u.Spec.Phone, u.Spec.AdminNotes, u.Spec.EmailVerified, u.Spec.PhoneVerified = "+48123456789", "OPS-1", true, true
	})
	e.create(u)
	got := e.waitUser(u, v1.ReasonReconciled)
	st := got.Status
	if st.UUID == "" || st.PanelStatus != "NEW" || st.TwoFactor != "Disabled" || !st.EmailVerified || !st.PhoneVerified ||
		st.ClientCount != 0 || st.PasswordUpdatedAt == nil || st.ObservedGeneration != got.Generation {
		t.Errorf("status = %+v", st)
	}
	row := e.str("SELECT CONCAT(email,'|',firstname,'|',lastname,'|',phone_number,'|',language,'|',admin_notes,'|',phone_verified) "+
		"FROM users WHERE uuid = ?", st.UUID)
	if row != "Jane.Doe@Example.com|Jane|Doe|+48123456789|en|OPS-1|1" {
		t.Errorf("users row = %s", row)
	}
	e.wantLogsIn("jane with the Secret's password", e.login("Jane.Doe@Example.com", testPassword, ""))
	e.wantRefused("jane with a wrong password", e.login("Jane.Doe@Example.com", "plum-Harbor-7-lanterns", ""),
		401, "Invalid email or password")
	e.waitEvent(got, "Created")
	if !contains(got.Finalizers, "panel.puqcloud.com/user") {
		t.Errorf("finalizers = %v", got.Finalizers)
	}
	if b, err := e.store.GetBinding(e.ctx(), st.UUID); err != nil || b.Name != "jane" || b.Namespace != e.ns {
		t.Errorf("binding = %+v, %v", b, err)
	}
	for i, m := range watched {
		if d := deltas[i](); !m.want(d) {
			t.Errorf("metric %s%v moved by %v while the User was created, want %s", m.name, m.labels, d, m.expect)
		}
	}
}

// metricDelta reads a metric (see metricValue) and returns a function that gives its change since.
func metricDelta(t *testing.T, name string, labels map[string]string) func() float64 {
	t.Helper()
	start := metricValue(t, name, labels)
	return func() float64 { return metricValue(t, name, labels) - start }
}

// metricValue sums a counter or gauge, or counts a histogram's samples, over the series that
// carry the labels.
func metricValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, mf := range gather(t) {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			switch {
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func TestEditingEachFieldUpdatesTheRow(t *testing.T) {
	e := newEnv(t)
	u, id := e.readyUser("jane")
	// After the email edit, jane logs in with the new address.
	const email = "jane.new@example.com"
	refusedAsDisabled := func(res testdb.LoginResult) string {
		if res.OK || res.Status != 401 || res.Message != "Your account is disabled" {
			return "want a refusal 401 \"Your account is disabled\", the panel answers " + loginOutcome(res)
		}
		return ""
	}
	asksForEmailCode := func(res testdb.LoginResult) string { return codeAsked(res, "email") }
	cases := []struct {
		name   string
		mutate func(*v1.User)
		column string
		want   string
	}{
		{"email", func(u *v1.User) { u.Spec.Email = email }, "email", email},
		{"first name", func(u *v1.User) { u.Spec.FirstName = "Janet" }, "firstname", "Janet"},
		{"last name", func(u *v1.User) { u.Spec.LastName = "Smith" }, "lastname", "Smith"},
		{"phone", func(u *v1.User) { u.Spec.Phone = "+380441234567" }, "phone_number", "+380441234567"},
		{"language", func(u *v1.User) { u.Spec.Language = "uk" }, "language", "uk"},
		{"admin notes", func(u *v1.User) { u.Spec.AdminNotes = "moved to team B" }, "admin_notes", "moved to team B"},
		{"phone verified", func(u *v1.User) { u.Spec.PhoneVerified = true }, "phone_verified", "1"},
		{"email verified", func(u *v1.User) { u.Spec.EmailVerified = true }, "email_verified", "1"},
		{"state inactive", func(u *v1.User) { u.Spec.State = v1.UserStateInactive }, "CONCAT(status, `disable`)", "inactive1"},
		{"state active", func(u *v1.User) { u.Spec.State = v1.UserStateActive }, "CONCAT(status, `disable`)", "active0"},
		// Last: with two-factor on, the login stops at the code and says nothing of the state.
		{"two-factor flag", func(u *v1.User) { u.Spec.TwoFactor.Enabled = true }, "two_factor", "1"},
	}
	// What the panel must answer to jane's email and password after these edits.
	logins := map[string]func(testdb.LoginResult) string{
		"email": loggedIn, "state inactive": refusedAsDisabled, "state active": loggedIn, "two-factor flag": asksForEmailCode,
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			update(e, u, tc.mutate)
			e.waitUser(u, v1.ReasonReconciled)
			// Ready at the new generation: the edit is in the panel.
			if judge := logins[tc.name]; judge != nil {
				if msg := judge(e.login(email, testPassword, "")); msg != "" {
					t.Errorf("jane's login after the %s edit: %s", tc.name, msg)
				}
			}
			e.eventually(10*time.Second, func() string {
				if got := e.str("SELECT "+tc.column+" FROM users WHERE uuid = ?", id); got != tc.want {
					return tc.column + " = " + got + ", want " + tc.want
				}
				return ""
			})
		})
	}
	got := e.waitUser(u, v1.ReasonReconciled)
	if got.Status.PanelStatus != "ACTIVE" || got.Status.TwoFactor != "Enabled" || !got.Status.EmailVerified {
		t.Errorf("status after edits = %+v", got.Status)
	}
	if n := e.count("SELECT COUNT(*) FROM verifications WHERE user_uuid = ? AND value = 'jane.new@example.com' AND verified = 1", id); n != 1 {
		t.Errorf("the new email's verification row: %d", n)
	}
}

func TestRotatingTheSecretSetsANewHashOnce(t *testing.T) {
	e := newEnv(t)
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane@example.com")
	e.create(u)
	first := e.waitUser(u, v1.ReasonReconciled)
	id := first.Status.UUID
	e.wantLogsIn("before the rotation, the first password", e.login("jane@example.com", testPassword, ""))
	rotated := "second-Quartz-river-88"
	e.setJanePassword(map[string]string{"password": rotated})
	e.eventually(20*time.Second, func() string {
		if msg := loggedIn(e.login("jane@example.com", rotated, "")); msg != "" {
			return "the rotated password does not log in yet: " + msg
		}
		return ""
	})
	e.wantRefused("after the rotation, the old password", e.login("jane@example.com", testPassword, ""),
		401, "Invalid email or password")
	got := e.waitUser(u, v1.ReasonReconciled)
	if got.Status.PasswordSecretVersion == first.Status.PasswordSecretVersion {
		t.Error("status does not record the new Secret version")
	}
	e.eventually(10*time.Second, func() string {
		if !contains(e.eventReasons(got), "PasswordChanged") {
			return "no PasswordChanged event"
		}
		return ""
	})
	// An unrelated edit does not hash again: the stored hash stays byte-for-byte the same.
	hash := e.str("SELECT password FROM users WHERE uuid = ?", id)
	update(e, u, func(u *v1.User) { u.Spec.AdminNotes = "unrelated" })
	e.eventually(10*time.Second, func() string {
		if e.str("SELECT admin_notes FROM users WHERE uuid = ?", id) != "unrelated" {
			return "admin notes not applied"
		}
		return ""
	})
	if e.str("SELECT password FROM users WHERE uuid = ?", id) != hash {
		t.Error("an unrelated edit re-hashed the password")
	}
}

func TestPasswordHashKeyIsStoredAs2y(t *testing.T) {
	e := newEnv(t)
	h, err := password.Hash("hash-only-Password-42", 4)
	if err != nil {
		t.Fatal(err)
	}
	e.secret("jane-password", map[string]string{"passwordHash": "$2b$" + h[4:]})
	u := e.newUser("jane", "jane@example.com", func(u *v1.User) { u.Spec.PasswordSecretRef.Key = v1.PasswordKeyHash })
	e.create(u)
	id := e.waitUser(u, v1.ReasonReconciled).Status.UUID
	if e.str("SELECT password FROM users WHERE uuid = ?", id) != h {
		t.Error("the hash was not stored as the same hash with the $2y$ prefix")
	}
	e.wantLogsIn("jane with the cleartext of the given hash", e.login("jane@example.com", "hash-only-Password-42", ""))
	e.wantRefused("jane with another password", e.login("jane@example.com", "hash-only-Password-43", ""),
		401, "Invalid email or password")
	e.setJanePassword(map[string]string{"passwordHash": "$2x$04$notahash"})
	got := e.waitUser(u, v1.ReasonInvalidPasswordHash)
	if e.str("SELECT password FROM users WHERE uuid = ?", id) != h {
		t.Error("a malformed hash replaced the stored one")
	}
	e.wantLogsIn("after a malformed hash, the previous password", e.login("jane@example.com", "hash-only-Password-42", ""))
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionStalled); c == nil || c.Status != "True" {
		t.Errorf("Stalled = %+v", c)
	}
}

func TestWeakPasswordKeepsTheOldHash(t *testing.T) {
	e := newEnv(t)
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane.doe@example.com")
	e.create(u)
	id := e.waitUser(u, v1.ReasonReconciled).Status.UUID
	hash := e.str("SELECT password FROM users WHERE uuid = ?", id)
	for _, weak := range []string{"short1", "password1234", "xx-jane.doe-2026"} {
		e.setJanePassword(map[string]string{"password": weak})
		got := e.waitUser(u, v1.ReasonWeakPassword)
		msg := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady).Message
		if strings.Contains(msg, weak) {
			t.Errorf("the condition repeats the password: %s", msg)
		}
		if e.str("SELECT password FROM users WHERE uuid = ?", id) != hash {
			t.Fatalf("weak password %d replaced the hash", len(weak))
		}
	}
	e.setJanePassword(map[string]string{"password": "strong-Enough-pass-99"})
	e.waitUser(u, v1.ReasonReconciled)
	if !e.storedHashVerifies(id, "strong-Enough-pass-99") {
		t.Error("the fixed password was not applied")
	}
}

func TestMissingSecretOrKeyWaitsThenProceeds(t *testing.T) {
	e := newEnv(t)
	u := e.newUser("jane", "jane@example.com")
	e.create(u)
	got := e.waitUser(u, v1.ReasonSecretNotFound)
	if got.Status.UUID != "" || e.count("SELECT COUNT(*) FROM users") != 0 {
		t.Error("something was written without a password")
	}
	if st := kstatus(t, got); st != status.FailedStatus {
		t.Errorf("kstatus of a User waiting for its Secret = %s, want Failed", st)
	}
	e.secret("jane-password", map[string]string{"pass": testPassword})
	e.waitUser(u, v1.ReasonSecretKeyMissing)
	e.setJanePassword(map[string]string{"password": testPassword})
	got = e.waitUser(u, v1.ReasonReconciled)
	if st := kstatus(t, got); st != status.CurrentStatus {
		t.Errorf("kstatus of a Ready User = %s, want Current", st)
	}
}

func TestUserWithDuplicateEmailWaitsForHolder(t *testing.T) {
	e := newEnv(t)
	e.secret("first-password", map[string]string{"password": testPassword})
	e.secret("second-password", map[string]string{"password": testPassword})
	first := e.newUser("first", "same@example.com")
	e.create(first)
	firstUUID := e.waitUser(first, v1.ReasonReconciled).Status.UUID
	// The holder is the oldest User, by creationTimestamp and then by namespace/name
	// (TestEmailHolderIsTheOldestThenByName). Timestamps have one-second resolution, so second may
	// tie with first; the names are chosen so that the tie-break names the same holder.
	second := e.newUser("second", "SAME@Example.com")
	e.create(second)
	got := e.waitUser(second, v1.ReasonDuplicateEmail)
	if msg := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady).Message; !strings.Contains(msg, e.ns+"/first") {
		t.Errorf("the message does not name the holder: %s", msg)
	}
	if n := e.count("SELECT COUNT(*) FROM users"); n != 1 {
		t.Errorf("%d panel users, want 1", n)
	}
	// The holder goes (its panel user with it); the waiting User proceeds untouched.
	if err := k8s.Delete(e.ctx(), first); err != nil {
		t.Fatal(err)
	}
	got = e.waitUser(second, v1.ReasonReconciled)
	if got.Status.UUID == firstUUID || e.count("SELECT COUNT(*) FROM users") != 1 {
		t.Errorf("after the holder left: uuid %s (holder's was %s)", got.Status.UUID, firstUUID)
	}
}

func TestEmailTakenInPanelUnlessAdopted(t *testing.T) {
	e := newEnv(t)
	hash, _ := password.Hash("panel-made-Password-1", 4)
	made := panel.DesiredUser{Email: "ops@example.com", FirstName: "Made", LastName: "InPanel"}
	existing, err := e.store.CreateUser(e.ctx(), made, hash, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.secret("ops-password", map[string]string{"password": testPassword})
	u := e.newUser("ops", "OPS@example.com")
	e.create(u)
	e.waitUser(u, v1.ReasonEmailTakenInPanel)
	if e.str("SELECT firstname FROM users WHERE uuid = ?", existing.UUID) != "Made" {
		t.Error("the panel user was changed without adoption")
	}
	update(e, u, func(u *v1.User) { u.Spec.Adoption = v1.AdoptionIfExists })
	got := e.waitUser(u, v1.ReasonReconciled)
	if got.Status.UUID != existing.UUID || e.str("SELECT firstname FROM users WHERE uuid = ?", existing.UUID) != "Jane" {
		t.Errorf("adoption: uuid %s, firstname %s", got.Status.UUID, e.str("SELECT firstname FROM users WHERE uuid = ?", existing.UUID))
	}
	if !e.storedHashVerifies(existing.UUID, testPassword) {
		t.Error("adoption did not set the password from the Secret")
	}
}

// The same manifests applied to a rebuilt cluster (a new etcd: new UIDs, no status) re-bind the
// panel users the old cluster's Users made, when the manager names the old cluster
// (--previous-cluster-id); the binding then records the new UID and cluster.
func TestReappliedUserRebindsThroughTheBindingTable(t *testing.T) {
	e := newEnv(t, withCluster("cluster-a"))
	u, id := e.readyUser("jane")
	// The cluster is lost: the resource vanishes without its finalizer running.
	e.shutdown()
	update(e, u, func(u *v1.User) { u.Finalizers = nil })
	if err := k8s.Delete(e.ctx(), u); err != nil {
		t.Fatal(err)
	}
	e.waitGone(u)
	// The same manifest is applied again (a new UID, no status) in the new cluster.
	e.opts.ClusterID, e.opts.PreviousClusterID = "cluster-b", "cluster-a"
	e.start()
	again := e.newUser("jane", "jane@example.com")
	e.create(again)
	got := e.waitUser(again, v1.ReasonReconciled)
	if got.Status.UUID != id {
		t.Errorf("re-applied User bound %s, want the original %s", got.Status.UUID, id)
	}
	if b, _ := e.store.GetBinding(e.ctx(), id); b.ResourceUID != string(got.UID) || b.ClusterID != "cluster-b" {
		t.Errorf("the binding records UID %s in cluster %q, want the new UID in cluster-b", b.ResourceUID, b.ClusterID)
	}
}

func TestTOTPOnOffOnIssuesANewSeed(t *testing.T) {
	e := newEnv(t)
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane@example.com", func(u *v1.User) {
		u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP}
	})
	e.create(u)
	got := e.waitUser(u, v1.ReasonReconciled)
	if got.Status.TOTPSecretName != "jane-totp" || got.Status.TwoFactor != "Enabled" {
		t.Fatalf("status = %+v", got.Status)
	}
	seed := totpSeed(t, e)
	if len(seed) != 32 {
		t.Fatalf("the seed has %d characters, want 32", len(seed))
	}
	const email = "jane@example.com"
	e.wantCodeAsked("jane's password alone", e.login(email, testPassword, ""), "totp")
	e.wantLogsIn("jane with the authenticator's code from the Secret's seed",
		e.login(email, testPassword, oathtoolCode(t, seed, loginTime)))
	e.wantRefused("jane with a wrong code", e.login(email, testPassword, codeNotAccepted(t, seed, loginTime)),
		422, "Verification failed")
	if n := e.count("SELECT COUNT(*) FROM verifications WHERE user_uuid = ? AND type = 'totp' AND `default` = 1 AND secret = ?",
		got.Status.UUID, seed); n != 1 {
		t.Errorf("%d default totp rows hold the Secret's seed, want 1", n)
	}
	// Off: row, Secret and flag go; email codes are the default again.
	update(e, u, func(u *v1.User) { u.Spec.TwoFactor = v1.TwoFactor{} })
	got = e.waitUser(u, v1.ReasonReconciled)
	e.eventually(10*time.Second, func() string {
		err := k8s.Get(e.ctx(), client.ObjectKey{Namespace: e.ns, Name: "jane-totp"}, &corev1.Secret{})
		if !apierrors.IsNotFound(err) {
			return "the TOTP Secret is still there"
		}
		return ""
	})
	if n := e.count("SELECT COUNT(*) FROM verifications WHERE user_uuid = ? AND type = 'totp'", got.Status.UUID); n != 0 {
		t.Errorf("%d totp rows left", n)
	}
	if e.str("SELECT type FROM verifications WHERE user_uuid = ? AND `default` = 1", got.Status.UUID) != "email" ||
		got.Status.TwoFactor != "Disabled" || got.Status.TOTPSecretName != "" {
		t.Errorf("after disabling: %+v", got.Status)
	}
	e.wantLogsIn("with two-factor off, jane's password alone", e.login(email, testPassword, ""))
	// On again: a different seed; the old seed's codes no longer log in, the new one's do.
	update(e, u, func(u *v1.User) { u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP} })
	e.waitUser(u, v1.ReasonReconciled)
	again := totpSeed(t, e)
	if again == seed {
		t.Fatal("re-enabling reused the old seed")
	}
	e.wantOnlyNewSeedLogsIn(email, seed, again)
	e.waitEvent(got, "TwoFactorEnrolled")
	e.waitEvent(got, "TwoFactorRemoved")
}

func totpSeed(t *testing.T, e *env) string {
	t.Helper()
	s := &corev1.Secret{}
	e.eventually(10*time.Second, func() string {
		if err := k8s.Get(e.ctx(), client.ObjectKey{Namespace: e.ns, Name: "jane-totp"}, s); err != nil {
			return err.Error()
		}
		return ""
	})
	if !strings.HasPrefix(string(s.Data["otpauth-url"]), "otpauth://totp/PUQcloud:jane@example.com?") || len(s.Data["qr.png"]) < 100 {
		t.Errorf("the TOTP Secret lacks a proper otpauth-url or qr.png")
	}
	return string(s.Data["secret"])
}

// totpPeriod is the TOTP time step of the panel (robthree/twofactorauth's default) and of oathtool.
const totpPeriod = 30 * time.Second

// oathtoolCode is the code an authenticator app shows for the seed at the instant, as oathtool
// computes it: an implementation independent of the operator's and of the login check's. The seed
// goes on stdin, never into argv.
func oathtoolCode(t *testing.T, seed string, at time.Time) string {
	t.Helper()
	path, err := exec.LookPath("oathtool")
	if err != nil {
		t.Fatal("oathtool not found: the TOTP logins use its codes; install it with `apt-get install oathtool`")
	}
	cmd := exec.Command(path, "--totp", "-b", "--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), "-")
	cmd.Stdin = strings.NewReader(seed + "\n")
	out, err := cmd.Output() // its stderr is dropped: it could repeat the seed
	if err != nil {
		t.Fatalf("oathtool failed: %v", err)
	}
	code := strings.TrimSpace(string(out))
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		t.Fatalf("oathtool printed %d characters, want a 6-digit code", len(code))
	}
	return code
}

// acceptedCodes are the codes the panel accepts for the seed at the instant: robthree's default
// window, one period either side.
func acceptedCodes(t *testing.T, seed string, at time.Time) []string {
	t.Helper()
	return []string{oathtoolCode(t, seed, at.Add(-totpPeriod)), oathtoolCode(t, seed, at), oathtoolCode(t, seed, at.Add(totpPeriod))}
}

// codeNotAccepted is a wrong code: six digits the panel cannot accept for the seed at the instant.
func codeNotAccepted(t *testing.T, seed string, at time.Time) string {
	t.Helper()
	accepted := acceptedCodes(t, seed, at)
	n, err := strconv.Atoi(accepted[1])
	if err != nil {
		t.Fatal(err)
	}
	for {
		n = (n + 1) % 1_000_000
		if code := fmt.Sprintf("%06d", n); !slices.Contains(accepted, code) {
			return code
		}
	}
}

func TestDeletionPolicies(t *testing.T) {
	e := newEnv(t)
	readyWith := func(name string, policy v1.UserDeletionPolicy) (*v1.User, string) {
		e.secret(name+"-password", map[string]string{"password": testPassword})
		u := e.newUser(name, name+"@example.com", func(u *v1.User) { u.Spec.DeletionPolicy = policy })
		e.create(u)
		return u, e.waitUser(u, v1.ReasonReconciled).Status.UUID
	}
	del, delID := readyWith("del", v1.UserDeletionDelete)
	keep, keepID := readyWith("keep", v1.UserDeletionRetain)
	off, offID := readyWith("off", v1.UserDeletionDisable)
	for _, u := range []*v1.User{del, keep, off} {
		if err := k8s.Delete(e.ctx(), u); err != nil {
			t.Fatal(err)
		}
		e.waitGone(u)
	}
	if n := e.count("SELECT COUNT(*) FROM users WHERE uuid = ?", delID); n != 0 {
		t.Error("Delete left the panel user")
	}
	if e.str("SELECT CONCAT(status, `disable`) FROM users WHERE uuid = ?", keepID) != "new0" {
		t.Error("Retain changed the panel user")
	}
	if e.str("SELECT CONCAT(status, `disable`) FROM users WHERE uuid = ?", offID) != "inactive1" {
		t.Error("Disable did not disable the panel user")
	}
	for _, id := range []string{keepID, offID} {
		if _, err := e.store.GetBinding(e.ctx(), id); err == nil {
			t.Error("a released panel user is still bound")
		}
	}
}

// blockedLookAgainWithin is how soon a deletion blocked by the panel must notice that the panel
// no longer blocks it: the operator looks again at least every 30s, plus time for the deletion.
const blockedLookAgainWithin = 40 * time.Second

func clientKey(o client.Object) client.ObjectKey { return client.ObjectKeyFromObject(o) }

func TestDatabaseOutageRetriesAndLosesNothing(t *testing.T) {
	e := newEnv(t)
	u, id := e.readyUser("jane")
	unavailableBefore := metricValue(t, "puq_user_operator_panel_db_operation_errors_total", map[string]string{"outcome": "unavailable"})
	if err := mariadb.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = mariadb.Start()
		}
	}()
	update(e, u, func(u *v1.User) { u.Spec.FirstName = "During-Outage" })
	got := &v1.User{}
	e.eventually(30*time.Second, func() string {
		if err := k8s.Get(e.ctx(), clientKey(u), got); err != nil {
			return err.Error()
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReconciling)
		if c == nil || c.Reason != v1.ReasonDatabaseUnavailable {
			return "no Reconciling=DatabaseUnavailable condition"
		}
		return ""
	})
	if st := kstatus(t, got); st != status.InProgressStatus {
		t.Errorf("kstatus during an outage = %s, want InProgress", st)
	}
	if metricValue(t, "puq_user_operator_panel_db_operation_errors_total", map[string]string{"outcome": "unavailable"}) <= unavailableBefore {
		t.Error("the outage did not show in panel_db_operation_errors_total{outcome=unavailable}")
	}
	if err := mariadb.Start(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	e.waitUser(u, v1.ReasonReconciled)
	if e.str("SELECT firstname FROM users WHERE uuid = ?", id) != "During-Outage" || !e.storedHashVerifies(id, testPassword) {
		t.Error("the edit made during the outage was lost, or the password changed")
	}
}

func TestUnsupportedLanguageWaitsWithoutWriting(t *testing.T) {
	e := newEnv(t)
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane@example.com", func(u *v1.User) { u.Spec.Language = "de" })
	e.create(u)
	got := e.waitUser(u, v1.ReasonUnsupportedLanguage)
	if msg := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady).Message; !strings.Contains(msg, "en, uk, pl, fr") {
		t.Errorf("message does not list the languages: %s", msg)
	}
	if e.count("SELECT COUNT(*) FROM users") != 0 {
		t.Error("a User with an unsupported language was written")
	}
}

func TestDuplicatePhoneIsReported(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"a", "b"} {
		e.secret(n+"-password", map[string]string{"password": testPassword})
	}
	a := e.newUser("a", "a@example.com", func(u *v1.User) { u.Spec.Phone = "+48111222333" })
	e.create(a)
	e.waitUser(a, v1.ReasonReconciled)
	b := e.newUser("b", "b@example.com", func(u *v1.User) { u.Spec.Phone = "+48111222333" })
	e.create(b)
	e.waitUser(b, v1.ReasonDuplicatePhone)
	if n := e.count("SELECT COUNT(*) FROM users"); n != 1 {
		t.Errorf("%d panel users, want 1: a refused create must leave nothing", n)
	}
}

// TestCanaryPasswordNeverLeaks sets recognisable secrets (a password, a weak password, a hash
// given under the passwordHash key, a malformed hash) and looks for them, for the hash stored in
// the panel and for the TOTP seed the operator issued, in everything the operator emits or writes
// outside the panel's own password and seed columns: its log, the process's stderr, events,
// status, /metrics, the panel's activity log and the binding table.
func TestCanaryPasswordNeverLeaks(t *testing.T) {
	stderr := captureStderr(t)
	e := newEnv(t)
	canary := "CANARY-zebra-Otter-4417"
	e.secret("jane-password", map[string]string{"password": canary})
	jane := e.newUser("jane", "jane@example.com", func(u *v1.User) {
		u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP}
	})
	e.create(jane)
	got := e.waitUser(jane, v1.ReasonReconciled)
	e.setJanePassword(map[string]string{"password": "CANARY-weak"})
	e.waitUser(jane, v1.ReasonWeakPassword)

	given, err := password.Hash("CANARY-given-Hash-9931", 4)
	if err != nil {
		t.Fatal(err)
	}
	byHash := func(u *v1.User) { u.Spec.PasswordSecretRef.Key = v1.PasswordKeyHash }
	e.secret("hashed-password", map[string]string{"passwordHash": "$2b$" + given[4:]})
	hashed := e.newUser("hashed", "hashed@example.com", byHash)
	e.create(hashed)
	e.waitUser(hashed, v1.ReasonReconciled)
	malformed := "CANARY-malformed-hash-value"
	e.secret("malformed-password", map[string]string{"passwordHash": "$2y$04$" + malformed})
	broken := e.newUser("malformed", "malformed@example.com", byHash)
	e.create(broken)
	e.waitUser(broken, v1.ReasonInvalidPasswordHash)

	stored := e.str("SELECT password FROM users WHERE uuid = ?", got.Status.UUID)
	seed := totpSeed(t, e)
	for _, reason := range []string{"Created", "TwoFactorEnrolled"} {
		e.waitEvent(jane, reason)
	}
	fmt.Fprintln(os.Stderr, "stderr-capture-check")
	e.shutdown() // everything the manager wrote is written
	haystacks := map[string]string{
		"manager log":           e.logs.String(),
		"stderr":                stderr(),
		"events":                e.allEventText(),
		"status":                e.allUserStatus(),
		"/metrics":              scrapeMetrics(t),
		"activity_logs":         e.tableText("activity_logs"),
		"puq_operator_bindings": e.tableText("puq_operator_bindings"),
	}
	// Each haystack holds what it should, so finding nothing in it means something.
	for where, want := range map[string]string{
		"manager log": "Created panel user", "stderr": "stderr-capture-check", "events": "TwoFactorEnrolled",
		"status": got.Status.UUID, "/metrics": "puq_user_operator_users", "activity_logs": got.Status.UUID,
		"puq_operator_bindings": got.Status.UUID,
	} {
		if !strings.Contains(haystacks[where], want) {
			t.Errorf("the %s lacks %q: the leak check would prove nothing there", where, want)
		}
	}
	needles := map[string]string{
		"password": canary, "weak password": "CANARY-weak", "stored hash": stored[7:],
		"hash from the passwordHash key": given[7:], "malformed passwordHash value": malformed, "TOTP seed": seed,
	}
	for what, needle := range needles {
		if len(needle) < 11 {
			t.Fatalf("the %s canary is only %d characters", what, len(needle))
		}
		for where, text := range haystacks {
			if strings.Contains(text, needle) {
				t.Errorf("the %s appears in the %s", what, where)
			}
		}
	}
}

// allUserStatus is the status of every User in the namespace, as JSON.
func (e *env) allUserStatus() string {
	e.t.Helper()
	var list v1.UserList
	if err := k8s.List(e.ctx(), &list, client.InNamespace(e.ns)); err != nil {
		e.t.Fatal(err)
	}
	var b strings.Builder
	for _, u := range list.Items {
		raw, err := json.Marshal(u.Status)
		if err != nil {
			e.t.Fatal(err)
		}
		b.Write(raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// tableText is every row of a table, every column as text.
func (e *env) tableText(table string) string {
	e.t.Helper()
	rows, err := e.db.Query("SELECT * FROM " + table) // a table name from the test, not input
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	cols, err := rows.Columns()
	if err != nil {
		e.t.Fatal(err)
	}
	var b strings.Builder
	for rows.Next() {
		values := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range values {
			ptrs[i] = &values[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			e.t.Fatal(err)
		}
		for _, v := range values {
			b.WriteString(v.String + "\t")
		}
		b.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return b.String()
}

// scrapeMetrics is the text the manager's /metrics endpoint serves: the controller-runtime
// registry through the same promhttp handler.
func scrapeMetrics(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).
		ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics answered %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// captureStderr points the process's file descriptor 2 at a pipe until the returned function is
// called (or the test ends), so what anything in the process writes there (klog, client-go, the
// runtime) can be searched; the function returns it. Nothing captured is echoed.
func captureStderr(t *testing.T) func() string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := unix.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup2(int(w.Fd()), 2); err != nil {
		t.Fatal(err)
	}
	buf := &testenv.Output{}
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(buf, r)
		close(copied)
	}()
	restore := sync.OnceFunc(func() {
		_ = unix.Dup2(saved, 2)
		_ = unix.Close(saved)
		_ = w.Close()
		<-copied
		_ = r.Close()
	})
	t.Cleanup(restore)
	return func() string {
		restore()
		return buf.String()
	}
}

// TestNoOpResyncWritesNothing counts, over resyncs of a Ready User with a TOTP seed (the resync
// reconciles those every pass, since their seed lives in a Secret), what the bench counts: bcrypt
// calls; data-changing statements on the panel database (MariaDB's Com_* counters) and rows
// changed per table; the manager's write requests to the API server (client-go's request
// counter by method: a status write, an Event, or rewriting the TOTP Secret); and emitted events.
func TestNoOpResyncWritesNothing(t *testing.T) {
	e := newEnv(t, withResync(500*time.Millisecond))
	hashes := metricDelta(t, "puq_user_operator_bcrypt_hash_duration_seconds", nil)
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane@example.com", func(u *v1.User) {
		u.Spec.TwoFactor = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP}
		u.Spec.State = v1.UserStateActive
	})
	e.create(u)
	e.waitUser(u, v1.ReasonReconciled)
	// Settled, counted rather than slept: two more reconciles finished, nothing queued or running.
	e.waitReconciles("user", 2)
	if n := hashes(); n != 1 {
		t.Errorf("creating a User hashed its password %v times, want exactly 1", n)
	}
	if n := e.eventsEmitted("PasswordChanged"); n != 0 {
		t.Errorf("a new User got %d PasswordChanged events (a second write of the same password)", n)
	}
	before := e.effects(u)
	e.waitReconciles("user", 3)
	after := e.effects(u)

	if n := after.hashes - before.hashes; n != 0 {
		t.Errorf("%v bcrypt calls during no-op resyncs", n)
	}
	for _, c := range dbWriteCounters {
		if n := after.statements[c] - before.statements[c]; n != 0 {
			t.Errorf("%s moved by %d during no-op resyncs", c, n)
		}
	}
	read := int64(0)
	for table, st := range after.tables {
		read += st.read - before.tables[table].read
		if n := st.changed - before.tables[table].changed; n != 0 {
			t.Errorf("%d rows of %s changed during no-op resyncs", n, table)
		}
	}
	if read == 0 {
		t.Error("no rows of the panel database were read during the resyncs: the statement counts would prove nothing")
	}
	for _, m := range apiWriteMethods {
		if n := after.api[m] - before.api[m]; n != 0 {
			t.Errorf("the manager sent %v %s requests to the API server during no-op resyncs", n, m)
		}
	}
	if after.api["GET"] == before.api["GET"] {
		t.Error("the manager sent no GET during the resyncs (each reads the TOTP Secret): the request counts would prove nothing")
	}
	if after.events != before.events {
		t.Errorf("%d events emitted during no-op resyncs", after.events-before.events)
	}
	if after.userVersion != before.userVersion || after.totpVersion != before.totpVersion {
		t.Errorf("API objects changed during no-op resyncs: User %s -> %s, TOTP Secret %s -> %s",
			before.userVersion, after.userVersion, before.totpVersion, after.totpVersion)
	}
}

// effects is what a test counts of the manager's work at one moment.
type effects struct {
	hashes                   float64
	statements               map[string]int64
	tables                   map[string]tableStats
	api                      map[string]float64
	events                   int
	userVersion, totpVersion string // resourceVersion; the Secret's with its UID, so a re-creation shows
}

func (e *env) effects(u *v1.User) effects {
	e.t.Helper()
	got, seed := &v1.User{}, &corev1.Secret{}
	if err := k8s.Get(e.ctx(), clientKey(u), got); err != nil {
		e.t.Fatal(err)
	}
	if err := k8s.Get(e.ctx(), client.ObjectKey{Namespace: e.ns, Name: got.Status.TOTPSecretName}, seed); err != nil {
		e.t.Fatal(err)
	}
	return effects{
		hashes:      metricValue(e.t, "puq_user_operator_bcrypt_hash_duration_seconds", nil),
		statements:  e.dbStatements(),
		tables:      e.tableStatistics(),
		api:         apiRequests(e.t),
		events:      e.eventsEmitted(""),
		userVersion: got.ResourceVersion,
		totpVersion: string(seed.UID) + "/" + seed.ResourceVersion,
	}
}

func gather(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	var g prometheus.Gatherer = metrics.Registry
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// kstatus computes what Argo CD, Flux and kubectl's kstatus see.
func kstatus(t *testing.T, u *v1.User) status.Status {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		t.Fatal(err)
	}
	return res.Status
}

func TestMainFlowOnSQLite(t *testing.T) {
	e := newSQLiteEnv(t)
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane@example.com", func(u *v1.User) { u.Spec.EmailVerified = true })
	e.create(u)
	id := e.waitUser(u, v1.ReasonReconciled).Status.UUID
	if !e.phpVerifies(id, testPassword) {
		t.Error("PHP does not accept the stored password")
	}
	e.setJanePassword(map[string]string{"password": "second-Quartz-river-88"})
	e.eventually(20*time.Second, func() string {
		if !e.storedHashVerifies(id, "second-Quartz-river-88") {
			return "rotation not applied"
		}
		return ""
	})
	update(e, u, func(u *v1.User) { u.Spec.LastName = "Smith" })
	e.eventually(10*time.Second, func() string {
		if e.str("SELECT lastname FROM users WHERE uuid = ?", id) != "Smith" {
			return "edit not applied"
		}
		return ""
	})
	if err := k8s.Delete(e.ctx(), u); err != nil {
		t.Fatal(err)
	}
	e.waitGone(u)
	if e.count("SELECT COUNT(*) FROM users") != 0 {
		t.Error("the panel user was not deleted")
	}
}

func TestPanelUserDeletedInThePanelIsCreatedAgain(t *testing.T) {
	e := newEnv(t)
	u, id := e.readyUser("jane")
	if _, err := e.db.Exec("DELETE FROM users WHERE uuid = ?", id); err != nil {
		t.Fatal(err)
	}
	update(e, u, func(u *v1.User) { u.Spec.AdminNotes = "wake up" })
	var got *v1.User
	e.eventually(30*time.Second, func() string {
		got = e.waitUser(u, v1.ReasonReconciled)
		if got.Status.UUID == id || got.Status.UUID == "" {
			return "not recreated yet"
		}
		return ""
	})
	notes := e.str("SELECT admin_notes FROM users WHERE uuid = ?", got.Status.UUID)
	if !e.storedHashVerifies(got.Status.UUID, testPassword) || notes != "wake up" {
		t.Error("the recreated panel user lacks the password or the fields")
	}
}

// The resync compares Ready Users with the panel in batches: an unchanged User costs no reconcile;
// a field edited with raw SQL is repaired, a panel status moved by a first login, and a client
// associated in the panel UI show up in status, each within a resync period.
func TestResyncReconcilesOnlyWhatDrifted(t *testing.T) {
	e := newEnv(t, withResync(500*time.Millisecond))
	u, id := e.readyUser("jane")
	// Settled, counted rather than slept: a resync pass has found the User in sync, and the User
	// controller has nothing queued or running.
	inSync := map[string]string{"result": "in_sync"}
	compared := metricDelta(t, "puq_user_operator_resync_users_total", inSync)
	e.eventually(10*time.Second, func() string {
		if _, idle := reconciles(t, e.controller("user")); compared() < 1 || !idle {
			return fmt.Sprintf("the resync compared the User %v times; the User controller idle: %v", compared(), idle)
		}
		return ""
	})
	reconciled := metricDelta(t, "controller_runtime_reconcile_total", map[string]string{"controller": e.controller("user")})
	queued := metricDelta(t, "puq_user_operator_resync_users_total", map[string]string{"result": "reconcile"})
	compared = metricDelta(t, "puq_user_operator_resync_users_total", inSync)
	e.eventually(10*time.Second, func() string {
		if n := compared(); n < 3 {
			return fmt.Sprintf("the resync compared the User %v times, want 3 passes", n)
		}
		return ""
	})
	if n, q := reconciled(), queued(); n != 0 || q != 0 {
		t.Errorf("an unchanged User was reconciled %v times (%v queued by the resync) over 3 resync passes", n, q)
	}
	acme := e.insertClient("Acme Hosting Ltd")
	if _, err := e.db.Exec("INSERT INTO client_x_user (client_uuid, user_uuid, owner, permissions) VALUES (?, ?, 0, '[]')",
		acme, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec("UPDATE users SET firstname = 'Mallory', status = 'active' WHERE uuid = ?", id); err != nil {
		t.Fatal(err)
	}
	e.eventually(10*time.Second, func() string {
		got := e.waitUser(u, v1.ReasonReconciled)
		if first := e.str("SELECT firstname FROM users WHERE uuid = ?", id); first != "Jane" {
			return "firstname not repaired: " + first
		}
		if got.Status.PanelStatus != "ACTIVE" || got.Status.ClientCount != 1 || got.Status.Clients[0].UUID != acme {
			return fmt.Sprintf("status not updated: %s, %d clients", got.Status.PanelStatus, got.Status.ClientCount)
		}
		return ""
	})
	e.waitEvent(u, "DriftCorrected")
}

// wantOnlyNewSeedLogsIn checks that, after a re-issue, jane's code from the old seed is refused
// and her code from the new seed logs in. The instant is one at which the old seed's code is none
// the new seed gives (two random seeds share a code now and then), so the refusal is the old
// seed's, not chance's.
func (e *env) wantOnlyNewSeedLogsIn(email, oldSeed, newSeed string) {
	e.t.Helper()
	at := loginTime
	for slices.Contains(acceptedCodes(e.t, newSeed, at), oathtoolCode(e.t, oldSeed, at)) {
		at = at.Add(3 * totpPeriod)
	}
	e.wantRefused("jane with the old seed's code", e.loginAt(at, email, testPassword, oathtoolCode(e.t, oldSeed, at)),
		422, "Verification failed")
	e.wantLogsIn("jane with the new seed's code", e.loginAt(at, email, testPassword, oathtoolCode(e.t, newSeed, at)))
}
