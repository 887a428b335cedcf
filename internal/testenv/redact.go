package testenv

import (
	"slices"
	"strings"
	"sync"
)

// secrets is every password and token the tests of this process hand a manager or the panel. No
// test prints one: Tail and Redact replace them all before anything reaches the test's output.
var secrets struct {
	sync.Mutex
	values []string
}

// Redacted replaces a secret in what the tests print.
const Redacted = "[REDACTED]"

// KeepSecret adds v to the values Redact and Tail replace, and LeaksSecret looks for.
func KeepSecret(v string) {
	secrets.Lock()
	defer secrets.Unlock()
	if v != "" && !slices.Contains(secrets.values, v) {
		secrets.values = append(secrets.values, v)
	}
}

// LeaksSecret reports whether s holds a value given to KeepSecret.
func LeaksSecret(s string) bool {
	secrets.Lock()
	defer secrets.Unlock()
	return slices.ContainsFunc(secrets.values, func(v string) bool { return strings.Contains(s, v) })
}

// Redact is s with every value given to KeepSecret replaced by Redacted.
func Redact(s string) string {
	secrets.Lock()
	defer secrets.Unlock()
	for _, v := range secrets.values {
		s = strings.ReplaceAll(s, v, Redacted)
	}
	return s
}

// Tail is the last lines of a manager's output, each cut to 300 characters (stack traces), with
// every secret the tests know replaced: what a test prints of an output goes through it.
func Tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(Redact(s), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	for i, l := range all {
		if len(l) > 300 {
			all[i] = l[:300] + "..."
		}
	}
	return strings.Join(all, "\n")
}

// Grep is the first n lines of out holding s, made fit to print.
func Grep(out, s string, n int) string {
	var found []string
	for l := range strings.SplitSeq(out, "\n") {
		if strings.Contains(l, s) && len(found) < n {
			found = append(found, l)
		}
	}
	return Tail(strings.Join(found, "\n"), n)
}
