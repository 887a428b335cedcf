package testdb

import (
	"bytes"
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// loginScript is the panel's login decision in PHP (see the comment at its top).
//
//go:embed login.php
var loginScript string

// LoginResult is the panel's answer to one login attempt.
type LoginResult struct {
	// OK: the panel logs the person in.
	OK bool `json:"ok"`
	// Status is the HTTP status of the panel's answer (200, 401, 404, 422, or 500 for an
	// exception the panel does not catch).
	Status int `json:"status"`
	// Message is the panel's (English) message: "Successful authorization", "Invalid email or
	// password", "Your account is disabled", "Verification failed", the validator's message, or
	// the uncaught exception's ("This password does not use the Bcrypt algorithm.", "Invalid
	// base32 string"). Empty when the panel asks for the two-factor code.
	Message string `json:"message"`
	// TwoFactorRequired: the user has two_factor=1, so the panel asked for or checked a code.
	TwoFactorRequired bool `json:"two_factor"`
	// Method is the type of the default verification row the code is checked against ("totp",
	// "email"); empty when no code was involved.
	Method string `json:"method"`
}

// Login is one attempt at the panel's client-area login form.
type Login struct {
	// Email and Password are what the person types.
	Email, Password string
	// Code is the two-factor code typed at the second step; empty: none yet (the panel then
	// asks for it and logs no one in).
	Code string
	// At is when the attempt is made: the TOTP window and email-code expiry are taken from it.
	// Zero: now.
	At time.Time
	// Timezone is the panel's APP_TIMEZONE, in which it reads verifications.expires_at. Nil: UTC.
	Timezone *time.Location
}

// CanLogIn answers "can this person log in to the panel now?" the way the PUQcloud 1.3.0 client
// area decides it (AuthController::postLogin): the user looked up by email with the database's
// own comparison (its collation: case and accents do not matter), the password checked with
// Laravel 12's bcrypt rules (only PHP's $2y$ counts as bcrypt: a $2a$ hash makes the panel fail
// with "This password does not use the Bcrypt algorithm."), the two-factor code when
// users.two_factor=1 checked against the default verification row (only a verified row accepts
// one; a TOTP code with robthree/twofactorauth's rules; the panel's `retrieved` hook first makes
// the current email's row the default when there is none), then `disable`. `status` is not
// checked. code empty means no code typed yet. db is a connection to the MariaDB/MySQL panel
// database (testdb.Panel.Root, or the tests' direct connection); nothing is written to it.
//
// The decision runs in php-cli from the embedded login.php; the rows it needs are read here and
// handed over on stdin with the password, so no password, hash, code or seed reaches argv, the
// environment or any output. Example, in a controller test:
//
//	res, err := testdb.CanLogIn(ctx, e.db, "jane.doe@example.com", "plum-Harbor-7-lantern", "")
//	if err != nil {
//		t.Fatal(err)
//	}
//	if !res.OK {
//		t.Errorf("the panel refuses jane: %d %s", res.Status, res.Message)
//	}
//
// With two-factor authentication, the second step carries a code, e.g. from oathtool:
//
//	res, err = testdb.Login{Email: email, Password: pw, Code: code, At: at}.Try(ctx, e.db)
func CanLogIn(ctx context.Context, db *sql.DB, email, password, code string) (LoginResult, error) {
	return Login{Email: email, Password: password, Code: code}.Try(ctx, db)
}

// loginRequest is the first document PHP reads.
type loginRequest struct {
	Email    string  `json:"email"`
	Password string  `json:"password"`
	Code     *string `json:"code"`
	Now      int64   `json:"now"`
	Timezone string  `json:"timezone"`
}

// loginRows is the second: the user's row and verification rows, as the panel's queries see them.
type loginRows struct {
	User          *loginUser          `json:"user"`
	Verifications []loginVerification `json:"verifications"`
}

type loginUser struct {
	Password  string `json:"password"`
	Status    string `json:"status"`
	TwoFactor int64  `json:"two_factor"`
	Disable   int64  `json:"disable"`
}

type loginVerification struct {
	Type         string `json:"type"`
	CurrentEmail bool   `json:"current_email"`
	Secret       string `json:"secret"`
	Verified     int64  `json:"verified"`
	Default      int64  `json:"default"`
	ExpiresAt    *int64 `json:"expires_at"`
}

// loginReply is what PHP answers: a lookup to make, the result, or its own failure.
type loginReply struct {
	Lookup *string      `json:"lookup"`
	Result *LoginResult `json:"result"`
	Error  string       `json:"error"`
}

// Try makes the attempt; see CanLogIn.
func (l Login) Try(ctx context.Context, db *sql.DB) (LoginResult, error) {
	php, err := exec.LookPath("php")
	if err != nil {
		return LoginResult{}, errors.New("php not found: the login check runs the panel's rules in php-cli; " +
			"install it with `apt-get install php-cli` (or run `make test-deps` as root)")
	}
	at, loc := l.At, l.Timezone
	if at.IsZero() {
		at = time.Now()
	}
	if loc == nil {
		loc = time.UTC
	}
	if loc.String() == "Local" {
		return LoginResult{}, errors.New("the login check needs a named timezone (APP_TIMEZONE), not time.Local")
	}
	req := loginRequest{Email: l.Email, Password: l.Password, Now: at.Unix(), Timezone: loc.String()}
	if l.Code != "" {
		req.Code = &l.Code
	}

	// No php.ini: the same PHP everywhere; exceptions never carry arguments into a trace.
	cmd := exec.CommandContext(ctx, php, "-n", "-d", "zend.exception_ignore_args=1", "-d", "display_errors=stderr",
		"-d", "log_errors=0", "-r", strings.TrimPrefix(loginScript, "<?php"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return LoginResult{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return LoginResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return LoginResult{}, fmt.Errorf("cannot start php: %w", err)
	}
	secrets := []string{l.Password, l.Code}
	res, err := converse(ctx, db, req, json.NewEncoder(stdin), json.NewDecoder(stdout), &secrets)
	_ = stdin.Close()
	_, _ = io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	if err == nil && waitErr != nil {
		err = fmt.Errorf("php failed: %w", waitErr)
	}
	if err != nil {
		// Rebuilt from text, so that nothing in it can hold a secret.
		return LoginResult{}, errors.New(redact(err.Error()+stderrSuffix(stderr.String()), secrets))
	}
	return res, nil
}

// converse sends the attempt, answers the script's lookup with the rows, and reads the result.
// Every secret read from the database is added to secrets, so no error text can carry one.
func converse(ctx context.Context, db *sql.DB, req loginRequest, enc *json.Encoder, dec *json.Decoder,
	secrets *[]string) (LoginResult, error) {
	if err := enc.Encode(req); err != nil {
		return LoginResult{}, fmt.Errorf("cannot send the attempt to php: %w", err)
	}
	var reply loginReply
	if err := dec.Decode(&reply); err != nil {
		return LoginResult{}, fmt.Errorf("cannot read php's answer: %w", err)
	}
	if reply.Lookup != nil {
		rows, err := readLoginRows(ctx, db, *reply.Lookup)
		if err != nil {
			return LoginResult{}, err
		}
		if rows.User != nil {
			*secrets = append(*secrets, rows.User.Password)
		}
		for _, v := range rows.Verifications {
			*secrets = append(*secrets, v.Secret)
		}
		if err := enc.Encode(rows); err != nil {
			return LoginResult{}, fmt.Errorf("cannot send the rows to php: %w", err)
		}
		reply = loginReply{}
		if err := dec.Decode(&reply); err != nil {
			return LoginResult{}, fmt.Errorf("cannot read php's answer: %w", err)
		}
	}
	switch {
	case reply.Error != "":
		return LoginResult{}, fmt.Errorf("the login script failed: %s", reply.Error)
	case reply.Result == nil:
		return LoginResult{}, errors.New("the login script answered without a result")
	}
	return *reply.Result, nil
}

// readLoginRows reads what the panel's queries read: `select * from users where email = ?
// limit 1` and the user's verification rows, in the order the database returns them. Whether a
// row is the current email's is the database's comparison, as in the panel's
// where('type', 'email')->where('value', $user->email). expires_at is read as unix seconds, so
// the session's time_zone does not matter.
func readLoginRows(ctx context.Context, db *sql.DB, email string) (loginRows, error) {
	var rows loginRows
	var u loginUser
	var uuid, stored string
	err := db.QueryRowContext(ctx, "SELECT `uuid`, `email`, `password`, `status`, `two_factor`, `disable` FROM users "+
		"WHERE `email` = ? LIMIT 1", email).Scan(&uuid, &stored, &u.Password, &u.Status, &u.TwoFactor, &u.Disable)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return rows, nil
	case err != nil:
		return rows, fmt.Errorf("cannot read the panel user: %w", err)
	}
	rows.User = &u
	rows.Verifications = []loginVerification{}
	r, err := db.QueryContext(ctx, "SELECT `type`, COALESCE(`type` = 'email' AND `value` = ?, 0), `secret`, "+
		"`verified`, `default`, UNIX_TIMESTAMP(`expires_at`) FROM verifications WHERE `user_uuid` = ?", stored, uuid)
	if err != nil {
		return rows, fmt.Errorf("cannot read the verification rows: %w", err)
	}
	defer func() { _ = r.Close() }()
	for r.Next() {
		var v loginVerification
		var expires sql.NullInt64
		if err := r.Scan(&v.Type, &v.CurrentEmail, &v.Secret, &v.Verified, &v.Default, &expires); err != nil {
			return rows, fmt.Errorf("cannot read a verification row: %w", err)
		}
		if expires.Valid {
			v.ExpiresAt = &expires.Int64
		}
		rows.Verifications = append(rows.Verifications, v)
	}
	if err := r.Err(); err != nil {
		return rows, fmt.Errorf("cannot read the verification rows: %w", err)
	}
	return rows, nil
}

// stderrSuffix is php's stderr (warnings, a fatal error) to append to an error message.
func stderrSuffix(stderr string) string {
	stderr = strings.TrimSpace(stderr)
	if len(stderr) > 2000 {
		stderr = stderr[:2000] + "..."
	}
	if stderr == "" {
		return ""
	}
	return ": " + stderr
}

// redact removes every secret from an error text.
func redact(text string, secrets []string) string {
	for _, s := range secrets {
		if s != "" {
			text = strings.ReplaceAll(text, s, "<redacted>")
		}
	}
	return text
}
