package controller_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
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

// TestWaiterProceedsWhenTheHolderMovesToAnotherEmail changes the email of a Ready holder to a free
// one while its duplicate waits. The duplicate is woken by the change before the holder's reconcile
// has moved the panel user off the old email (forced: the holder's reconcile is held in its bcrypt
// call, before any panel write, by switching its Secret in the same edit). It must wait for that
// move and then proceed, not stop at BoundToAnotherResource with nothing left to wake it.
func TestWaiterProceedsWhenTheHolderMovesToAnotherEmail(t *testing.T) {
	probe, restore := controller.HoldHashes()
	t.Cleanup(restore) // after the manager stops (cleanups run last-in first-out)
	e := newEnv(t)
	t.Cleanup(probe.Release) // before the manager stops, so no reconcile stays held
	e.shutdown()
	e.secret("aaa-password", map[string]string{"password": testPassword})
	e.secret("aaa-password-2", map[string]string{"password": testPassword + "-2"})
	e.secret("bbb-password", map[string]string{"password": testPassword})
	holder := e.newUser("aaa", "old@example.com")
	e.create(holder)
	waiter := e.newUser("bbb", "old@example.com")
	e.create(waiter)
	// The holder's panel user, its Secret version applied: it becomes Ready without a hash.
	secret := &corev1.Secret{}
	if err := k8s.Get(e.ctx(), client.ObjectKey{Namespace: e.ns, Name: "aaa-password"}, secret); err != nil {
		t.Fatal(err)
	}
	hash, err := password.Hash(testPassword, 4)
	if err != nil {
		t.Fatal(err)
	}
	made, err := e.store.CreateUser(e.ctx(), panel.DesiredUser{Email: "old@example.com", FirstName: "Jane", LastName: "Doe"}, hash,
		&panel.Binding{Namespace: e.ns, Name: holder.Name, ResourceUID: string(holder.UID), InstanceID: e.opts.InstanceID,
			SecretVersion: controller.SecretVersion(secret)})
	if err != nil {
		t.Fatal(err)
	}
	e.start()
	e.waitUser(holder, v1.ReasonReconciled)
	e.wantHeldBy(e.waitUser(waiter, v1.ReasonDuplicateEmail), e.ns+"/aaa")
	if n := probe.Calls(); n != 0 {
		t.Fatalf("%d hashes before the email change, want 0", n)
	}

	update(e, holder, func(u *v1.User) {
		u.Spec.Email, u.Spec.PasswordSecretRef.Name = "new@example.com", "aaa-password-2"
	})
	e.eventually(30*time.Second, func() string {
		got := &v1.User{}
		if err := k8s.Get(e.ctx(), client.ObjectKeyFromObject(waiter), got); err != nil {
			return err.Error()
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)
		if probe.Running() != 1 || c == nil || c.Reason != v1.ReasonDuplicateEmail || !strings.Contains(c.Message, "whose spec.email changed") {
			return fmt.Sprintf("with the holder's reconcile held (%d hashes running), the waiter's Ready = %+v, "+
				"want DuplicateEmail waiting for aaa to move", probe.Running(), c)
		}
		return ""
	})
	probe.Release()

	if got := e.waitUser(holder, v1.ReasonReconciled); got.Status.UUID != made.UUID {
		t.Errorf("the holder manages %s after its email change, want %s", got.Status.UUID, made.UUID)
	}
	got := e.waitUser(waiter, v1.ReasonReconciled)
	if got.Status.UUID == "" || got.Status.UUID == made.UUID || e.count("SELECT COUNT(*) FROM users") != 2 {
		t.Errorf("the waiter manages %q (the holder's is %s); %d panel users, want 2", got.Status.UUID, made.UUID,
			e.count("SELECT COUNT(*) FROM users"))
	}
}
