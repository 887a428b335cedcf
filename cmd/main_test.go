package main

import (
	"flag"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sampleValues are values, other than the defaults, for the flags that take only certain words;
// every other flag gets one made from its default (a flipped bool, a number plus one, a longer
// duration, a string).
var sampleValues = map[string]string{
	"zap-encoder":          "console",
	"zap-log-level":        "debug",
	"zap-stacktrace-level": "info",
	"zap-time-encoding":    "rfc3339",
	"metrics-bind-address": "127.0.0.1:9443",
	"panel-dsn":            "mysql://puq@tcp(db:3306)/puqcloud",
}

// newFlagSet is the manager's flag set, parsed from args and env, and every flag it holds.
func newFlagSet(t *testing.T, args []string, env map[string]string) (*flag.FlagSet, settings, error) {
	t.Helper()
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s, _, err := parseFlags(fs, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	return fs, s, err
}

// puqVar is the variable the README promises for a flag: PUQ_<FLAG>, upper case, dashes as
// underscores.
func puqVar(flagName string) string {
	return "PUQ_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// sample is a valid value for f that differs from its default.
func sample(t *testing.T, f *flag.Flag) string {
	t.Helper()
	if v, ok := sampleValues[f.Name]; ok {
		return v
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		v, _ := strconv.ParseBool(f.DefValue)
		return strconv.FormatBool(!v)
	}
	if n, err := strconv.Atoi(f.DefValue); err == nil {
		return strconv.Itoa(n + 1)
	}
	if d, err := time.ParseDuration(f.DefValue); err == nil {
		return (d + 7*time.Second).String()
	}
	return "sample-" + f.Name
}

// Every flag of the manager can be set as PUQ_<FLAG> (upper case, dashes as underscores), with the
// same effect as the flag itself. The flag set is the binary's own (main parses nothing else), so
// a flag added later is covered without touching this test.
func TestEveryFlagCanBeSetAsAPUQEnvironmentVariable(t *testing.T) {
	all, _, err := newFlagSet(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	var names []string
	all.VisitAll(func(f *flag.Flag) {
		names = append(names, f.Name)
		env[puqVar(f.Name)] = sample(t, f)
	})
	for _, want := range []string{"panel-dsn", "namespace", "kubeconfig", "leader-elect", "zap-log-level"} {
		if all.Lookup(want) == nil {
			t.Errorf("the manager has no --%s", want)
		}
	}
	fromEnv, _, err := newFlagSet(t, nil, env)
	if err != nil {
		t.Fatalf("parse with every PUQ_ variable set: %v", err)
	}
	for _, name := range names {
		fromFlag, _, err := newFlagSet(t, []string{"--" + name + "=" + env[puqVar(name)]}, nil)
		if err != nil {
			t.Errorf("--%s=%s: %v", name, env[puqVar(name)], err)
			continue
		}
		want, got := fromFlag.Lookup(name).Value.String(), fromEnv.Lookup(name).Value.String()
		if got != want || got == fromFlag.Lookup(name).DefValue {
			t.Errorf("%s=%s gives --%s %q, the flag itself gives %q (default %q)", puqVar(name), env[puqVar(name)],
				name, got, want, fromFlag.Lookup(name).DefValue)
		}
	}
	if len(names) < 25 {
		t.Errorf("only %d flags: %v", len(names), names)
	}
}

// The environment sets defaults: a flag on the command line wins over its variable.
func TestCommandLineFlagOverridesItsEnvironmentVariable(t *testing.T) {
	_, s, err := newFlagSet(t, []string{"--namespace=from-flag", "--bcrypt-cost=10"},
		map[string]string{"PUQ_NAMESPACE": "from-env", "PUQ_BCRYPT_COST": "14", "PUQ_INSTANCE_ID": "env-only"})
	if err != nil {
		t.Fatal(err)
	}
	if s.namespaces != "from-flag" || s.bcryptCost != 10 || s.instanceID != "env-only" {
		t.Errorf("namespace %q, bcrypt cost %d, instance ID %q; want from-flag, 10 and env-only", s.namespaces, s.bcryptCost,
			s.instanceID)
	}
}

// A variable that does not parse stops the manager with an error naming the variable.
func TestInvalidEnvironmentVariableIsRefusedByName(t *testing.T) {
	_, _, err := newFlagSet(t, nil, map[string]string{"PUQ_RESYNC_PERIOD": "often"})
	if err == nil || !strings.Contains(err.Error(), "PUQ_RESYNC_PERIOD") {
		t.Errorf("PUQ_RESYNC_PERIOD=often: %v, want an error naming the variable", err)
	}
}

// --default-language defaults to the first of --languages, and one the panel does not offer stops
// the manager at start with an error naming both flags and the panel settings they mirror.
func TestDefaultLanguageMustBeOneOfTheLanguages(t *testing.T) {
	for _, c := range []struct {
		flag, want string
		err        bool
	}{
		{"", "en", false},
		{"pl", "pl", false},
		{"de", "", true},
	} {
		got, err := defaultLanguage([]string{"en", "uk", "pl"}, c.flag)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("--default-language=%q: %q, %v; want %q (error %v)", c.flag, got, err, c.want, c.err)
		}
		if err != nil && (!strings.Contains(err.Error(), "--languages=en,uk,pl") ||
			!strings.Contains(err.Error(), "locale.client.default")) {
			t.Errorf("--default-language=%q: the error does not say what to set: %v", c.flag, err)
		}
	}
}
