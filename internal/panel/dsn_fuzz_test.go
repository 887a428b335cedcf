package panel_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// filePassword is what the password file holds in the DSN fuzz target: not a real password.
const filePassword = "file-password-7c1e"

// FuzzMySQLDSN builds "mysql://" + user + ":" + secret + "@" + rest (no ":" and secret when
// secret is empty) and checks what the store makes of it, without connecting (Open runs on a
// cancelled context):
//   - a DSN holding a password (secret) is refused, as the README promises, by MySQLConfig and by
//     Open alike, and the error says nothing that depends on the password: it is the same when
//     the password's letters and digits are replaced by others;
//   - an accepted DSN takes its password from the password file only; gets the panel's session
//     settings whatever it says (UTC session, utf8mb4_unicode_ci, client-side interpolation, no
//     time parsing); keeps the timeouts it sets and gets the defaults for those it does not; and
//     formats to a DSN that the driver parses back to the same configuration.
func FuzzMySQLDSN(f *testing.F) {
	passwordFile := filepath.Join(f.TempDir(), "password")
	if err := os.WriteFile(passwordFile, []byte(filePassword+"\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	f.Fuzz(func(t *testing.T, user, secret, rest string) {
		user = strings.ReplaceAll(user, ":", "") // the first ':' starts the password
		dsn := user + "@" + rest
		if secret != "" {
			dsn = user + ":" + secret + "@" + rest
		}
		cfg, err := panel.MySQLConfig(dsn, passwordFile)
		_, openErr := panel.Open(cancelled, panel.Options{DSN: "mysql://" + dsn, PasswordFile: passwordFile})
		if refused := errors.Is(openErr, panel.ErrInvalid); refused != (err != nil) {
			t.Fatalf("MySQLConfig error %v, but Open error %v", err, openErr)
		}
		if secret != "" {
			if err == nil {
				t.Fatalf("a DSN holding a password was accepted: user %q, network %q, address %q, database %q",
					cfg.User, cfg.Net, cfg.Addr, cfg.DBName)
			}
			checkNoPasswordInError(t, err, user, secret, rest, passwordFile)
			return
		}
		if err != nil {
			if !errors.Is(err, panel.ErrInvalid) {
				t.Fatalf("a DSN was refused without ErrInvalid: %v", err)
			}
			return
		}
		checkAcceptedConfig(t, cfg, rest)
	})
}

// checkNoPasswordInError fails when the error for the DSN with secret changes when the secret's
// letters and digits change (so it carries something of the password), or quotes 8 bytes of it.
func checkNoPasswordInError(t *testing.T, err error, user, secret, rest, passwordFile string) {
	t.Helper()
	other := relabel(secret)
	_, otherErr := panel.MySQLConfig(user+":"+other+"@"+rest, passwordFile)
	if otherErr == nil || otherErr.Error() != err.Error() {
		t.Fatalf("the error depends on the password's letters and digits: %q, and with others: %v", err, otherErr)
	}
	for i := 0; i+8 <= len(secret); i++ {
		if w := secret[i : i+8]; strings.Contains(err.Error(), w) && w != other[i:i+8] {
			t.Fatalf("the error quotes %q of the password: %v", w, err)
		}
	}
	if !errors.Is(err, panel.ErrInvalid) {
		t.Fatalf("a DSN holding a password was refused without ErrInvalid: %v", err)
	}
}

// relabel replaces each ASCII letter and digit with another of its kind and keeps every other
// byte, so a DSN's structure (its separators) stays as it was.
func relabel(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = 'a' + (c-'a'+13)%26
		case c >= 'A' && c <= 'Z':
			b[i] = 'A' + (c-'A'+13)%26
		case c >= '0' && c <= '9':
			b[i] = '0' + (c-'0'+5)%10
		}
	}
	return string(b)
}

func checkAcceptedConfig(t *testing.T, cfg *mysql.Config, rest string) {
	t.Helper()
	if cfg.Passwd != filePassword {
		t.Fatalf("the password is not the password file's (%d bytes, want %d)", len(cfg.Passwd), len(filePassword))
	}
	if cfg.Params["time_zone"] != "'+00:00'" || cfg.Collation != "utf8mb4_unicode_ci" || !cfg.InterpolateParams || cfg.ParseTime {
		t.Fatalf("the panel's session settings were not applied: time_zone %q, collation %q, interpolateParams %v, "+
			"parseTime %v", cfg.Params["time_zone"], cfg.Collation, cfg.InterpolateParams, cfg.ParseTime)
	}
	params := dsnParams(rest)
	for _, tc := range []struct {
		name     string
		got, def time.Duration
	}{
		{"timeout", cfg.Timeout, 5 * time.Second},
		{"readTimeout", cfg.ReadTimeout, 15 * time.Second},
		{"writeTimeout", cfg.WriteTimeout, 15 * time.Second},
	} {
		want := tc.def
		if v, ok := params[tc.name]; ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("the DSN's %s=%q does not parse, yet it was accepted", tc.name, v)
			}
			if d != 0 {
				want = d
			}
		}
		if tc.got != want {
			t.Fatalf("%s = %s, want %s (the DSN says %q)", tc.name, tc.got, want, params[tc.name])
		}
	}
	// A TCP address that is not host:port (such as "[") is made "[:3306" by the driver, and that
	// "[[:3306]:3306" the next time: no fixed point, and no connection either (the dial fails on
	// the address). Only well-formed addresses are held to the round trip.
	if _, _, err := net.SplitHostPort(cfg.Addr); cfg.Net == "tcp" && err != nil {
		return
	}
	// The password is the file's, not the DSN's: format what came from the DSN (the driver's
	// format drops a password when there is no user name).
	fromDSN := cfg.Clone()
	fromDSN.Passwd = ""
	formatted := fromDSN.FormatDSN()
	again, err := mysql.ParseDSN(formatted)
	if err != nil {
		t.Fatalf("the driver cannot parse the DSN its configuration formats to: %v", err)
	}
	if again.FormatDSN() != formatted || again.User != cfg.User || again.Passwd != "" || again.Net != cfg.Net ||
		again.Addr != cfg.Addr || again.DBName != cfg.DBName {
		t.Fatalf("the configuration does not survive format and parse: user %q/%q, network %q/%q, address %q/%q, "+
			"database %q/%q", cfg.User, again.User, cfg.Net, again.Net, cfg.Addr, again.Addr, cfg.DBName, again.DBName)
	}
}

// dsnParams reads the parameters of a DSN as the driver documents them,
// [user[:password]@][net[(addr)]]/dbname[?param1=value1&paramN=valueN]: after the last "/", from
// the first "?", "&"-separated name=value pairs, the last of each name counting.
func dsnParams(dsn string) map[string]string {
	out := map[string]string{}
	slash := strings.LastIndexByte(dsn, '/')
	if slash < 0 {
		return out
	}
	_, query, found := strings.Cut(dsn[slash+1:], "?")
	if !found {
		return out
	}
	for pair := range strings.SplitSeq(query, "&") {
		if k, v, ok := strings.Cut(pair, "="); ok {
			out[k] = v
		}
	}
	return out
}
