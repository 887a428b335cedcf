package testdb_test

import (
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	uuidgen "github.com/google/uuid"

	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
)

// The rows below are made the panel's way: the password hashed by PHP as Laravel's Hash::make
// does (bcrypt, $2y$, cost 12); the email verification row as the User model's retrieved hook
// creates it and makes it the default; the authenticator row as the client area's enrolment
// (UserController::postVerificationTotpAdd) and Verification::makeDefault write it.

const (
	janeEmail    = "jane.doe@example.com"
	janePassword = "plum-Harbor-7-lantern"
	// seed is a test seed in robthree's form: 32 characters of A-Z2-7.
	seed = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
)

// attemptAt is when every attempt here is made, so TOTP codes are fixed.
var attemptAt = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// panelHash is the hash of janePassword as the panel makes it, made once.
var panelHash = sync.OnceValues(func() (string, error) { return phpHash(janePassword) })

// phpHash hashes with PHP's password_hash at Laravel's cost; the password goes in on stdin.
func phpHash(cleartext string) (string, error) {
	cmd := exec.Command("php", "-n", "-r", `echo password_hash(stream_get_contents(STDIN), PASSWORD_BCRYPT, ["cost" => 12]);`)
	cmd.Stdin = strings.NewReader(cleartext)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("php password_hash failed (install php-cli): %w", err)
	}
	return string(out), nil
}

func hashOf(t *testing.T) string {
	t.Helper()
	h, err := panelHash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// panelUser is a users row and its email verification row.
type panelUser struct {
	email, hash, status    string
	twoFactor, disable     bool
	emailVerified, noEmail bool // noEmail: no verification row at all
	emailDefault           bool
	emailCode              string
	emailCodeExpiresIn     time.Duration // expires_at after attemptAt; 0: expired now, as the hook writes it
}

func jane(t *testing.T) panelUser {
	return panelUser{email: janeEmail, hash: hashOf(t), status: "new", emailDefault: true, emailCode: "482913"}
}

func freshPanel(t *testing.T) *sql.DB {
	t.Helper()
	p, err := mariadb.NewPanel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Root.Close() })
	return p.Root
}

func b(v bool) int {
	if v {
		return 1
	}
	return 0
}

// stamp is a timestamp as the panel writes it (Y-m-d H:i:s, APP_TIMEZONE UTC here).
func stamp(t time.Time) string { return t.UTC().Format(time.DateTime) }

func insertUser(t *testing.T, db *sql.DB, u panelUser) string {
	t.Helper()
	id := uuidgen.NewString()
	now := stamp(attemptAt.Add(-time.Hour))
	if _, err := db.Exec("INSERT INTO users (uuid, email, password, status, two_factor, `disable`, firstname, lastname, "+
		"email_verified, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'Jane', 'Doe', ?, ?, ?)",
		id, u.email, u.hash, u.status, b(u.twoFactor), b(u.disable), b(u.emailVerified), now, now); err != nil {
		t.Fatal(err)
	}
	if u.noEmail {
		return id
	}
	if _, err := db.Exec("INSERT INTO verifications (uuid, user_uuid, type, value, secret, device_name, verified, "+
		"`default`, expires_at, created_at, updated_at) VALUES (?, ?, 'email', ?, ?, 'system', ?, ?, ?, ?, ?)",
		uuidgen.NewString(), id, u.email, u.emailCode, b(u.emailVerified), b(u.emailDefault),
		stamp(attemptAt.Add(u.emailCodeExpiresIn)), now, now); err != nil {
		t.Fatal(err)
	}
	return id
}

// addTOTP enrols an authenticator as the client area does; makeDefault as Verification::makeDefault.
func addTOTP(t *testing.T, db *sql.DB, userUUID, secret string, makeDefault bool) {
	t.Helper()
	now := stamp(attemptAt.Add(-time.Hour))
	id := uuidgen.NewString()
	if _, err := db.Exec("INSERT INTO verifications (uuid, user_uuid, type, value, secret, device_name, verified, "+
		"last_used_at, created_at, updated_at) VALUES (?, ?, 'totp', 'Phone', ?, 'Phone', 1, ?, ?, ?)",
		id, userUUID, secret, now, now, now); err != nil {
		t.Fatal(err)
	}
	if !makeDefault {
		return
	}
	if _, err := db.Exec("UPDATE verifications SET `default` = 0 WHERE user_uuid = ?", userUUID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE verifications SET `default` = 1, verified = 1 WHERE uuid = ?", id); err != nil {
		t.Fatal(err)
	}
}

