package controller

import (
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// outcomeKind is how a reconcile ended, in kstatus terms.
type outcomeKind int

const (
	// outcomeReady: the panel matches the spec (kstatus Current).
	outcomeReady outcomeKind = iota
	// outcomeWaiting: the spec or its inputs are wrong, or another object must change first; the
	// operator waits for a change instead of retrying (kstatus Failed: Stalled=True).
	outcomeWaiting
	// outcomeRetrying: a passing failure (database unreachable); the operator retries with
	// backoff (kstatus InProgress: Reconciling=True).
	outcomeRetrying
	// outcomeProgressing: work is under way, such as a deletion waiting for its dependents.
	outcomeProgressing
)

// outcome is what a reconcile concluded, as conditions will say it.
type outcome struct {
	kind    outcomeKind
	reason  string
	message string
}

func ready(message string) outcome { return outcome{outcomeReady, v1.ReasonReconciled, message} }

func waiting(reason, format string, args ...any) outcome {
	return outcome{outcomeWaiting, reason, fmt.Sprintf(format, args...)}
}

func retrying(reason, format string, args ...any) outcome {
	return outcome{outcomeRetrying, reason, fmt.Sprintf(format, args...)}
}

func progressing(reason, format string, args ...any) outcome {
	return outcome{outcomeProgressing, reason, fmt.Sprintf(format, args...)}
}

// setConditions writes Ready, Reconciling and Stalled for an outcome. It reports whether the
// generation was judged (ready, or waiting on a definite problem), so observedGeneration may move.
func setConditions(conds *[]metav1.Condition, generation int64, o outcome) bool {
	set := func(t string, s metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(conds, metav1.Condition{
			Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: generation,
		})
	}
	switch o.kind {
	case outcomeReady:
		set(v1.ConditionReady, metav1.ConditionTrue, o.reason, o.message)
		meta.RemoveStatusCondition(conds, v1.ConditionReconciling)
		meta.RemoveStatusCondition(conds, v1.ConditionStalled)
		return true
	case outcomeWaiting:
		set(v1.ConditionReady, metav1.ConditionFalse, o.reason, o.message)
		meta.RemoveStatusCondition(conds, v1.ConditionReconciling)
		set(v1.ConditionStalled, metav1.ConditionTrue, o.reason, o.message)
		return true
	default:
		set(v1.ConditionReady, metav1.ConditionFalse, o.reason, o.message)
		set(v1.ConditionReconciling, metav1.ConditionTrue, o.reason, o.message)
		meta.RemoveStatusCondition(conds, v1.ConditionStalled)
		return false
	}
}

// conclude records an outcome in the conditions (and observedGeneration when the generation was
// judged), writes the status once through patch, and turns the outcome into a result: a retry
// with backoff for passing failures, a resync after requeue for the outcomes in resyncOn, and
// otherwise a wait for the next change.
func conclude(kind string, conds *[]metav1.Condition, observed *int64, generation int64, o outcome, err error,
	patch func() error, requeue time.Duration, resyncOn ...string) (ctrl.Result, error) {
	if setConditions(conds, generation, o) {
		*observed = generation
	}
	if patchErr := patch(); patchErr != nil && err == nil {
		err = patchErr
	}
	reason := o.reason
	if err != nil {
		reason = "Error"
	}
	reconcileOutcomes.WithLabelValues(kind, reason).Inc()
	switch {
	case err != nil:
		return ctrl.Result{}, err
	case o.kind == outcomeRetrying:
		return ctrl.Result{}, errors.New(o.message)
	case o.kind == outcomeReady || slices.Contains(resyncOn, o.reason):
		return ctrl.Result{RequeueAfter: requeue}, nil
	}
	return ctrl.Result{}, nil
}

// blockedPollMin and blockedPollMax bound how often an object whose deletion waits on a change
// only the panel can make (no watch reports it) looks again.
const (
	blockedPollMin = time.Second
	blockedPollMax = 30 * time.Second
)

// blockedPoll is how long an object blocked since since waits, at now, before it looks again: as
// long as it has waited so far, so the looks back off exponentially, within blockedPollMin and
// blockedPollMax. A cause fixed in the panel is noticed within blockedPollMax.
func blockedPoll(since, now time.Time) time.Duration {
	return min(max(now.Sub(since), blockedPollMin), blockedPollMax)
}

// blockedRequeue is the result of a reconcile that ended Stalled on a cause only the panel can
// remove: a poll, from the time the object became Stalled (not a retry through the rate limiter,
// which is for errors).
func blockedRequeue(conds []metav1.Condition, now time.Time) ctrl.Result {
	since := now
	if c := meta.FindStatusCondition(conds, v1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
		since = c.LastTransitionTime.Time
	}
	return ctrl.Result{RequeueAfter: blockedPoll(since, now)}
}

// isStalledReason reports whether the object is Stalled for the reason, so a repeated look does
// not repeat its warning event.
func isStalledReason(conds []metav1.Condition, reason string) bool {
	c := meta.FindStatusCondition(conds, v1.ConditionStalled)
	return c != nil && c.Status == metav1.ConditionTrue && c.Reason == reason
}

// conflictRetry is how soon an object is reconciled again after a write lost to another writer.
const conflictRetry = 250 * time.Millisecond

// retryConflicts turns an optimistic-concurrency conflict (the object changed since it was read,
// as when the ClientMembership controller adds its finalizer to a User being reconciled) into a
// prompt, quiet retry instead of a logged error: the next reconcile reads the new version. A
// change that does not move the generation would not wake the object again by itself.
func retryConflicts(res ctrl.Result, err error) (ctrl.Result, error) {
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return res, err
}

// conditionErrors are the store errors databaseOutcome turns into a condition.
var conditionErrors = []error{panel.ErrUnavailable, panel.ErrDuplicatePhone, panel.ErrDuplicateEmail, panel.ErrSchema,
	panel.ErrRefused, panel.ErrInvalid}

// storeErr passes on errors that databaseOutcome does not turn into a condition; callers return
// databaseOutcome(err), storeErr(err).
func storeErr(err error) error {
	for _, e := range conditionErrors {
		if errors.Is(err, e) {
			return nil
		}
	}
	return err
}

// databaseOutcome turns a store error into an outcome; nil for errors that are not the store's
// (the caller returns those for a plain retry). Its cases are conditionErrors.
func databaseOutcome(err error) *outcome {
	var o outcome
	switch {
	case errors.Is(err, panel.ErrUnavailable):
		o = retrying(v1.ReasonDatabaseUnavailable, "The panel database cannot be reached; retrying with backoff: %v", err)
	case errors.Is(err, panel.ErrDuplicatePhone):
		o = waiting(v1.ReasonDuplicatePhone, "Another panel user has phone number in spec.phone; phone numbers are unique in the panel. "+
			"Change spec.phone or clear it on the other user.")
	case errors.Is(err, panel.ErrDuplicateEmail):
		o = waiting(v1.ReasonEmailTakenInPanel, "Another panel user has this email (compared ignoring case and accents). "+
			"Change spec.email, remove the other user, or set spec.adoption: IfExists to manage it.")
	case errors.Is(err, panel.ErrSchema):
		o = retrying(v1.ReasonDatabaseUnavailable, "The panel database does not have the expected schema: %v", err)
	case errors.Is(err, panel.ErrRefused):
		o = waiting(v1.ReasonPanelRefused, "The panel refused the change: %v", err)
	case errors.Is(err, panel.ErrInvalid):
		o = waiting(v1.ReasonPanelRefused, "The panel cannot store a value: %v", err)
	default:
		return nil
	}
	return &o
}
