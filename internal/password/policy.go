package password

import (
	"bufio"
	_ "embed"
	"fmt"
	"strings"
	"unicode/utf8"
)

// commonPasswords is a list of the passwords most often found in breaches, lowercased, one a
// line. A password equal to one of them, ignoring case, is refused.
//
//go:embed common-passwords.txt
var commonPasswords string

var common = func() map[string]struct{} {
	set := map[string]struct{}{}
	sc := bufio.NewScanner(strings.NewReader(commonPasswords))
	for sc.Scan() {
		if w := strings.TrimSpace(sc.Text()); w != "" && !strings.HasPrefix(w, "#") {
			set[strings.ToLower(w)] = struct{}{}
		}
	}
	return set
}()

// Policy is the strength policy for cleartext passwords.
type Policy struct {
	// MinLength is the minimum number of characters.
	MinLength int
}

// Person is what a password must not contain.
type Person struct {
	Email     string
	FirstName string
	LastName  string
}

// WeakError says why a password is refused. Its text never holds the password.
type WeakError struct{ Reason string }

func (e *WeakError) Error() string { return "the password is too weak: " + e.Reason }

// Check refuses a password that is shorter than the minimum, is one of the most common passwords,
// or equals or contains the email's local part or the person's names (ignoring case).
func (p Policy) Check(cleartext string, who Person) error {
	if n := utf8.RuneCountInString(cleartext); n < p.MinLength {
		// The message never says the length itself: that would tell whoever reads the condition
		// something about the password.
		return &WeakError{Reason: fmt.Sprintf("it has fewer characters than the minimum of %d", p.MinLength)}
	}
	lower := strings.ToLower(cleartext)
	if _, ok := common[lower]; ok {
		return &WeakError{Reason: "it is one of the most common passwords"}
	}
	local, _, _ := strings.Cut(strings.ToLower(who.Email), "@")
	for _, part := range []struct{ name, value string }{
		{"the email's local part", local},
		{"the first name", strings.ToLower(who.FirstName)},
		{"the last name", strings.ToLower(who.LastName)},
	} {
		if utf8.RuneCountInString(part.value) >= 3 && strings.Contains(lower, part.value) {
			return &WeakError{Reason: "it contains " + part.name}
		}
	}
	return nil
}
