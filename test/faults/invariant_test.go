package faults

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
)

// The invariant is the suite's proof, so it must go red when the world is wrong. A manager
// builds a world that holds it (five Users, one of them a member of a client owned by a panel
// user made outside the operator); then, with the manager stopped so that nothing repairs it,
// each subtest breaks one clause by hand, the way a fault or a bug would leave the world, and
// checks that the invariant names that clause, then undoes the break and checks the world is
// whole again.
func TestInvariantGoesRedForEachBrokenClause(t *testing.T) {
	ctx := context.Background()
	s := newScenario(t, "checker")
	w := s.w
	m := s.start()
	owner, err := w.PanelUser(ctx, "owner@"+w.Namespace+".faults.example.com", "Olga")
	if err != nil {
		t.Fatal(err)
	}
	clientUUID, err := w.PanelClient(ctx, "Checker Ltd "+w.Namespace, owner)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob", "carol", "dave", "erin"} {
		if _, err := w.CreateUser(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.CreateMembership(ctx, "alice-checker", "alice", clientUUID, false); err != nil {
		t.Fatal(err)
	}
	if f := CheckInvariant(t, w, 2*time.Minute); !f.Converged {
		t.FailNow()
	}
	m.Stop()
	uuidOf := func(name string) string {
		var u v1.User
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: w.Namespace, Name: name}, &u); err != nil {
			t.Fatal(err)
		}
		return u.Status.UUID
	}
	exec := func(query string, args ...any) {
		t.Helper()
		if _, err := w.Panel.Root.ExecContext(ctx, query, args...); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
	alice, bob := uuidOf("alice"), uuidOf("bob")

	t.Run("a panel user's column changed behind the operator's back", func(t *testing.T) {
		exec("UPDATE users SET firstname = 'Mallory' WHERE uuid = ?", bob)
		wantViolation(t, w, ClauseOneUser, `firstname is "Mallory"`)
		exec("UPDATE users SET firstname = 'Grace' WHERE uuid = ?", bob)
		wantClean(t, w)
	})
	t.Run("a password the person's Secret does not open", func(t *testing.T) {
		var hash string
		if err := w.Panel.Root.QueryRowContext(ctx, "SELECT password FROM users WHERE uuid = ?", bob).Scan(&hash); err != nil {
			t.Fatal(err)
		}
		exec("UPDATE users SET password = (SELECT password FROM users WHERE uuid = ?) WHERE uuid = ?", alice, bob)
		wantViolation(t, w, ClauseOneUser, "cannot log in with the password in its Secret")
		exec("UPDATE users SET password = ? WHERE uuid = ?", hash, bob)
		wantClean(t, w)
	})
	t.Run("a panel user deleted behind the operator's back", func(t *testing.T) {
		carol := uuidOf("carol")
		exec("DELETE FROM users WHERE uuid = ?", carol)
		wantViolation(t, w, ClauseOneUser, "User carol is Ready, but no panel user is bound to it")
		wantViolation(t, w, ClauseBindings, "names panel user "+carol+", which does not exist")
		exec("DELETE FROM puq_operator_bindings WHERE user_uuid = ?", carol)
		forceDelete(t, &v1.User{}, w.Namespace, "carol")
		wantClean(t, w)
	})
	t.Run("a User gone and its panel user and binding left behind", func(t *testing.T) {
		dave := uuidOf("dave")
		forceDelete(t, &v1.User{}, w.Namespace, "dave")
		wantViolation(t, w, ClauseOneUser, "panel user "+dave)
		wantViolation(t, w, ClauseBindings, "is bound to User "+w.Namespace+"/dave")
		exec("DELETE FROM puq_operator_bindings WHERE user_uuid = ?", dave)
		exec("DELETE FROM users WHERE uuid = ?", dave)
		wantClean(t, w)
	})
	t.Run("an association no ClientMembership holds", func(t *testing.T) {
		exec("INSERT INTO client_x_user (client_uuid, user_uuid, `owner`, permissions) VALUES (?, ?, 0, '[]')", clientUUID, bob)
		wantViolation(t, w, ClauseAssociations, "panel user "+bob+" is associated with client "+clientUUID)
		exec("DELETE FROM client_x_user WHERE client_uuid = ? AND user_uuid = ?", clientUUID, bob)
		wantClean(t, w)
	})
	t.Run("an association that differs from its Ready ClientMembership", func(t *testing.T) {
		exec("UPDATE client_x_user SET permissions = '[\"manage-users\"]' WHERE client_uuid = ? AND user_uuid = ?", clientUUID, alice)
		wantViolation(t, w, ClauseAssociations, "ClientMembership alice-checker is Ready with permissions")
		exec("UPDATE client_x_user SET permissions = '[\"manage-services\",\"manage-invoices\"]' WHERE client_uuid = ? "+
			"AND user_uuid = ?", clientUUID, alice)
		wantClean(t, w)
	})
	t.Run("an activity row written twice", func(t *testing.T) {
		dup := uuid.NewString()
		exec("INSERT INTO activity_logs (uuid, level, action, description, model_type, model_uuid, model_old_data, "+
			"model_new_data, created_at, updated_at) SELECT ?, level, action, description, model_type, model_uuid, "+
			"model_old_data, model_new_data, created_at, updated_at FROM activity_logs WHERE model_uuid = ? AND action = 'create'",
			dup, alice)
		wantViolation(t, w, ClauseActivity, `2 identical "create" rows about panel user `+alice)
		wantViolation(t, w, ClauseActivity, "panel user "+alice+" has 2 create rows")
		exec("DELETE FROM activity_logs WHERE uuid = ?", dup)
		wantClean(t, w)
	})
	t.Run("a password written with no rotation asking for it", func(t *testing.T) {
		extra := uuid.NewString()
		exec("INSERT INTO activity_logs (uuid, level, action, description, model_type, model_uuid, model_old_data, "+
			"model_new_data, created_at, updated_at) VALUES (?, 'info', 'update', ?, 'App\\\\Models\\\\User', ?, '{}', "+
			"'{\"updated_at\":\"2026-01-01T00:00:00.000000Z\"}', NOW(), NOW())", extra, "App\\Models\\User:"+bob, bob)
		wantViolation(t, w, ClauseActivity, "has 1 password writes for 0 rotations")
		exec("DELETE FROM activity_logs WHERE uuid = ?", extra)
		wantClean(t, w)
	})
	t.Run("a User not Ready with no cause named", func(t *testing.T) {
		restore := setReady(t, w, "bob", metav1.ConditionFalse, v1.ReasonProgressing, "Reconciling")
		wantViolation(t, w, ClauseConditions, "User bob is not Ready (Progressing")
		restore()
		wantClean(t, w)
	})
	t.Run("a User waiting for a database that answers", func(t *testing.T) {
		restore := setReady(t, w, "bob", metav1.ConditionFalse, v1.ReasonDatabaseUnavailable, "The panel database did not answer.")
		wantViolation(t, w, ClauseConditions, "the panel database answers")
		restore()
		wantClean(t, w)
	})
	t.Run("a User Ready for an older generation", func(t *testing.T) {
		var u v1.User
		update := func(first string) {
			t.Helper()
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				if err := k8s.Get(ctx, types.NamespacedName{Namespace: w.Namespace, Name: "bob"}, &u); err != nil {
					return err
				}
				u.Spec.FirstName = first
				return k8s.Update(ctx, &u)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		update("Robert")
		wantViolation(t, w, ClauseConditions, "User bob is Ready for generation")
		update("Grace")
		u.Status.ObservedGeneration = u.Generation
		if err := k8s.Status().Update(ctx, &u); err != nil {
			t.Fatal(err)
		}
		wantClean(t, w)
	})
	t.Run("a finalizer held with no condition naming why, then for a cause that is gone", func(t *testing.T) {
		erin := uuidOf("erin")
		if err := w.DeleteUser(ctx, "erin"); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, w, ClauseFinalizers, "User erin is being deleted and holds its finalizer, and no condition names why")
		setReady(t, w, "erin", metav1.ConditionFalse, v1.ReasonDeletionBlocked, "Waiting for 1 ClientMembership(s) of this User to be removed.")
		wantViolation(t, w, ClauseFinalizers, "the User has no ClientMembership and its panel user no client left")
		forceDelete(t, &v1.User{}, w.Namespace, "erin")
		exec("DELETE FROM puq_operator_bindings WHERE user_uuid = ?", erin)
		exec("DELETE FROM users WHERE uuid = ?", erin)
		wantClean(t, w)
	})
}

