package password_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/puqcloud/puq-user-operator/internal/password"
)

func TestPolicyRefusesWeakPasswordsWithoutRepeatingThem(t *testing.T) {
	p := password.Policy{MinLength: 12}
	who := password.Person{Email: "jane.doe@example.com", FirstName: "Jane", LastName: "Kowalski"}
	cases := []struct {
		pw     string
		reason string // "" means accepted
	}{
		{"short-1", "minimum of 12"},
		{"ąęśćżźółńĄĘ", "minimum of 12"}, // 11 characters, 22 bytes: counted as characters
		{"password1234", "most common"},
		{"PASSWORD1234", "most common"},
		{"xx-jane.doe-2026", "email's local part"},
		{"my-kowalski-pass", "last name"},
		{"janeJANEjane!", "first name"},
		{"plum-Harbor-7-lantern", ""},
		{"ąęśćżźółńĄĘŚ", ""},
	}
	for _, tc := range cases {
		err := p.Check(tc.pw, who)
		if tc.reason == "" {
			if err != nil {
				t.Errorf("a strong password was refused: %v", err)
			}
			continue
		}
		var weak *password.WeakError
		if !errors.As(err, &weak) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("want a WeakError saying %q, got %v", tc.reason, err)
		}
		if err != nil && strings.Contains(err.Error(), tc.pw) {
			t.Errorf("the error repeats the password")
		}
		if n := fmt.Sprint(utf8.RuneCountInString(tc.pw)); err != nil && strings.Contains(err.Error(), n) {
			t.Errorf("the error %q tells the password's length (%s characters)", err, n)
		}
	}
}

func TestHashIsBcryptWith2yPrefixAndVerifies(t *testing.T) {
	h, err := password.Hash("plum-Harbor-7-lantern", 4)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$2y$04$") || len(h) != 60 {
		t.Errorf("hash form: prefix %q, length %d", h[:7], len(h))
	}
	if !password.Verify(h, "plum-Harbor-7-lantern") || password.Verify(h, "other") {
		t.Error("Verify is wrong")
	}
	if _, err := password.Hash(strings.Repeat("x", 73), 4); err == nil || strings.Contains(err.Error(), "xxx") {
		t.Errorf("a password over 72 bytes: want an error without the value, got %v", err)
	}
	if _, err := password.Hash("x", 3); err == nil {
		t.Error("cost 3 was accepted")
	}
}

func TestPanelFormAcceptsOnlyWellFormedBcrypt(t *testing.T) {
	// 21 salt characters, the 22nd with its unused low bits zero ('e'), 31 hash characters.
	body := "$04$" + strings.Repeat("a", 21) + "e" + strings.Repeat("a", 31)
	cases := map[string]bool{
		"$2a" + body: true, "$2b" + body: true, "$2y" + body: true,
		"$2x" + body:                        false, // not a PHP bcrypt prefix
		"$2y$03$" + strings.Repeat("a", 53): false, // cost below 4
		"$2y$32$" + strings.Repeat("a", 53): false, // cost above 31
		"$2y$04$" + strings.Repeat("a", 52): false, // short
		"$2y$04$" + strings.Repeat("!", 53): false, // outside bcrypt's alphabet
		"plain text":                        false,
		"$2y$04$" + strings.Repeat("a", 53): false, // the salt's unused bits set: PHP matches nothing
		"$2y" + body[:len(body)-1] + "b":    false, // the hash's unused bits set
	}
	for in, ok := range cases {
		out, err := password.PanelForm(in)
		if ok != (err == nil) {
			t.Errorf("PanelForm(%.10s...) error = %v, want ok=%v", in, err, ok)
		}
		if ok && out != "$2y"+in[3:] {
			t.Errorf("PanelForm did not swap the prefix: %.7s", out)
		}
		if err != nil && strings.Contains(err.Error(), in) {
			t.Error("the error repeats the value")
		}
	}
}

func TestCostRangeRefusesEmptyOrOutOfBcryptRanges(t *testing.T) {
	for _, r := range []password.CostRange{{}, {Min: 3, Max: 12}, {Min: 10, Max: 32}, {Min: 14, Max: 10}} {
		if r.Validate() == nil {
			t.Errorf("cost range %+v accepted", r)
		}
	}
	if err := password.DefaultCostRange.Validate(); err != nil || !password.DefaultCostRange.Contains(password.DefaultCost) {
		t.Errorf("the default range %v: %v, or it does not hold the panel's cost %d", password.DefaultCostRange, err, password.DefaultCost)
	}
}
