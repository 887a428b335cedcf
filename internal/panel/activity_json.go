package panel

import (
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// The panel's activity rows hold PHP's json_encode of a User model (app/Traits/ModelActivityLogger.php).
// What the model hands json_encode depends on the event, so each view below renders one of them:
//
//   - toArray (create, delete): every column but the hidden password and remember_token, NULLs
//     included; created_at and updated_at through the model's serializeDate, "Y-m-d H:i:s" in the
//     app timezone (as stored); disable cast to a boolean, the other flags numbers.
//   - getOriginal (the old side of an update): the same columns, but dates come back as Carbon
//     objects, whose own JSON form is ISO-8601 in UTC with microseconds.
//   - getChanges (the new side of an update): only the columns written, raw, with updated_at as
//     stored.
//
// The password is never rendered: the panel leaks the old hash through getOriginal; we do not.
type userView int

const (
	viewToArray userView = iota
	viewOriginal
	viewChanges
)

// userJSON renders r, a users row read as text (NULL absent), as the panel's activity JSON for
// view. For viewChanges only the columns in r and in nulls are rendered, nulls as null; the other
// views render every column of userColumns, absent ones as null.
func (s *Store) userJSON(r row, view userView, nulls ...string) []byte {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	for _, c := range userColumns {
		v, present := r[c]
		isNull := !present
		if view == viewChanges && !present && !slices.Contains(nulls, c) {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		phpString(&b, c)
		b.WriteByte(':')
		switch {
		case isNull:
			b.WriteString("null")
		case c == "disable":
			b.WriteString(map[bool]string{true: "true", false: "false"}[v == "1"])
		case c == "two_factor" || c == "email_verified" || c == "phone_verified":
			b.WriteString(phpInt(v))
		case view == viewOriginal && (c == "created_at" || c == "updated_at"):
			phpString(&b, carbonJSON(v, s.loc))
		default:
			phpString(&b, v)
		}
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// phpInt is a flag column as PHP holds it after PDO fetched it: an integer (a value that is not
// one is rendered as a string, as PHP would hold it).
func phpInt(v string) string {
	if v == "" {
		return `""`
	}
	for i, r := range v {
		if (r < '0' || r > '9') && (i != 0 || r != '-' || len(v) == 1) {
			var b strings.Builder
			phpString(&b, v)
			return b.String()
		}
	}
	return v
}

// carbonJSON is a "Y-m-d H:i:s" column in the panel's timezone as Carbon's jsonSerialize writes
// it: ISO-8601 in UTC with microseconds.
func carbonJSON(v string, loc *time.Location) string {
	t, err := time.ParseInLocation(time.DateTime, v, loc)
	if err != nil {
		return v
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000Z")
}

// phpString writes v as PHP's json_encode does with no flags: '/' escaped as "\/", every
// non-ASCII character as a lowercase \uXXXX (UTF-16 surrogate pairs above the BMP), control
// characters as \b \f \n \r \t or \u00XX; '<', '>', '&' and the apostrophe left as they are. Bytes that are
// not UTF-8 become U+FFFD (json_encode would fail on them; the panel's own rows cannot hold them).
func phpString(b *strings.Builder, v string) {
	const hex = "0123456789abcdef"
	u := func(r rune) {
		b.WriteString(`\u`)
		b.WriteByte(hex[r>>12&0xf])
		b.WriteByte(hex[r>>8&0xf])
		b.WriteByte(hex[r>>4&0xf])
		b.WriteByte(hex[r&0xf])
	}
	b.WriteByte('"')
	for _, r := range v {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '/':
			b.WriteString(`\/`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20:
			u(r)
		case r < utf8.RuneSelf:
			b.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			u(0xd800 + (r >> 10))
			u(0xdc00 + (r & 0x3ff))
		default:
			u(r)
		}
	}
	b.WriteByte('"')
}
