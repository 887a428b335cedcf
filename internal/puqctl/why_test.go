package puqctl

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/totp"
)

// passwordSecret creates the User's password Secret.
func passwordSecret(t *testing.T, u *v1.User) {
	t.Helper()
	secret(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: u.Namespace, Name: u.Spec.PasswordSecretRef.Name},
		StringData: map[string]string{"password": "plum-Harbor-7-lantern"}})
}

// totpSecretFor creates <user>-totp as the operator issues it, or, with issued false, as
// someone else made it.
func totpSecretFor(t *testing.T, u *v1.User, issued bool) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: u.Namespace, Name: totp.SecretName(u.Name)},
		Data: map[string][]byte{"secret": []byte("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
			totp.SecretKeyURL: []byte("otpauth://totp/PUQcloud:" + u.Spec.Email +
				"?algorithm=SHA1&digits=6&issuer=PUQcloud&period=30&secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")}}
	if issued {
		s.Labels = map[string]string{totp.ManagedByLabel: totp.IssuedBy}
		s.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "User", Name: u.Name, UID: u.UID,
			Controller: new(true)}}
	}
	secret(t, s)
	return s
}

var totpOn = v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP}

func TestWhyOfAHealthyUserSaysEachQuestionIsFineAndHowToAct(t *testing.T) {
	ns := namespace(t, "views-why-ok")
	u := user(t, ns, "jane", v1.UserSpec{Email: "jane@example.com", EmailVerified: true, TwoFactor: totpOn},
		&v1.UserStatus{UUID: "0b6f4f52-6c1e-4d8e-9a43-0000000000c1", PanelStatus: "ACTIVE", TwoFactor: "Enabled",
			EmailVerified: true, ClientCount: 1, Clients: []v1.UserClient{{UUID: acmeUUID, CompanyName: "Acme Corp", Status: "ACTIVE",
				Owner: true}}, TOTPSecretName: "jane-totp", Conditions: ready()})
	passwordSecret(t, u)
	totpSecretFor(t, u, true)
	now := time.Now()
	event(t, u, corev1.EventTypeNormal, "Created", "Created panel user 0b6f4f52-6c1e-4d8e-9a43-0000000000c1", now.Add(-2*time.Minute))
	event(t, u, corev1.EventTypeNormal, "TwoFactorEnrolled", "Issued a new authenticator seed into Secret jane-totp", now.Add(-time.Minute))
	golden(t, "why-healthy", mustRun(t, ns, NewWhyCommand, "jane"))
}

func TestWhyOfADuplicateEmailFilesTheConditionUnderDuplicateAndPointsLoginThere(t *testing.T) {
	ns := namespace(t, "views-why-dup")
	msg := "The email is already held by User views-why-dup/ada, created earlier; emails are unique in the panel. " +
		"Change spec.email, or delete that User and this one proceeds."
	u := user(t, ns, "dup", v1.UserSpec{Email: "ADA@example.com"}, &v1.UserStatus{Conditions: stalled(v1.ReasonDuplicateEmail, msg)})
	passwordSecret(t, u)
	event(t, u, corev1.EventTypeWarning, v1.ReasonDuplicateEmail, msg, time.Now())
	golden(t, "why-duplicate-email", mustRun(t, ns, NewWhyCommand, "dup"))
}

func TestWhyOfAMissingPasswordSecretSaysWhichAndHow(t *testing.T) {
	ns := namespace(t, "views-why-secret")
	user(t, ns, "jane", v1.UserSpec{Email: "jane@example.com"}, &v1.UserStatus{Conditions: stalled(v1.ReasonSecretNotFound,
		`Secret views-why-secret/jane-password named in spec.passwordSecretRef does not exist; create it with key "password".`)})
	golden(t, "why-secret-missing", mustRun(t, ns, NewWhyCommand, "jane"))
}