// oathtool is the authenticator app: the code for secret at a time, the seed given on stdin.
func oathtool(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	cmd := exec.Command("oathtool", "--totp", "-b", "--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), "-")
	cmd.Stdin = strings.NewReader(secret)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("oathtool failed (install it with `apt-get install oathtool`): %v", err)
	}
	return strings.TrimSpace(string(out))
}

func attempt(t *testing.T, db *sql.DB, email, pw, code string) testdb.LoginResult {
	t.Helper()
	res, err := testdb.Login{Email: email, Password: pw, Code: code, At: attemptAt}.Try(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func wantOK(t *testing.T, what string, res testdb.LoginResult) {
	t.Helper()
	if !res.OK || res.Status != 200 || res.Message != "Successful authorization" {
		t.Errorf("%s: want a login, got %+v", what, res)
	}
}

func wantRefused(t *testing.T, what string, res testdb.LoginResult, status int, message string) {
	t.Helper()
	if res.OK || res.Status != status || res.Message != message {
		t.Errorf("%s: want %d %q, got %+v", what, status, message, res)
	}
}

func TestLoginFindsTheUserAsTheEmailCollationDoes(t *testing.T) {
	db := freshPanel(t)
	insertUser(t, db, jane(t))
	wantOK(t, "the email as stored", attempt(t, db, janeEmail, janePassword, ""))
	// utf8mb4_unicode_ci: case and accents do not matter.
	wantOK(t, "the email in capitals and with an accent", attempt(t, db, "Jane.Doé@EXAMPLE.com", janePassword, ""))
}

func TestLoginRefusesAWrongPasswordAndAnUnknownEmail(t *testing.T) {
	db := freshPanel(t)
	insertUser(t, db, jane(t))
	wantRefused(t, "wrong password", attempt(t, db, janeEmail, "plum-Harbor-7-lanterns", ""), 401, "Invalid email or password")
	wantRefused(t, "unknown email", attempt(t, db, "john@example.com", janePassword, ""), 401, "Invalid email or password")
}

func TestLoginFailsOnABcryptHashWithoutThe2yPrefixAsLaravelDoes(t *testing.T) {
	db := freshPanel(t)
	u := jane(t)
	h, err := password.Hash(janePassword, 4)
	if err != nil {
		t.Fatal(err)
	}
	u.hash = "$2a$" + h[4:] // the same hash as Go's bcrypt writes it
	insertUser(t, db, u)
	wantRefused(t, "a $2a$ hash", attempt(t, db, janeEmail, janePassword, ""), 500,
		"This password does not use the Bcrypt algorithm.")
	if _, err := db.Exec("UPDATE users SET password = ?", h); err != nil {
		t.Fatal(err)
	}
	wantOK(t, "the same hash as $2y$", attempt(t, db, janeEmail, janePassword, ""))
}

func TestLoginRefusesADisabledUserWithThePanelsMessage(t *testing.T) {
	db := freshPanel(t)
	u := jane(t)
	u.disable = true
	insertUser(t, db, u)
	wantRefused(t, "disable=1", attempt(t, db, janeEmail, janePassword, ""), 401, "Your account is disabled")
}

func TestLoginIgnoresStatusInactive(t *testing.T) {
	db := freshPanel(t)
	u := jane(t)
	u.status = "inactive"
	insertUser(t, db, u)
	wantOK(t, "status inactive, disable 0", attempt(t, db, janeEmail, janePassword, ""))
}

func TestLoginChecksTheFormBeforeTheDatabase(t *testing.T) {
	db := freshPanel(t)
	u := jane(t)
	h, err := phpHash("abc12")
	if err != nil {
		t.Fatal(err)
	}
	u.hash = h
	insertUser(t, db, u)
	wantRefused(t, "a 5-character password, even the right one", attempt(t, db, janeEmail, "abc12", ""), 422,
		"Password must be at least 6 characters")
}

func TestLoginWithTOTPNeedsTheAuthenticatorsCode(t *testing.T) {
	db := freshPanel(t)
	u := jane(t)
	u.twoFactor = true
	addTOTP(t, db, insertUser(t, db, u), seed, true)

	res := attempt(t, db, janeEmail, janePassword, "")
	if res.OK || res.Status != 200 || !res.TwoFactorRequired || res.Method != "totp" || res.Message != "" {
		t.Errorf("no code yet: want the panel to ask for the app's code, got %+v", res)
	}
	wantOK(t, "the code of now", attempt(t, db, janeEmail, janePassword, oathtool(t, seed, attemptAt)))
	// robthree's default window: one 30 s period either side, no more.
	wantOK(t, "the code of 30 s ago", attempt(t, db, janeEmail, janePassword, oathtool(t, seed, attemptAt.Add(-30*time.Second))))
	wantOK(t, "the code of 30 s ahead", attempt(t, db, janeEmail, janePassword, oathtool(t, seed, attemptAt.Add(30*time.Second))))
	wantRefused(t, "the code of 60 s ago", attempt(t, db, janeEmail, janePassword,
		oathtool(t, seed, attemptAt.Add(-60*time.Second))), 422, "Verification failed")
	wantRefused(t, "a wrong code", attempt(t, db, janeEmail, janePassword, oathtool(t, seed, attemptAt.Add(time.Hour))),
		422, "Verification failed")
	wantRefused(t, "the right code and a wrong password", attempt(t, db, janeEmail, "plum-Harbor-7-lanterns",
		oathtool(t, seed, attemptAt)), 401, "Invalid email or password")
}

func TestLoginWithTOTPRefusesASeedOutsideRobThreesAlphabet(t *testing.T) {
	db := freshPanel(t)
	u := jane(t)
	u.twoFactor = true
	lower := strings.ToLower(seed) // oathtool takes it; robthree's decoder does not
	addTOTP(t, db, insertUser(t, db, u), lower, true)
	wantRefused(t, "a lowercase seed", attempt(t, db, janeEmail, janePassword, oathtool(t, lower, attemptAt)), 500,
		"Invalid base32 string")
}

func TestLoginWithAnEmailDefaultNeedsAVerifiedRowAndALiveCode(t *testing.T) {
	for _, c := range []struct {
		name      string
		verified  bool
		expiresIn time.Duration
		ok        bool
	}{
		{"unverified row, code just emailed", false, 10 * time.Minute, false},
		{"verified row, code just emailed", true, 10 * time.Minute, true},
		{"verified row, code expired", true, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := freshPanel(t)
			u := jane(t)
			u.twoFactor = true
			u.emailVerified = c.verified
			u.emailCodeExpiresIn = c.expiresIn
			insertUser(t, db, u)
			res := attempt(t, db, janeEmail, janePassword, u.emailCode)
			if res.Method != "email" || !res.TwoFactorRequired {
				t.Errorf("want the code checked against the email row, got %+v", res)
			}
			if c.ok {
				wantOK(t, "the emailed code", res)
			} else {
				wantRefused(t, "the emailed code", res, 422, "Verification failed")
			}
		})
	}
}

func TestLoginWithoutADefaultVerificationChecksTheEmailRow(t *testing.T) {
	// The panel's retrieved hook runs first and makes the current email's row the default (and
	// creates it, unverified, when missing), so "Verification method for two-factor
	// authentication not set" never comes: the authenticator's right code is refused.
	for name, noEmail := range map[string]bool{"email row not default": false, "no email row": true} {
		t.Run(name, func(t *testing.T) {
			db := freshPanel(t)
			u := jane(t)
			u.twoFactor = true
			u.emailDefault = false
			u.noEmail = noEmail
			addTOTP(t, db, insertUser(t, db, u), seed, false)
			res := attempt(t, db, janeEmail, janePassword, oathtool(t, seed, attemptAt))
			wantRefused(t, "the authenticator's code", res, 422, "Verification failed")
			if res.Method != "email" {
				t.Errorf("want the code checked against the email row, got %+v", res)
			}
		})
	}
}
