package faults

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
)

// A User created and deleted at once, again and again, and an owner ClientMembership of a
// standing User created and deleted the same way, must leave nothing behind: no panel login
// without a User, no association (nor ownership) without a ClientMembership. Half of the cycles
// delete right after the create; the other half delete the moment the operator's finalizer
// appears, that is while the operator is writing the panel user or the association: a deletion
// landing between that commit and the status write is the window this scenario is about.
//
// An owner membership that reached the panel made the standing User the client's owner, and
// the panel does not remove an owner: such a deletion waits (OwnerRemovalBlocked) until an admin
// transfers the ownership back in the panel UI, which the scenario then does, as the condition's
// message says to.
func TestCreateThenDeleteWithNoWaitLeavesNothingBehind(t *testing.T) {
	cycles := size(10, 50)
	ctx := context.Background()
	s := newScenario(t, "churn")
	w := s.w
	s.start()
	owner, err := w.PanelUser(ctx, "owner@"+w.Namespace+".faults.example.com", "Olga")
	if err != nil {
		t.Fatal(err)
	}
	clientUUID, err := w.PanelClient(ctx, "Churn Ltd "+w.Namespace, owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.CreateUser(ctx, "holder"); err != nil {
		t.Fatal(err)
	}
	s.waitReadyCount(1, time.Minute)

	start := time.Now()
	for i := range cycles {
		atFinalizer := i%2 == 1
		name := fmt.Sprintf("churn-%d", i)
		if _, err := w.CreateUser(ctx, name); err != nil {
			t.Fatal(err)
		}
		if atFinalizer {
			waitFinalizer(t, &v1.User{}, w.Namespace, name, controller.UserFinalizer)
		}
		if err := w.DeleteUser(ctx, name); err != nil {
			t.Fatal(err)
		}
		membership := fmt.Sprintf("own-%d", i)
		if _, err := w.CreateMembership(ctx, membership, "holder", clientUUID, true); err != nil {
			t.Fatal(err)
		}
		if atFinalizer {
			waitFinalizer(t, &v1.ClientMembership{}, w.Namespace, membership, controller.MembershipFinalizer)
		}
		if err := w.DeleteMembership(ctx, membership); err != nil {
			t.Fatal(err)
		}
	}
	churning := time.Since(start)

	// Every membership is gone or waits for the transfer; then the admin transfers it back.
	blocked := waitMembershipsSettle(t, w, time.Minute)
	transferred := false
	if now, err := w.ClientOwner(ctx, clientUUID); err != nil {
		t.Fatal(err)
	} else if now != owner {
		if err := w.TransferOwnership(ctx, clientUUID, owner); err != nil {
			t.Fatal(err)
		}
		transferred = true
	}
	f := CheckInvariant(t, w, size(time.Minute, 2*time.Minute))
	if len(f.NotReady) > 0 {
		t.Errorf("objects not Ready at the end: %v", f.NotReady)
	}
	s.figures("%d cycles of create-then-delete of a User and of an owner ClientMembership over %.1fs "+
		"(half at once, half at the finalizer); %d deletions waited for the ownership transfer (made: %v); %s",
		cycles, churning.Seconds(), blocked, transferred, f)
}

// waitFinalizer polls until the object carries the finalizer: the operator has begun on it.
func waitFinalizer(t *testing.T, obj client.Object, namespace, name, finalizer string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := k8s.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: name}, obj)
		if err == nil && slices.Contains(obj.GetFinalizers(), finalizer) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s has no finalizer %s after 30s (%v)", namespace, name, finalizer, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitMembershipsSettle polls until every ClientMembership of the world is gone or waits with
// OwnerRemovalBlocked, and returns how many wait. At the deadline it returns what it has: the
// invariant then says what is wrong.
func waitMembershipsSettle(t *testing.T, w *World, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var list v1.ClientMembershipList
		if err := k8s.List(context.Background(), &list, client.InNamespace(w.Namespace)); err != nil {
			t.Fatal(err)
		}
		blocked := 0
		for _, m := range list.Items {
			if hasReason(m.Status.Conditions, v1.ReasonOwnerRemovalBlocked) {
				blocked++
			}
		}
		if blocked == len(list.Items) || time.Now().After(deadline) {
			return blocked
		}
		time.Sleep(100 * time.Millisecond)
	}
}
