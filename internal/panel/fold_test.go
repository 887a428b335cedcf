package panel_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// pair is two strings and whether the panel's email column holds them equal.
type pair struct {
	a, b  string
	equal bool
}

// Rewrites that utf8mb4_unicode_ci is expected to ignore, and a few it is not (the oracle decides;
// these only steer the derived pairs toward the interesting cases).
var (
	multiRune = [][2]string{{"ss", "ß"}, {"fi", "ﬁ"}, {"fl", "ﬂ"}, {"ff", "ﬀ"}, {"ae", "æ"}, {"oe", "œ"},
		{"SS", "ẞ"}, {"ij", "ĳ"}, {"...", "…"}, {"e", "é"}, {"e", "e\u0301"}, {"a", "å"}, {"o", "ø"}, {"u", "ü"},
		{"i", "ı"}, {"n", "ñ"}, {"c", "ç"}, {"1", "¹"}, {"2", "₂"}, {"@", "＠"}, {".", "．"}, {"-", "‐"}, {"_", "＿"}}
	ignorables = []string{"\u200b", "\u200c", "\u200d", "\ufeff", "\u0301", "\u0308", "\u00ad", "\u2060", "\x00", "\u034f"}
	trailing   = []string{" ", "  ", "\u00a0", "\u3000", "\u2002", "\t", " \u200b"}
	supp       = []rune{'😀', '𝒜', '𐐀', '𠀀', '\U0010FFFF', '\U000E0041', '🙂'}
)

// derive rewrites a into a b that the collation mostly holds equal to a: case, fullwidth and other
// equivalent code points, ligatures, ignorables, trailing spaces, supplementary-plane characters;
// and, in about a fifth of the pairs, one change that should make them differ.
func derive(a string, rng *rand.Rand) string {
	var b strings.Builder
	for _, r := range a {
		if rng.IntN(6) == 0 {
			b.WriteString(ignorables[rng.IntN(len(ignorables))])
		}
		switch {
		case r > 0xFFFF && rng.IntN(2) == 0:
			r = supp[rng.IntN(len(supp))]
		case r >= 'a' && r <= 'z' && rng.IntN(5) == 0:
			r = r - 'a' + 'ａ'
		case r >= 'A' && r <= 'Z' && rng.IntN(5) == 0:
			r = r - 'A' + 'Ａ'
		case rng.IntN(3) == 0:
			if unicode.IsUpper(r) {
				r = unicode.ToLower(r)
			} else {
				r = unicode.ToUpper(r)
			}
		}
		b.WriteRune(r)
	}
	s := b.String()
	for range 2 {
		m := multiRune[rng.IntN(len(multiRune))]
		from, to := m[0], m[1]
		if rng.IntN(2) == 0 {
			from, to = to, from
		}
		if i := strings.Index(s, from); i >= 0 {
			s = s[:i] + to + s[i+len(from):]
		}
	}
	if rng.IntN(3) == 0 {
		s += trailing[rng.IntN(len(trailing))]
	}
	if rng.IntN(5) == 0 {
		s = breakOne(s, rng)
	}
	return s
}

// breakOne makes one change that the collation probably does not ignore.
func breakOne(s string, rng *rand.Rand) string {
	rs := []rune(s)
	i := rng.IntN(len(rs) + 1)
	switch rng.IntN(4) {
	case 0:
		return string(rs[:i]) + string(supp[rng.IntN(len(supp))]) + string(rs[i:])
	case 1:
		if i < len(rs) {
			return string(rs[:i]) + string(rs[i+1:])
		}
	case 2:
		return string(rs[:i]) + string(rune(rng.IntN(0xD800))) + string(rs[i:])
	}
	return s + "x"
}

// collationOracle answers, from MariaDB, whether pairs of strings are equal under the
// collation of the panel's users.email column.
type collationOracle struct {
	db        *sql.DB
	collation string
}

func newCollationOracle(t testing.TB) *collationOracle {
	t.Helper()
	if mariadb == nil {
		t.Fatal("MariaDB did not start (install mariadb-server, or run `make test-deps` as root)")
	}
	p, err := mariadb.NewPanel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Root.Close() })
	o := &collationOracle{db: p.Root}
	err = p.Root.QueryRow("SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()" +
		" AND TABLE_NAME = 'users' AND COLUMN_NAME = 'email'").Scan(&o.collation)
	if err != nil {
		t.Fatalf("cannot read the collation of users.email: %v", err)
	}
	// A name, not a value: it cannot be a parameter, so it must be a plain identifier.
	if !regexp.MustCompile(`^[a-z0-9_]+$`).MatchString(o.collation) {
		t.Fatalf("unexpected collation name %q", o.collation)
	}
	return o
}

// equal asks MariaDB about all pairs in one statement per 256, and fills in their equal field.
func (o *collationOracle) equal(t testing.TB, ps []pair) {
	t.Helper()
	for start := 0; start < len(ps); start += 256 {
		part := ps[start:min(start+256, len(ps))]
		cols := make([]string, len(part))
		args := make([]any, 0, 2*len(part))
		dest := make([]any, len(part))
		for i := range part {
			cols[i] = "CONVERT(? USING utf8mb4) COLLATE " + o.collation + " = CONVERT(? USING utf8mb4) COLLATE " + o.collation
			args = append(args, part[i].a, part[i].b)
			dest[i] = &part[i].equal
		}
		if err := o.db.QueryRow("SELECT "+strings.Join(cols, ", "), args...).Scan(dest...); err != nil {
			t.Fatalf("cannot compare under %s: %v", o.collation, err)
		}
	}
}

