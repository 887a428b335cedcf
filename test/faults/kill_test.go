package faults

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// The manager is killed with SIGKILL at random moments while it syncs Users at bcrypt cost 4 and
// while Users are edited, their passwords rotated and some of them deleted; it is restarted each
// time, as a Deployment would. Whatever each kill interrupted (a create between its commit and
// its status write, an update between its transactions, a deletion between the panel and the
// finalizer), the world must end whole: one panel user per User, none for a deleted one, one
// activity row per change.
func TestManagerKilledAtRandomMomentsDuringASyncConverges(t *testing.T) {
	users, kills := size(60, 500), size(5, 20)
	s := newScenario(t, "kill")
	m := s.start()
	ctx := context.Background()

	// The Users are created while the manager syncs them and is killed; the changes begin with
	// the first User, so that edits, rotations and deletions meet creates still in flight.
	created := make(chan error, 1)
	go func() { created <- s.createUsers(users, size(2, 4)) }()
	stop := make(chan struct{})
	mutated := make(chan mutations, 1)
	go func() { mutated <- s.mutate(ctx, stop, users/5) }()

	start := time.Now()
	for range kills {
		// The fault's own schedule: a random moment after the previous restart served metrics.
		time.Sleep(s.between(200*time.Millisecond, 2500*time.Millisecond))
		m.Kill()
		m = s.start()
	}
	killing := time.Since(start)
	if err := <-created; err != nil {
		t.Fatalf("cannot create the Users: %v", err)
	}
	close(stop)
	muts := <-mutated
	if t.Failed() {
		t.FailNow()
	}
	f := CheckInvariant(t, s.w, size(time.Minute, 5*time.Minute))
	if len(f.NotReady) > 0 {
		t.Errorf("Users not Ready at the end: %v", f.NotReady)
	}
	s.figures("%d Users at cost 4, %d kills -9 over %.0fs (each followed by a restart), in flight: %d edits, "+
		"%d rotations, %d deletions; %s", users, kills, killing.Seconds(), muts.edits, muts.rotations, muts.deletions, f)
}

// mutations counts the changes mutate made.
type mutations struct{ edits, rotations, deletions int }

// mutate edits, rotates and deletes random Users among those created so far, about 25 changes a
// second, until stop is closed; it deletes at most maxDeletions of them, half of them among the
// newest, whose create may still be in flight.
func (s *scenario) mutate(ctx context.Context, stop <-chan struct{}, maxDeletions int) mutations {
	var out mutations
	for {
		select {
		case <-stop:
			return out
		case <-time.After(s.between(20*time.Millisecond, 60*time.Millisecond)):
		}
		s.liveMu.Lock()
		if len(s.live) == 0 {
			s.liveMu.Unlock()
			continue
		}
		i := s.intn(len(s.live))
		deleting := s.intn(100) < 10 && out.deletions < maxDeletions
		if deleting && s.intn(2) == 0 { // half of them among the newest: added, then taken back
			i = len(s.live) - 1 - s.intn(min(8, len(s.live)))
		}
		name := s.live[i]
		if deleting {
			s.live = append(s.live[:i], s.live[i+1:]...)
		}
		s.liveMu.Unlock()
		var err error
		switch {
		case deleting:
			if err = s.w.DeleteUser(ctx, name); err == nil {
				out.deletions++
			}
		case s.intn(2) == 0:
			if err = s.w.EditUser(ctx, name); err == nil {
				out.edits++
			}
		default:
			if err = s.w.RotatePassword(ctx, name); err == nil {
				out.rotations++
			}
		}
		if err != nil && !apierrors.IsNotFound(err) {
			s.t.Errorf("cannot change User %s: %v", name, err)
			return out
		}
	}
}