// wantViolation fails unless one look at the world breaks clause with a violation saying what.
func wantViolation(t *testing.T, w *World, clause, what string) {
	t.Helper()
	_, v := w.Violations(context.Background(), true)
	if !slices.ContainsFunc(v, func(x Violation) bool { return x.Clause == clause && strings.Contains(x.What, what) }) {
		t.Errorf("the invariant did not break %q with %q; it found %d violations:\n%s", clause, what, len(v), describe(v, 10))
	}
}

// wantClean fails unless one look at the world finds it whole.
func wantClean(t *testing.T, w *World) {
	t.Helper()
	if _, v := w.Violations(context.Background(), true); len(v) > 0 {
		t.Errorf("after the break was undone, the invariant still finds %d violations:\n%s", len(v), describe(v, 10))
	}
}

// setReady writes the User's Ready condition by hand and returns a function writing back the
// status it replaced.
func setReady(t *testing.T, w *World, name string, status metav1.ConditionStatus, reason, message string) func() {
	t.Helper()
	ctx := context.Background()
	var u v1.User
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: w.Namespace, Name: name}, &u); err != nil {
		t.Fatal(err)
	}
	saved := u.Status.DeepCopy()
	meta.SetStatusCondition(&u.Status.Conditions, metav1.Condition{Type: v1.ConditionReady, Status: status, Reason: reason,
		Message: message, ObservedGeneration: u.Generation})
	if err := k8s.Status().Update(ctx, &u); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(&u), &u); err != nil {
				return err
			}
			u.Status = *saved
			return k8s.Status().Update(ctx, &u)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// forceDelete deletes an object the way the API server does once its finalizers are gone, with
// no manager to remove them: a User gone for good.
func forceDelete(t *testing.T, obj client.Object, namespace, name string) {
	t.Helper()
	ctx := context.Background()
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, key, obj); err != nil {
			return err
		}
		controllerutil.RemoveFinalizer(obj, controller.UserFinalizer)
		controllerutil.RemoveFinalizer(obj, controller.MembershipFinalizer)
		return k8s.Update(ctx, obj)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.IgnoreNotFound(k8s.Delete(ctx, obj)); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if err := k8s.Get(ctx, key, obj); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s is still there", fmt.Sprint(key))
}
