package password_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/puqcloud/puq-user-operator/internal/password"
)

// bcryptAlphabet is bcrypt's base64 alphabet, in value order.
const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// phpAccepts is the documented form of a hash the operator may store, written out without a
// regular expression: "$2a$", "$2b$" or "$2y$", a two-digit cost from 04 to 31, "$", 22 salt
// and 31 hash characters of bcrypt's alphabet, as PHP's crypt_blowfish writes them. The salt
// encodes 16 bytes in 22 characters and the hash 23 bytes in 31, so the last character of each
// carries unused low bits (4 and 2), which crypt_blowfish always writes as zero: PHP re-encodes
// the salt when it computes a hash, so a hash with those bits set never verifies there, for any
// password (TestPanelFormAgreesWithPHP shows it), while Go's bcrypt ignores them.
func phpAccepts(h string) (cost int, ok bool) {
	if len(h) != 60 || (h[:4] != "$2a$" && h[:4] != "$2b$" && h[:4] != "$2y$") || h[6] != '$' {
		return 0, false
	}
	if h[4] < '0' || h[4] > '9' || h[5] < '0' || h[5] > '9' {
		return 0, false
	}
	cost = int(h[4]-'0')*10 + int(h[5]-'0')
	if cost < 4 || cost > 31 {
		return 0, false
	}
	for i := 7; i < 60; i++ {
		if strings.IndexByte(bcryptAlphabet, h[i]) < 0 {
			return 0, false
		}
	}
	saltTail := strings.IndexByte(bcryptAlphabet, h[7+21])
	hashTail := strings.IndexByte(bcryptAlphabet, h[59])
	return cost, saltTail&0x0f == 0 && hashTail&0x03 == 0
}

// leaks reports an 8-byte run of secret that msg carries and that the message given for an
// unrelated value (baseline) does not: a message quoting part of the value.
func leaks(msg, baseline, secret string) (string, bool) {
	for i := 0; i+8 <= len(secret); i++ {
		w := secret[i : i+8]
		if strings.Contains(msg, w) && !strings.Contains(baseline, w) {
			return w, true
		}
	}
	return "", false
}

// FuzzPanelFormAcceptsWhatPHPAccepts: PanelForm accepts exactly the hashes of the documented
// form (phpAccepts), returns them as $2y$ with the rest unchanged, is idempotent, agrees with Go's
// bcrypt on the cost, and refuses everything else with ErrMalformedHash, quoting nothing of the
// value. Verify matches nothing PanelForm refuses (checked where that costs no bcrypt run).
func FuzzPanelFormAcceptsWhatPHPAccepts(f *testing.F) {
	baseline := errorText(password.PanelForm("\x00"))
	f.Fuzz(func(t *testing.T, h string) {
		wantCost, want := phpAccepts(h)
		out, err := password.PanelForm(h)
		if (err == nil) != want {
			t.Fatalf("PanelForm(%q): error %v, want accepted=%v", h, err, want)
		}
		if err != nil {
			if !errors.Is(err, password.ErrMalformedHash) {
				t.Fatalf("PanelForm(%q) = %v, want ErrMalformedHash", h, err)
			}
			if w, ok := leaks(err.Error(), baseline, h); ok {
				t.Fatalf("PanelForm's error quotes %q of the value: %v", w, err)
			}
			// Refused with a cost Go's bcrypt runs in microseconds (or none): Verify must say
			// no without a bcrypt run deciding it.
			if c, cerr := bcrypt.Cost([]byte(h)); cerr != nil || c <= 5 {
				if password.Verify(h, "") {
					t.Fatalf("Verify matched a hash PanelForm refuses: %q", h)
				}
			}
			return
		}
		if out != "$2y$"+h[4:] {
			t.Fatalf("PanelForm(%q) = %q, want the same hash with the $2y$ prefix", h, out)
		}
		if again, err := password.PanelForm(out); err != nil || again != out {
			t.Fatalf("PanelForm is not idempotent: PanelForm(%q) = %q, %v", out, again, err)
		}
		if cost, err := bcrypt.Cost([]byte(h)); err != nil || cost != wantCost {
			t.Fatalf("Go's bcrypt reads %q as cost %d (%v), want %d", h, cost, err, wantCost)
		}
		if got := h[4:6]; got != strconv.Itoa(wantCost) && got != "0"+strconv.Itoa(wantCost) {
			t.Fatalf("cost digits %q, want %d", got, wantCost)
		}
	})
}

func errorText(_ string, err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzHashRoundTrip: Hash writes a $2y$ hash of the documented form at the cost asked for, which
// PanelForm keeps as it is, and which matches its password and no other, under any of the three
// prefixes; the same hash with unused bits set matches nothing (as in PHP); a password over
// bcrypt's 72 bytes is refused without being quoted. Each run costs two or three bcrypt runs at
// cost 4, so this target runs slower than the others.
func FuzzHashRoundTrip(f *testing.F) {
	baseline := errorText(password.Hash(strings.Repeat("\x00", 73), bcrypt.MinCost))
	f.Fuzz(func(t *testing.T, cleartext string, variant uint8) {
		h, err := password.Hash(cleartext, bcrypt.MinCost)
		if len(cleartext) > 72 {
			if err == nil {
				t.Fatalf("Hash accepted a password of %d bytes; bcrypt reads only 72", len(cleartext))
			}
			if w, ok := leaks(err.Error(), baseline, cleartext); ok {
				t.Fatalf("Hash's error quotes %q of the password: %v", w, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Hash refused a password of %d bytes: %v", len(cleartext), err)
		}
		if cost, ok := phpAccepts(h); !ok || cost != bcrypt.MinCost || !strings.HasPrefix(h, "$2y$") {
			t.Fatalf("Hash wrote %q: want $2y$, cost %d, the documented form", h, bcrypt.MinCost)
		}
		if out, err := password.PanelForm(h); err != nil || out != h {
			t.Fatalf("PanelForm(Hash(...)) = %q, %v; want the hash unchanged", out, err)
		}
		switch variant % 4 {
		case 0, 1: // the same hash under another prefix still matches
			v := [...]string{"$2a$", "$2b$"}[variant%2] + h[4:]
			if !password.Verify(v, cleartext) {
				t.Fatalf("Verify(%q) does not match its password", v)
			}
		case 2: // another password does not match
			other := cleartext + "x"
			if len(other) > 72 {
				other = "x" + cleartext[1:]
				if cleartext[0] == 'x' {
					other = "y" + cleartext[1:]
				}
			}
			if password.Verify(h, other) {
				t.Fatalf("Verify matched another password")
			}
			if !password.Verify(h, cleartext) {
				t.Fatalf("Verify(%q) does not match its password", h)
			}
		case 3: // unused bits set: PHP matches nothing, so neither may Verify nor PanelForm
			v := []byte(h)
			i := 7 + 21
			if variant&4 != 0 {
				i = 59
			}
			v[i] = bcryptAlphabet[strings.IndexByte(bcryptAlphabet, v[i])|1]
			if _, err := password.PanelForm(string(v)); err == nil {
				t.Fatalf("PanelForm accepted %q, a hash with unused bits set (byte %d)", v, i)
			}
			if password.Verify(string(v), cleartext) {
				t.Fatalf("Verify matched %q, a hash with unused bits set (byte %d), which PHP matches with nothing", v, i)
			}
		}
	})
}