// checkFold fails for each pair on which Fold and MariaDB disagree, naming the pair.
func checkFold(t testing.TB, collation string, ps []pair) {
	t.Helper()
	for _, p := range ps {
		if got := panel.Fold(p.a) == panel.Fold(p.b); got != p.equal {
			t.Errorf("Fold(%+q) == Fold(%+q) is %v, but MariaDB's %s says a = b is %v", p.a, p.b, got, collation, p.equal)
		}
	}
}

// validPair keeps the fuzzer to what an email field can hold: valid UTF-8 (the apiserver's
// JSON), no longer than the column.
func validPair(a string) string {
	a = strings.ToValidUTF8(a, "\uFFFD")
	if utf8.RuneCountInString(a) > 100 {
		a = string([]rune(a)[:100])
	}
	return a
}

// FuzzFoldAgreesWithMariaDB derives 16 strings from each input and asserts that Fold holds each
// equal to the input exactly when MariaDB does, under the collation of the panel's users.email.
func FuzzFoldAgreesWithMariaDB(f *testing.F) {
	o := newCollationOracle(f)
	f.Add("José@X.io", uint64(1))
	f.Fuzz(func(t *testing.T, a string, seed uint64) {
		a = validPair(a)
		rng := rand.New(rand.NewPCG(seed, uint64(len(a))))
		ps := make([]pair, 16)
		for i := range ps {
			ps[i] = pair{a: a, b: derive(a, rng)}
		}
		o.equal(t, ps)
		checkFold(t, o.collation, ps)
	})
}

// TestFoldAgreesWithMariaDB compares Fold with MariaDB, and the SQLite store's unicode_ci
// collation with both, on pairs derived from the fuzz seeds and from a set of emails, and says
// how many of the pairs are equal (the derivation keeps that at half or more, so that both
// answers are exercised).
func TestFoldAgreesWithMariaDB(t *testing.T) {
	o := newCollationOracle(t)
	bases := []string{"José@X.io", "strasse@example.com", "office@firma.de", "Ελένη@παράδειγμα.gr",
		"Łukasz.Żółć@poczta.pl", "user+tag@example.org", "ÆØÅ@eksempel.dk", "i.İ.ı@örnek.tr",
		"李雷@例子.中国", "ｆｕｌｌ＠ｗｉｄｔｈ.jp", "emoji😀@x.io", "𝒜𝒷𝒸@math.io", "a\u200bb@x.io",
		"  padded@x.io  ", "tab\t@x.io", "ﬁnance@ﬂow.io", "Müßig@straße.de", "Ωmega@x.gr", "Дмитрий@пример.рф"}
	rng := rand.New(rand.NewPCG(12, 0))
	ps := make([]pair, 0, 4000)
	for i := range cap(ps) {
		a := bases[i%len(bases)]
		ps = append(ps, pair{a: a, b: derive(a, rng)})
	}
	o.equal(t, ps)
	checkFold(t, o.collation, ps)

	equal := 0
	for _, p := range ps {
		if p.equal {
			equal++
		}
	}
	t.Logf("%d of %d pairs equal under %s (%.0f%%)", equal, len(ps), o.collation, 100*float64(equal)/float64(len(ps)))
	if 2*equal < len(ps) {
		t.Errorf("only %d of %d derived pairs are equal: the derivation no longer exercises equality", equal, len(ps))
	}

	f := open(t, panel.Options{DSN: "sqlite://" + filepath.Join(t.TempDir(), "panel.db")}, nil)
	for start := 0; start < len(ps); start += 256 {
		part := ps[start:min(start+256, len(ps))]
		cols := make([]string, len(part))
		args := make([]any, 0, 2*len(part))
		got := make([]bool, len(part))
		dest := make([]any, len(part))
		for i := range part {
			cols[i] = "? = ? COLLATE unicode_ci"
			args = append(args, part[i].a, part[i].b)
			dest[i] = &got[i]
		}
		if err := f.db.QueryRow("SELECT "+strings.Join(cols, ", "), args...).Scan(dest...); err != nil {
			t.Fatal(err)
		}
		for i, p := range part {
			if got[i] != p.equal {
				t.Errorf("SQLite's unicode_ci says %+q = %+q is %v, MariaDB's %s says %v", p.a, p.b, got[i], o.collation, p.equal)
			}
		}
	}
}

// TestFoldOrdersLikeMariaDB checks CompareFolded, which the SQLite collation orders by, against
// MariaDB's order on strings that differ only after one ends (PAD SPACE).
func TestFoldOrdersLikeMariaDB(t *testing.T) {
	o := newCollationOracle(t)
	for _, c := range [][2]string{{"a", "a\t"}, {"a", "a "}, {"a", "a\u200b"}, {"a", "ab"}, {"a ", "a\u00a0"}, {"ab", "a"}, {"a\t", "a"}} {
		var want int
		q := fmt.Sprintf("SELECT STRCMP(CONVERT(? USING utf8mb4) COLLATE %[1]s, CONVERT(? USING utf8mb4) COLLATE %[1]s)", o.collation)
		if err := o.db.QueryRow(q, c[0], c[1]).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if got := panel.CompareFolded(panel.Fold(c[0]), panel.Fold(c[1])); got != want {
			t.Errorf("CompareFolded(Fold(%+q), Fold(%+q)) = %d, MariaDB says %d", c[0], c[1], got, want)
		}
	}
}

// BenchmarkFold measures the per-User cost of the email index key.
func BenchmarkFold(b *testing.B) {
	emails := []string{"jose.garcia@example.com", "Müßig@straße.de", "李雷@例子.中国", "ｆｕｌｌ＠ｗｉｄｔｈ.jp"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = panel.NormalizeEmail(emails[i%len(emails)])
	}
}
