package controller

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// An object that keeps failing (the database is down) is retried promptly at first and never
// waits longer than the cap, so it looks again within the cap of the database's return; another
// object starts from a prompt retry; a success resets the object's backoff.
func TestFailingObjectRetriesBackOffNoFurtherThanTheCap(t *testing.T) {
	l := retryRateLimiter()
	jane := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "jane"}}
	if d := l.When(jane); d > retryBackoffBase {
		t.Errorf("first retry after %s, want at most %s", d, retryBackoffBase)
	}
	var longest time.Duration
	for range 30 { // the default limiter would reach 5 ms * 2^30, capped at 1000 s
		longest = max(longest, l.When(jane))
	}
	if longest != 10*time.Second {
		t.Errorf("after 31 failures the retry waits %s, want the cap of 10s", longest)
	}
	john := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "john"}}
	if d := l.When(john); d > retryBackoffBase {
		t.Errorf("another object's first retry after %s, want at most %s: backoff is per object", d, retryBackoffBase)
	}
	l.Forget(jane)
	if d := l.When(jane); d > retryBackoffBase {
		t.Errorf("after a success the next retry waits %s, want at most %s", d, retryBackoffBase)
	}
}
