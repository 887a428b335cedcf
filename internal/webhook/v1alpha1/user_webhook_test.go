package v1alpha1_test

import (
	"strings"
	"testing"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// emailsAt grants the namespaces every address at the domain.
func emailsAt(domain string) v1.PanelAccessPolicySpec {
	return v1.PanelAccessPolicySpec{Emails: []v1.EmailPattern{v1.EmailPattern("*@" + domain)}}
}

func TestUserWithAGrantedFreeEmailIsAccepted(t *testing.T) {
	ns := namespace(t)
	policy(t, emailsAt("free.example"), ns)
	mustCreate(t, user(ns, "jane", "jane@free.example"))
}

func TestUserWithAnEmailHeldInItsNamespaceIsRefusedNamingTheHolder(t *testing.T) {
	ns := namespace(t)
	policy(t, emailsAt("same.example"), ns)
	mustCreate(t, user(ns, "holder", "jane@same.example"))

	// The panel's collation holds these equal: case and width.
	msg := refused(t, create(t, user(ns, "second", "ＪＡＮＥ@Same.Example")), userWebhook)
	for _, want := range []string{"DuplicateEmail", "already held by User " + ns + "/holder", "spec.email"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal lacks %q: %s", want, msg)
		}
	}
}

func TestUserWithAnEmailHeldInAnotherNamespaceIsRefusedWithoutNamingIt(t *testing.T) {
	holderNS, ns := namespace(t), namespace(t)
	policy(t, emailsAt("other.example"), holderNS, ns)
	mustCreate(t, user(holderNS, "holder", "jane@other.example"))

	msg := refused(t, create(t, user(ns, "second", "jane@other.example")), userWebhook)
	if !strings.Contains(msg, "DuplicateEmail") || !strings.Contains(msg, "held by a User in another namespace") {
		t.Errorf("the refusal does not say the email is held in another namespace: %s", msg)
	}
	if strings.Contains(msg, holderNS) || strings.Contains(msg, "holder") {
		t.Errorf("the refusal names the other namespace's User: %s", msg)
	}
}

func TestUserWhoseNamespaceIsNotGrantedTheEmailLearnsNothingOfItsHolder(t *testing.T) {
	holderNS, ns := namespace(t), namespace(t)
	policy(t, emailsAt("held.example"), holderNS)
	policy(t, emailsAt("elsewhere.example"), ns)
	mustCreate(t, user(holderNS, "holder", "jane@held.example"))

	held := refused(t, create(t, user(ns, "probe", "jane@held.example")), userWebhook)
	free := refused(t, create(t, user(ns, "probe", "nobody@held.example")), userWebhook)
	if !strings.Contains(held, "NotPermitted") {
		t.Errorf("the refusal of an email not granted is not NotPermitted: %s", held)
	}
	// Policy before lookup: the refusal of a held email reads exactly as that of a free one.
	if strings.ReplaceAll(held, "jane@", "nobody@") != free {
		t.Errorf("a held email is refused differently from a free one, which tells the namespace it is held:\n held: %s\n free: %s",
			held, free)
	}
}

func TestUserAskingForAdoptionItsNamespaceIsNotGrantedIsRefused(t *testing.T) {
	ns := namespace(t)
	policy(t, emailsAt("adopt.example"), ns)
	u := user(ns, "adopter", "legacy@adopt.example")
	u.Spec.Adoption = v1.AdoptionIfExists

	msg := refused(t, create(t, u), userWebhook)
	if !strings.Contains(msg, "NotPermitted") || !strings.Contains(msg, "spec.adoption") {
		t.Errorf("the refusal does not name the adoption as not permitted: %s", msg)
	}
}

func TestUserEditKeepingItsEmailIsAcceptedAfterItsNamespaceLostTheGrant(t *testing.T) {
	ns := namespace(t)
	p := policy(t, emailsAt("lost.example"), ns)
	u := user(ns, "jane", "jane@lost.example")
	mustCreate(t, u)
	if err := k8s.Delete(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitGone(t, p)

	// The controllers report it NotPermitted; an edit of what no policy judges is not refused.
	u.Spec.FirstName = "Janet"
	if err := k8s.Update(t.Context(), u); err != nil {
		t.Fatalf("an edit keeping the email was refused: %v", err)
	}
	u.Spec.Email = "janet@lost.example"
	msg := refused(t, k8s.Update(t.Context(), u), userWebhook)
	if !strings.Contains(msg, "NotPermitted") {
		t.Errorf("a new email no policy grants is not refused NotPermitted: %s", msg)
	}
}

func TestMetadataUpdatesNeverCallTheWebhook(t *testing.T) {
	ns := namespace(t)
	policy(t, emailsAt("meta.example"), ns)
	u := user(ns, "jane", "jane@meta.example")
	before := userWebhookCalls(t)
	mustCreate(t, u)
	if got := userWebhookCalls(t) - before; got != 1 {
		t.Fatalf("creating a User called the webhook %v times, want 1", got)
	}

	// What the controllers write besides status: a finalizer (and owner references, alike).
	u.Finalizers = append(u.Finalizers, "panel.puqcloud.com/test")
	if err := k8s.Update(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	if got := userWebhookCalls(t) - before; got != 1 {
		t.Errorf("a finalizer update called the webhook (%v calls in all, want 1): a webhook that is down would hold "+
			"up deletions", got)
	}
	u.Finalizers = nil
	u.Spec.LastName = "Roe"
	if err := k8s.Update(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	if got := userWebhookCalls(t) - before; got != 2 {
		t.Errorf("a spec update did not call the webhook once (%v calls in all, want 2)", got)
	}
}

func TestUserDroppingAdoptionIsAcceptedAfterItsNamespaceLostTheGrant(t *testing.T) {
	ns := namespace(t)
	spec := emailsAt("dropped.example")
	spec.Adoption = &v1.AdoptionGrant{Mode: v1.AdoptionModeIfEmailAllowed}
	p := policy(t, spec, ns)
	u := user(ns, "jane", "legacy@dropped.example")
	u.Spec.Adoption = v1.AdoptionIfExists
	mustCreate(t, u)
	if err := k8s.Delete(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitGone(t, p)

	// Turning adoption off asks for less than before: nothing for a policy to refuse.
	u.Spec.Adoption = v1.AdoptionNever
	if err := k8s.Update(t.Context(), u); err != nil {
		t.Fatalf("an edit turning adoption off was refused: %v", err)
	}
	waitCached(t, u)
	u.Spec.Adoption = v1.AdoptionIfExists
	msg := refused(t, k8s.Update(t.Context(), u), userWebhook)
	if !strings.Contains(msg, "NotPermitted") || !strings.Contains(msg, "spec.adoption") {
		t.Errorf("turning adoption back on is not refused NotPermitted on spec.adoption: %s", msg)
	}
}
