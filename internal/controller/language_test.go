package controller_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// A User without spec.language gets the panel's default client locale, then leaves the language
// the person picks in the client area alone: the panel's middleware (which saves the default on
// every visit while the language is empty or not enabled) and the resync never write in turn.
func TestEmptyLanguageNeverFightsThePanelMiddleware(t *testing.T) {
	e := newEnv(t, withResync(300*time.Millisecond), func(e *env) { e.opts.DefaultLanguage = "uk" })
	e.secret("jane-password", map[string]string{"password": testPassword})
	u := e.newUser("jane", "jane@example.com", func(u *v1.User) { u.Spec.Language = "" })
	e.create(u)
	id := e.waitUser(u, v1.ReasonReconciled).Status.UUID
	if got := e.str("SELECT language FROM users WHERE uuid = ?", id); got != "uk" {
		t.Fatalf("a User without spec.language has panel language %q, want the default client locale uk", got)
	}
	e.waitResyncs(1)

	// The person picks Polish in the client area.
	if _, err := e.db.Exec("UPDATE users SET language = 'pl', updated_at = NOW() WHERE uuid = ?", id); err != nil {
		t.Fatal(err)
	}
	before := e.dbStatements()
	activity := e.count("SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ?", id)
	// Four more visits, each as the middleware handles one, with a resync after each of the first
	// three: 3 resyncs compare the User.
	for visit := 2; visit <= 5; visit++ {
		e.middlewareVisit(id, e.opts.Languages, "uk")
		if visit < 5 {
			e.waitResyncs(1)
		}
	}
	after := e.dbStatements()
	for _, c := range dbWriteCounters {
		if n := after[c] - before[c]; n != 0 {
			t.Errorf("%s moved by %d after the person chose a language", c, n)
		}
	}
	if n := e.count("SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ?", id) - activity; n != 0 {
		t.Errorf("%d activity rows after the person chose a language, want 0", n)
	}
	if got := e.str("SELECT language FROM users WHERE uuid = ?", id); got != "pl" {
		t.Errorf("the language the person chose became %q, want pl", got)
	}
}

// waitResyncs waits until the resync has compared Users n more times.
func (e *env) waitResyncs(n float64) {
	e.t.Helper()
	compared := registryValue(e.t, metricResync)
	e.eventually(20*time.Second, func() string {
		if got := registryValue(e.t, metricResync) - compared; got < n {
			return fmt.Sprintf("the resync compared Users %v times, want %v", got, n)
		}
		return ""
	})
}

// middlewareVisit does what the panel's client-area middleware does on a request: save the
// default client locale when the user's language is empty or not one of the enabled locales.
func (e *env) middlewareVisit(userUUID string, enabled []string, def string) {
	e.t.Helper()
	if lang := e.str("SELECT language FROM users WHERE uuid = ?", userUUID); lang != "" && slices.Contains(enabled, lang) {
		return
	}
	if _, err := e.db.Exec("UPDATE users SET language = ?, updated_at = NOW() WHERE uuid = ?", def, userUUID); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.db.Exec("INSERT INTO activity_logs (uuid, action, level, model_type, model_uuid, created_at, "+
		"updated_at) VALUES (UUID(), 'update', 'info', 'App\\\\Models\\\\User', ?, NOW(), NOW())", userUUID); err != nil {
		e.t.Fatal(err)
	}
}
