package crdvalidation_test

import (
	"net/mail"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The rules the API promises, as README.md's field reference and the API types' doc comments
// state them, written out in plain Go, with no regular expression and nothing of the API
// server's. A field set to null is a field not set (the API server drops nulls). Lengths are
// in characters.

// userSpecValid is whether a User's spec is one the API accepts:
//   - email (required): the login email, 3 to 255 characters: a bare address as a person types
//     it at the panel's login form, which net/mail reads as one address with no display name,
//     holding no white space, angle brackets, parentheses, square brackets, quotes, backslash,
//     colon, semicolon or comma (display names, comments, quoted local parts, domain literals);
//   - passwordSecretRef (required): name (required, 1 to 253 characters); key "password" (the
//     default) or "passwordHash";
//   - firstName, lastName (required): 1 to 255 characters; adminNotes: up to 65535;
//   - phone: E.164, "+" and 7 to 15 digits; language: two lower-case letters, optionally "_" and
//     two upper-case letters;
//   - emailVerified, phoneVerified, twoFactor.enabled: booleans; twoFactor.method "Email" or "TOTP";
//   - twoFactor.enabled true with a method other than "TOTP" (Email, or unset) needs
//     emailVerified true: the panel sends no code to an unverified address;
//   - state "Active" or "Inactive"; adoption "Never" or "IfExists"; deletionPolicy "Delete",
//     "Retain" or "Disable".
func userSpecValid(v any) bool {
	spec, ok := v.(map[string]any)
	if !ok {
		return false
	}
	email, ok := spec["email"].(string)
	if !ok || !validEmail(email) {
		return false
	}
	ref, ok := spec["passwordSecretRef"].(map[string]any)
	if !ok {
		return false
	}
	name, ok := ref["name"].(string)
	if !ok || !between(name, 1, 253) || !optionalOneOf(ref, "key", "password", "passwordHash") {
		return false
	}
	for _, field := range []string{"firstName", "lastName"} {
		if s, ok := spec[field].(string); !ok || !between(s, 1, 255) {
			return false
		}
	}
	if !optionalString(spec, "adminNotes", func(s string) bool { return between(s, 0, 65535) }) {
		return false
	}
	if !optionalString(spec, "phone", validPhone) || !optionalString(spec, "language", validLanguage) {
		return false
	}
	if !optionalBool(spec, "emailVerified") || !optionalBool(spec, "phoneVerified") {
		return false
	}
	if tf, set := spec["twoFactor"]; set && tf != nil {
		tf, ok := tf.(map[string]any)
		if !ok || !optionalBool(tf, "enabled") || !optionalOneOf(tf, "method", "Email", "TOTP") {
			return false
		}
		if tf["enabled"] == true && tf["method"] != "TOTP" && spec["emailVerified"] != true {
			return false
		}
	}
	return optionalOneOf(spec, "state", "Active", "Inactive") && optionalOneOf(spec, "adoption", "Never", "IfExists") &&
		optionalOneOf(spec, "deletionPolicy", "Delete", "Retain", "Disable")
}

// membershipSpecValid is whether a ClientMembership's spec is one the API accepts on creation:
//   - userRef (required): name (required, 1 to 253 characters);
//   - client (required): exactly one of uuid (a lower-case, hyphenated UUID: 8-4-4-4-12 hex
//     digits) and companyName (1 to 255 characters);
//   - owner: a boolean; permissions: up to 8 of the panel's permission keys, none twice;
//   - deletionPolicy "Delete" (the default) or "Retain".
//
// userRef and client cannot change (checked by the fuzz target on updates).
func membershipSpecValid(v any) bool {
	spec, ok := v.(map[string]any)
	if !ok {
		return false
	}
	ref, ok := spec["userRef"].(map[string]any)
	if !ok {
		return false
	}
	if name, ok := ref["name"].(string); !ok || !between(name, 1, 253) {
		return false
	}
	client, ok := spec["client"].(map[string]any)
	if !ok {
		return false
	}
	if byUUID, byName := client["uuid"] != nil, client["companyName"] != nil; byUUID == byName || !optionalString(client, "uuid", validUUID) ||
		!optionalString(client, "companyName", func(s string) bool { return between(s, 1, 255) }) {
		return false
	}
	if !optionalBool(spec, "owner") || !optionalOneOf(spec, "deletionPolicy", "Delete", "Retain") {
		return false
	}
	if perms, set := spec["permissions"]; set && perms != nil {
		list, ok := perms.([]any)
		if !ok || len(list) > 8 {
			return false
		}
		seen := map[string]bool{}
		for _, p := range list {
			s, ok := p.(string)
			if !ok || seen[s] || !oneOf(s, "modify-master-profile", "manage-users", "manage-services", "manage-domains",
				"manage-invoices", "manage-support-tickets", "manage-affiliate", "manage-orders") {
				return false
			}
			seen[s] = true
		}
	}
	return true
}

func validEmail(s string) bool {
	if !between(s, 3, 255) || strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || strings.ContainsRune(`<>()[]"\:;,`, r)
	}) {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s
}

func validPhone(s string) bool {
	digits, ok := strings.CutPrefix(s, "+")
	return ok && len(digits) >= 7 && len(digits) <= 15 && allBytes(digits, isDigit)
}

func validLanguage(s string) bool {
	lang, region, withRegion := strings.Cut(s, "_")
	return len(lang) == 2 && allBytes(lang, isLower) && (!withRegion || (len(region) == 2 && allBytes(region, isUpper)))
}

func validUUID(s string) bool {
	parts := strings.Split(s, "-")
	if len(parts) != 5 {
		return false
	}
	for i, n := range []int{8, 4, 4, 4, 12} {
		if len(parts[i]) != n || !allBytes(parts[i], func(c byte) bool { return isDigit(c) || (c >= 'a' && c <= 'f') }) {
			return false
		}
	}
	return true
}

func between(s string, lo, hi int) bool {
	n := utf8.RuneCountInString(s)
	return n >= lo && n <= hi
}

func optionalString(m map[string]any, field string, ok func(string) bool) bool {
	v, set := m[field]
	if !set || v == nil {
		return true
	}
	s, isString := v.(string)
	return isString && ok(s)
}

func optionalBool(m map[string]any, field string) bool {
	v, set := m[field]
	if !set || v == nil {
		return true
	}
	_, isBool := v.(bool)
	return isBool
}

func optionalOneOf(m map[string]any, field string, values ...string) bool {
	return optionalString(m, field, func(s string) bool { return oneOf(s, values...) })
}

func oneOf(s string, values ...string) bool { return slices.Contains(values, s) }

func allBytes(s string, ok func(byte) bool) bool {
	for i := range len(s) {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
