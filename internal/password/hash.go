// Package password hashes passwords the way the PUQcloud panel stores them (bcrypt with PHP's $2y$
// prefix) and checks cleartext passwords against the operator's strength policy. Nothing here
// logs or returns a password or hash inside an error.
package password

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"golang.org/x/crypto/bcrypt"
)

// DefaultCost is the panel's bcrypt cost (Laravel's BCRYPT_ROUNDS).
const DefaultCost = 12

// ErrMalformedHash means a value is not a bcrypt hash PHP accepts. Its text never holds the value.
var ErrMalformedHash = errors.New("not a bcrypt hash: want $2a$, $2b$ or $2y$, a cost from 04 to 31 " +
	"and 53 characters of salt and hash as bcrypt writes them")

// bcryptForm is a bcrypt hash in modular crypt form: $2a$/$2b$/$2y$, two-digit cost, 22 salt and
// 31 hash characters of bcrypt's base64 alphabet. The salt's 22 characters carry 16 bytes and the
// hash's 31 carry 23, so the last character of each has unused low bits (4 and 2) that bcrypt
// writes as zero. PHP re-encodes the salt when it computes a hash, so a hash with those bits set
// matches no password there (Go's bcrypt ignores them and would match): such a value must be
// refused, not stored as a password nobody can log in with.
var bcryptForm = regexp.MustCompile(`^\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{21}[.Oeu][./A-Za-z0-9]{30}[.CGKOSWaeimquy26]$`)

// Hash hashes a cleartext password with bcrypt at cost and returns it with the $2y$ prefix, the
// only one PHP's password_verify and Laravel's bcrypt check recognise.
func Hash(cleartext string, cost int) (string, error) {
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return "", fmt.Errorf("bcrypt cost %d is outside %d..%d", cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(cleartext), cost)
	if err != nil {
		// bcrypt's only error here is for passwords over 72 bytes; say so without the value.
		if errors.Is(err, bcrypt.ErrPasswordTooLong) {
			return "", fmt.Errorf("cannot hash the password: it is longer than bcrypt's 72 bytes")
		}
		return "", fmt.Errorf("cannot hash the password: %w", err)
	}
	return PanelForm(string(h))
}

// PanelForm checks that h is a well-formed bcrypt hash ($2a$, $2b$ or $2y$, cost 4 to 31) and
// returns it with the $2y$ prefix: the same hash, as PHP expects it.
func PanelForm(h string) (string, error) {
	m := bcryptForm.FindStringSubmatch(h)
	if m == nil {
		return "", ErrMalformedHash
	}
	cost, _ := strconv.Atoi(m[1])
	if cost < 4 || cost > 31 {
		return "", ErrMalformedHash
	}
	return "$2y$" + h[4:], nil
}

// Verify reports whether cleartext matches a bcrypt hash ($2a$, $2b$ or $2y$) as PHP checks it: a
// value PanelForm refuses matches nothing.
func Verify(hash, cleartext string) bool {
	if _, err := PanelForm(hash); err != nil {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte("$2a$"+hash[4:]), []byte(cleartext)) == nil
}

// CostRange is the bcrypt costs the operator accepts, for the hashes it computes (--bcrypt-cost)
// and the hashes a Secret's passwordHash key brings. A cost above the range makes every login
// attempt for the email cost the panel 2^(cost-12) of its own checks, a lever any visitor of the
// login form can pull; one below it makes the hash cheap to crack and skips the password policy.
type CostRange struct {
	Min, Max int
}

// DefaultCostRange is the range the operator accepts unless told otherwise: around the panel's
// own cost (12), which the panel rehashes any other cost to at the next login.
var DefaultCostRange = CostRange{Min: 10, Max: 14}

// Validate refuses a range that is empty or outside bcrypt's costs (4 to 31).
func (r CostRange) Validate() error {
	if r.Min < bcrypt.MinCost || r.Max > bcrypt.MaxCost || r.Min > r.Max {
		return fmt.Errorf("bcrypt cost range %d..%d is not within %d..%d with min <= max", r.Min, r.Max,
			bcrypt.MinCost, bcrypt.MaxCost)
	}
	return nil
}

// Contains reports whether the cost is in the range.
func (r CostRange) Contains(cost int) bool { return cost >= r.Min && cost <= r.Max }

func (r CostRange) String() string { return fmt.Sprintf("%d to %d", r.Min, r.Max) }

// CostOf is the cost of a hash PanelForm accepts.
func CostOf(h string) (int, error) {
	m := bcryptForm.FindStringSubmatch(h)
	if m == nil {
		return 0, ErrMalformedHash
	}
	return strconv.Atoi(m[1])
}