func TestWhyOfANotPermittedUserNamesThePolicyFix(t *testing.T) {
	ns := namespace(t, "views-why-policy")
	u := user(t, ns, "jane", v1.UserSpec{Email: "jane@example.com"}, &v1.UserStatus{Conditions: stalled(v1.ReasonNotPermitted,
		"No PanelAccessPolicy grants namespace views-why-policy the email jane@example.com (no PanelAccessPolicy selects "+
			"namespace views-why-policy); add a pattern matching it to spec.emails of a PanelAccessPolicy selecting views-why-policy")})
	passwordSecret(t, u)
	golden(t, "why-not-permitted", mustRun(t, ns, NewWhyCommand, "jane"))
}

func TestWhyOfAUserWhoCannotSeeAClientListsTheMembershipsAndClientsAtFault(t *testing.T) {
	ns := namespace(t, "views-why-clients")
	u := user(t, ns, "jane", v1.UserSpec{Email: "jane@example.com", State: v1.UserStateInactive},
		&v1.UserStatus{UUID: "0b6f4f52-6c1e-4d8e-9a43-0000000000c5", PanelStatus: "INACTIVE", TwoFactor: "Disabled", ClientCount: 2,
			Clients: []v1.UserClient{{UUID: globexUUID, CompanyName: "Globex", Status: "CLOSED"},
				{UUID: initechUID, CompanyName: "Initech", Status: "ACTIVE"}}, Conditions: ready()})
	passwordSecret(t, u)
	newMembership(t, ns, "jane-hooli", v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: "jane"},
		Client: v1.ClientSelector{CompanyName: "Hooli"}}, &v1.ClientMembershipStatus{Conditions: stalled(v1.ReasonClientNotFound,
		"No panel client has the company name in spec.client.companyName; create the client in the panel or fix the name.")})
	newMembership(t, ns, "jane-initech", v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: "jane"},
		Client: v1.ClientSelector{UUID: initechUID}}, &v1.ClientMembershipStatus{ClientUUID: initechUID, Conditions: ready()})
	golden(t, "why-clients-and-inactive", mustRun(t, ns, NewWhyCommand, "jane"))
}

func TestWhyOfA2FALockoutNamesTheForeignTOTPSecretAndTheUnverifiedEmail(t *testing.T) {
	ns := namespace(t, "views-why-2fa")
	conflict := "Secret views-why-2fa/tom-totp exists and is not owned by this User; rename or delete it so the operator " +
		"can issue the authenticator seed there."
	tom := user(t, ns, "tom", v1.UserSpec{Email: "tom@example.com", TwoFactor: totpOn},
		&v1.UserStatus{UUID: "0b6f4f52-6c1e-4d8e-9a43-0000000000c6", PanelStatus: "ACTIVE", TwoFactor: "Disabled",
			Conditions: stalled(v1.ReasonTOTPSecretConflict, conflict)})
	passwordSecret(t, tom)
	totpSecretFor(t, tom, false)
	golden(t, "why-2fa-totp-conflict", mustRun(t, ns, NewWhyCommand, "tom"))

	// Email codes need a verified address; the spec says verified, the panel does not (yet).
	eva := user(t, ns, "eva", v1.UserSpec{Email: "eva@example.com", EmailVerified: true, TwoFactor: v1.TwoFactor{Enabled: true}},
		&v1.UserStatus{UUID: "0b6f4f52-6c1e-4d8e-9a43-0000000000c7", PanelStatus: "ACTIVE", TwoFactor: "Enabled",
			Conditions: ready()})
	passwordSecret(t, eva)
	out := mustRun(t, ns, NewWhyCommand, "eva")
	if !strings.Contains(out, "[PROBLEM]  2FA lockout") || !strings.Contains(out, "The panel has the email unverified") {
		t.Errorf("email 2FA on an address the panel has unverified is not a lockout:\n%s", out)
	}
}

func TestWhyOfAUserTheOperatorHasNotSeenSaysSo(t *testing.T) {
	ns := namespace(t, "views-why-new")
	user(t, ns, "new", v1.UserSpec{Email: "new@example.com"}, nil)
	out := mustRun(t, ns, NewWhyCommand, "new")
	if !strings.Contains(out, "The operator has not reconciled this User yet") {
		t.Errorf("a User without status:\n%s", out)
	}
}
