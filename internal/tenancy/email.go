package tenancy

import (
	"strings"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// Emails are matched on their folded form (panel.Fold), the key under which the panel's
// utf8mb4_unicode_ci column compares them: a pattern grants an email exactly when it grants every
// spelling the panel holds as the same account, so "JANE@ACME.IO", "ｊａｎｅ@acme.io" and
// "jane@acme.io " are one email to a policy as they are to the panel. A fold is a sequence of
// 16-bit weights, two bytes each.

// pattern is an EmailPattern folded: its local part split at "*", and its domain.
type pattern struct {
	// local are the folded pieces of the local part between its "*"s: one piece for an exact
	// local part, ["", ""] for "*".
	local []string
	// domain is the folded domain; for "*.example.com" it is the fold of ".example.com", and
	// subdomain is set.
	domain    string
	subdomain bool
}

// atWeight is the weight of "@" (and of what the collation holds equal to it, such as "＠").
var atWeight = panel.Fold("@")

func compilePatterns(ps []v1.EmailPattern) []pattern {
	out := make([]pattern, 0, len(ps))
	for _, p := range ps {
		if c, ok := compilePattern(string(p)); ok {
			out = append(out, c)
		}
	}
	return out
}

// compilePattern folds a pattern. A pattern without "@" (the API rejects it) grants nothing.
func compilePattern(p string) (pattern, bool) {
	p = strings.TrimSpace(p)
	at := strings.LastIndex(p, "@")
	if at < 0 {
		return pattern{}, false
	}
	local, domain := p[:at], p[at+1:]
	var c pattern
	for piece := range strings.SplitSeq(local, "*") {
		c.local = append(c.local, panel.Fold(piece))
	}
	if rest, ok := strings.CutPrefix(domain, "*"); ok {
		c.subdomain, domain = true, rest // rest starts with "."
	}
	c.domain = panel.Fold(domain)
	return c, true
}

func matchAny(ps []pattern, key string) bool {
	if len(ps) == 0 {
		return false
	}
	local, domain, ok := splitFolded(key)
	if !ok {
		return false
	}
	for _, p := range ps {
		if p.match(local, domain) {
			return true
		}
	}
	return false
}

// splitFolded splits a folded email at its last "@": the domain never holds one.
func splitFolded(key string) (local, domain string, ok bool) {
	for i := len(key) - len(atWeight); i >= 0; i -= 2 {
		// "@" weighs less than 0x8000, so it is never the second weight of an implicit pair: every
		// occurrence at an even offset is the weight of a character equal to "@".
		if key[i:i+len(atWeight)] == atWeight {
			return key[:i], key[i+len(atWeight):], true
		}
	}
	return "", "", false
}

func (p pattern) match(local, domain string) bool {
	if p.subdomain {
		// At least one label before ".example.com": the apex itself is not a subdomain.
		if len(domain) <= len(p.domain) || !strings.HasSuffix(domain, p.domain) {
			return false
		}
	} else if domain != p.domain {
		return false
	}
	return glob(p.local, local)
}

// glob reports whether the folded local part matches the pieces, each "*" between two pieces
// standing for any weights; a piece matches only where a character's weights start.
func glob(pieces []string, s string) bool {
	if len(pieces) == 1 {
		return s == pieces[0]
	}
	first, last := pieces[0], pieces[len(pieces)-1]
	if !strings.HasPrefix(s, first) {
		return false
	}
	starts := weightStarts(s)
	pos := len(first)
	for _, piece := range pieces[1 : len(pieces)-1] {
		i := indexAt(s, piece, pos, starts)
		if i < 0 {
			return false
		}
		pos = i + len(piece)
	}
	tail := len(s) - len(last)
	return tail >= pos && starts[tail/2] && s[tail:] == last
}

// indexAt is the first offset at or after from where piece occurs in s starting on a weight
// start; -1 when there is none.
func indexAt(s, piece string, from int, starts []bool) int {
	for i := from; i+len(piece) <= len(s); i += 2 {
		if starts[i/2] && s[i:i+len(piece)] == piece {
			return i
		}
	}
	return -1
}

// weightStarts marks, for each 2-byte weight of a fold (and its end), whether a character's
// weights may start there. A code point the collation weighs by UCA's implicit formula (CJK
// ideographs, unassigned code points) has two weights, the first one of six values 0xFB40,
// 0xFB41, 0xFB80, 0xFB81, 0xFBC0, 0xFBC1, which no other weight takes (every other BMP weight is
// below 0x2400, and supplementary characters weigh 0xFFFD alone); its second weight (0x8000 and
// up) is not a start. So a piece never matches from the middle of such a pair.
func weightStarts(s string) []bool {
	n := len(s) / 2
	starts := make([]bool, n+1)
	for i := 0; i < n; i++ {
		starts[i] = true
		if implicitFirst(uint16(s[2*i])<<8 | uint16(s[2*i+1])) {
			i++
		}
	}
	starts[n] = true
	return starts
}

func implicitFirst(w uint16) bool {
	switch w {
	case 0xFB40, 0xFB41, 0xFB80, 0xFB81, 0xFBC0, 0xFBC1:
		return true
	}
	return false
}

// MatchesAny reports whether the email matches one of the patterns the way a PanelAccessPolicy's
// spec.emails match it (kubectl puq import --email selects users with it).
func MatchesAny(patterns []v1.EmailPattern, email string) bool {
	return matchAny(compilePatterns(patterns), panel.NormalizeEmail(email))
}
