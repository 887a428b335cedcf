package controller_test

import (
	"fmt"
	"testing"
	"time"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
)

// metricHashState is the gauge of passwords waiting for a hash slot and being hashed.
const metricHashState = "puq_user_operator_bcrypt_hashes"

// With one hash slot, a burst of new passwords, each in its own reconcile worker, is hashed one at
// a time: the others wait for the slot while the first is held in bcrypt.
func TestOneHashSlotHashesOnePasswordAtATime(t *testing.T) {
	hashBurst(t, 1, 4)
}

// With N hash slots, a burst of new passwords keeps all N busy and never more.
func TestABurstOfPasswordsUsesEveryHashSlotAndNoMore(t *testing.T) {
	hashBurst(t, 3, 6)
}

// hashBurst creates users Users at once with as many reconcile workers, holds every bcrypt call,
// and waits until slots hashes are held and the rest wait for a slot (both counted, not timed).
func hashBurst(t *testing.T, slots, users int) {
	probe, restore := controller.HoldHashes()
	t.Cleanup(restore) // after the manager stops (cleanups run last-in first-out)
	waiting := registryValue(t, metricHashState, "state", "waiting")
	e := newEnv(t, withReconcileWorkers(users), withHashSlots(slots))
	t.Cleanup(probe.Release) // before the manager stops, so no reconcile stays held
	list := make([]*v1.User, users)
	for i := range list {
		name := fmt.Sprintf("burst-%d", i)
		e.secret(name+"-password", map[string]string{"password": testPassword})
		list[i] = e.newUser(name, name+"@example.com")
		e.create(list[i])
	}
	e.eventually(30*time.Second, func() string {
		if probe.Max() > slots {
			t.Fatalf("%d bcrypt hashes ran at once with %d hash slots", probe.Max(), slots)
		}
		w := registryValue(t, metricHashState, "state", "waiting") - waiting
		if probe.Running() != slots || int(w) != users-slots {
			return fmt.Sprintf("%d hashes in bcrypt and %v waiting for a slot, want %d and %d",
				probe.Running(), w, slots, users-slots)
		}
		return ""
	})
	if got := registryValue(t, metricHashState, "state", "running"); int(got) != slots {
		t.Errorf("the running gauge says %v, want %d", got, slots)
	}
	probe.Release()
	for _, u := range list {
		e.waitUser(u, v1.ReasonReconciled)
	}
	if probe.Max() != slots || probe.Calls() != users {
		t.Errorf("%d hashes, at most %d at once; want %d, at most %d", probe.Calls(), probe.Max(), users, slots)
	}
}
