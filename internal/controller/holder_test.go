package controller_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
)

// wantHeldBy fails the test unless the User's Ready condition names holder (namespace/name).
func (e *env) wantHeldBy(u *v1.User, holder string) {
	e.t.Helper()
	if msg := meta.FindStatusCondition(u.Status.Conditions, v1.ConditionReady).Message; !strings.Contains(msg, holder) {
		e.t.Errorf("%s: the message does not name the holder %s: %s", u.Name, holder, msg)
	}
}

// TestEmailHolderIsTheUserBoundToThePanelUser forces the interleaving of two Users with one email
// where the younger reconciled first: the younger's panel user and binding are written while the
// manager is stopped, then the manager starts with both Users present. The binding is the truth:
// the younger keeps the panel user, the older waits naming it, and proceeds once it is gone.
func TestEmailHolderIsTheUserBoundToThePanelUser(t *testing.T) {
	e := newEnv(t)
	e.shutdown()
	e.secret("aaa-password", map[string]string{"password": testPassword})
	e.secret("zzz-password", map[string]string{"password": testPassword})
	// Created in this order, aaa is the older by creationTimestamp or, in the same second, by name.
	older := e.newUser("aaa", "shared@example.com")
	e.create(older)
	younger := e.newUser("zzz", "SHARED@example.com")
	e.create(younger)
	hash, err := password.Hash(testPassword, 4)
	if err != nil {
		t.Fatal(err)
	}
	made, err := e.store.CreateUser(e.ctx(), panel.DesiredUser{Email: "shared@example.com", FirstName: "Jane", LastName: "Doe"}, hash,
		&panel.Binding{Namespace: e.ns, Name: younger.Name, ResourceUID: string(younger.UID), InstanceID: e.opts.InstanceID})
	if err != nil {
		t.Fatal(err)
	}
	e.start()

	got := e.waitUser(younger, v1.ReasonReconciled)
	if got.Status.UUID != made.UUID {
		t.Errorf("the bound User manages %s, want the panel user bound to it, %s", got.Status.UUID, made.UUID)
	}
	e.wantHeldBy(e.waitUser(older, v1.ReasonDuplicateEmail), e.ns+"/zzz")
	if n := e.count("SELECT COUNT(*) FROM users"); n != 1 {
		t.Errorf("%d panel users, want 1", n)
	}
	if b, err := e.store.GetBinding(e.ctx(), made.UUID); err != nil || b.Name != younger.Name {
		t.Errorf("the panel user's binding = %+v (%v), want it still bound to %s", b, err, younger.Name)
	}

	// The holder goes (its panel user with it); the waiting User proceeds with a panel user of its own.
	if err := k8s.Delete(e.ctx(), got); err != nil {
		t.Fatal(err)
	}
	e.waitGone(got)
	now := e.waitUser(older, v1.ReasonReconciled)
	if now.Status.UUID == "" || now.Status.UUID == made.UUID || e.count("SELECT COUNT(*) FROM users") != 1 {
		t.Errorf("after the holder left: uuid %q (the holder's was %s), %d panel users", now.Status.UUID, made.UUID,
			e.count("SELECT COUNT(*) FROM users"))
	}
}

// TestEmailChangeWakesThePeersOfBothEmails changes the email of the oldest User to one another User
// already has. The peers of the old email (a duplicate waiting for it) and of the new one (a User
// that now loses the email to an older one) are woken by the change alone: nothing else touches
// them (their Secrets do not change, no panel write is theirs, the resync is an hour away).
func TestEmailChangeWakesThePeersOfBothEmails(t *testing.T) {
	e := newEnv(t)
	// aaa is the oldest and has no password Secret, so it never writes the panel: the peers'
	// decisions depend on the change of its email alone, not on when its panel write lands.
	oldest := e.newUser("aaa", "old@example.com")
	e.create(oldest)
	e.waitUser(oldest, v1.ReasonSecretNotFound)
	e.secret("bbb-password", map[string]string{"password": testPassword})
	waiter := e.newUser("bbb", "Old@example.com")
	e.create(waiter)
	e.wantHeldBy(e.waitUser(waiter, v1.ReasonDuplicateEmail), e.ns+"/aaa")
	taker := e.newUser("zzz", "new@example.com")
	e.create(taker)
	e.waitUser(taker, v1.ReasonSecretNotFound)

	update(e, oldest, func(u *v1.User) { u.Spec.Email = "NEW@example.com" })

	e.waitUser(waiter, v1.ReasonReconciled)
	e.wantHeldBy(e.waitUser(taker, v1.ReasonDuplicateEmail), e.ns+"/aaa")
	e.waitUser(oldest, v1.ReasonSecretNotFound)
	if n := e.count("SELECT COUNT(*) FROM users"); n != 1 {
		t.Errorf("%d panel users, want 1 (the old email's)", n)
	}
}
