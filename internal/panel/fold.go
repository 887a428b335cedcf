package panel

//go:generate go run ../../hack/collation -o fold_table.go

import (
	"strings"
	"unicode/utf8"
)

// spaceWeight is the weight of U+0020 (and of the other spaces, such as U+00A0) under
// utf8mb4_unicode_ci. The collation is PAD SPACE: the shorter string is compared as if padded
// with it, so trailing spaces never decide equality.
const spaceWeight = 0x0209

// Fold is the key under which the panel's utf8mb4_unicode_ci columns compare strings: two
// strings are equal in such a column exactly when their Folds are equal. It is the
// concatenation of the MariaDB weights of the string's code points (two bytes each, from
// fold_table.go, read from MariaDB itself), without trailing space weights. So case, accents,
// ignorable code points and trailing spaces do not matter, and "ß" folds as "ss", "Ａ" as "a".
// The key is bytes, not text: compare it, never show it.
func Fold(v string) string {
	b := make([]byte, 0, 2*len(v))
	for _, r := range v {
		b = appendWeights(b, r)
	}
	for len(b) >= 2 && b[len(b)-2] == spaceWeight>>8 && b[len(b)-1] == spaceWeight&0xFF {
		b = b[:len(b)-2]
	}
	return string(b)
}

// appendWeights appends the weights of r, as MariaDB's utf8mb4_unicode_ci weighs it.
func appendWeights(b []byte, r rune) []byte {
	if r > 0xFFFF {
		// Every supplementary-plane character weighs 0xFFFD (the generator checks it).
		return append(b, 0xFF, 0xFD)
	}
	if r < 0 {
		r = utf8.RuneError
	}
	id := foldBlocks[int(foldBlockIndex[r>>foldBlockBits])<<foldBlockBits|int(r&(1<<foldBlockBits-1))]
	var base uint16
	switch id {
	case foldIDImplicitFB40:
		base = 0xFB40
	case foldIDImplicitFB80:
		base = 0xFB80
	case foldIDImplicitFBC0:
		base = 0xFBC0
	default:
		for _, w := range foldWeights[foldSeqStart[id]:foldSeqStart[id+1]] {
			b = append(b, byte(w>>8), byte(w))
		}
		return b
	}
	// UCA's implicit weights: two weights computed from the code point.
	hi, lo := base+uint16(r>>15), uint16(r&0x7FFF|0x8000)
	return append(b, byte(hi>>8), byte(hi), byte(lo>>8), byte(lo))
}

// CompareFolded orders two Folds as the collation orders the strings they came from: as if the
// shorter were padded with spaces.
func CompareFolded(a, b string) int {
	n := min(len(a), len(b))
	if c := strings.Compare(a[:n], b[:n]); c != 0 {
		return c
	}
	sign, rest := 1, a[n:]
	if len(b) > len(a) {
		sign, rest = -1, b[n:]
	}
	for i := 0; i+1 < len(rest); i += 2 {
		w := uint16(rest[i])<<8 | uint16(rest[i+1])
		if w != spaceWeight {
			if w > spaceWeight {
				return sign
			}
			return -sign
		}
	}
	return 0
}

// NormalizeEmail is the key under which two emails collide in the panel: trimmed and folded.
func NormalizeEmail(email string) string { return Fold(strings.TrimSpace(email)) }
