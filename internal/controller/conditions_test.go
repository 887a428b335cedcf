package controller

import (
	"errors"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

func TestSetConditionsSpeaksKstatus(t *testing.T) {
	cases := []struct {
		name                        string
		o                           outcome
		ready, reconciling, stalled metav1.ConditionStatus // "" = absent
		judged                      bool
	}{
		{"ready", ready("ok"), metav1.ConditionTrue, "", "", true},
		{"bad input", waiting(v1.ReasonWeakPassword, "weak"), metav1.ConditionFalse, "", metav1.ConditionTrue, true},
		{"outage", retrying(v1.ReasonDatabaseUnavailable, "down"), metav1.ConditionFalse, metav1.ConditionTrue, "", false},
		{"deleting", progressing(v1.ReasonDeletionBlocked, "waiting"), metav1.ConditionFalse, metav1.ConditionTrue, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Start from the opposite state, so stale conditions must be cleared.
			conds := []metav1.Condition{}
			setConditions(&conds, 1, retrying("Old", "old"))
			setConditions(&conds, 1, waiting("Old", "old"))
			judged := setConditions(&conds, 7, tc.o)
			if judged != tc.judged {
				t.Errorf("judged = %v", judged)
			}
			for typ, want := range map[string]metav1.ConditionStatus{
				v1.ConditionReady: tc.ready, v1.ConditionReconciling: tc.reconciling, v1.ConditionStalled: tc.stalled,
			} {
				c := meta.FindStatusCondition(conds, typ)
				switch {
				case want == "" && c != nil:
					t.Errorf("%s should be absent, is %s", typ, c.Status)
				case want != "" && (c == nil || c.Status != want || c.ObservedGeneration != 7 || c.Reason != tc.o.reason):
					t.Errorf("%s = %+v, want %s/%s at generation 7", typ, c, want, tc.o.reason)
				}
			}
		})
	}
}

func TestEmailHolderIsTheOldestThenByName(t *testing.T) {
	at := func(sec int) metav1.Time { return metav1.NewTime(time.Unix(int64(1_700_000_000+sec), 0)) }
	user := func(ns, name string, sec int) v1.User {
		return v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: at(sec)}}
	}
	cases := []struct {
		users []v1.User
		want  string
	}{
		{[]v1.User{user("b", "x", 5), user("a", "y", 9)}, "b/x"},
		{[]v1.User{user("b", "x", 5), user("a", "y", 5)}, "a/y"},
		{[]v1.User{user("a", "z", 5), user("a", "y", 5), user("c", "a", 6)}, "a/y"},
	}
	for _, tc := range cases {
		h := emailHolder(tc.users)
		if got := h.Namespace + "/" + h.Name; got != tc.want {
			t.Errorf("holder = %s, want %s", got, tc.want)
		}
	}
	if emailHolder(nil) != nil {
		t.Error("no users must have no holder")
	}
}

func TestConflictsRetryQuietlyOtherErrorsPass(t *testing.T) {
	conflict := apierrors.NewConflict(schema.GroupResource{Group: v1.GroupVersion.Group, Resource: "users"}, "jane",
		errors.New("the object has been modified"))
	if res, err := retryConflicts(ctrl.Result{}, fmt.Errorf("cannot add the finalizer: %w", conflict)); err != nil ||
		res.RequeueAfter != conflictRetry {
		t.Errorf("conflict: got %+v, %v; want a retry after %s and no error", res, err, conflictRetry)
	}
	other := errors.New("boom")
	if res, err := retryConflicts(ctrl.Result{RequeueAfter: time.Minute}, other); err != other || res.RequeueAfter != time.Minute {
		t.Errorf("other error: got %+v, %v", res, err)
	}
}

func TestBlockedPollBacksOffAndIsCappedAtThirtySeconds(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	cases := []struct {
		waited time.Duration
		want   time.Duration
	}{
		{0, time.Second},
		{500 * time.Millisecond, time.Second},
		{2 * time.Second, 2 * time.Second},
		{8 * time.Second, 8 * time.Second},
		{29 * time.Second, 29 * time.Second},
		{31 * time.Second, 30 * time.Second},
		{time.Hour, 30 * time.Second},
		{-time.Minute, time.Second}, // a clock behind the condition's timestamp
	}
	for _, tc := range cases {
		if got := blockedPoll(start, start.Add(tc.waited)); got != tc.want {
			t.Errorf("blocked for %s: look again after %s, want %s", tc.waited, got, tc.want)
		}
	}
}

func TestBlockedRequeueCountsFromWhenTheObjectStalled(t *testing.T) {
	now := time.Unix(1_700_000_100, 0)
	conds := []metav1.Condition{}
	setConditions(&conds, 1, waiting(v1.ReasonDeletionBlocked, "blocked"))
	meta.FindStatusCondition(conds, v1.ConditionStalled).LastTransitionTime = metav1.NewTime(now.Add(-4 * time.Second))
	if res := blockedRequeue(conds, now); res.RequeueAfter != 4*time.Second {
		t.Errorf("stalled 4s ago: requeue after %s, want 4s", res.RequeueAfter)
	}
	if res := blockedRequeue(nil, now); res.RequeueAfter != time.Second {
		t.Errorf("not stalled: requeue after %s, want the first poll, 1s", res.RequeueAfter)
	}
	if !isStalledReason(conds, v1.ReasonDeletionBlocked) || isStalledReason(conds, v1.ReasonOwnerRemovalBlocked) {
		t.Error("isStalledReason does not tell the reasons apart")
	}
}
