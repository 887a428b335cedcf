package puqctl

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/totp"
)

// The troubleshooting questions of the panel's admin guide, and two the operator adds.
const (
	qLogin     = "Cannot log in"
	qClients   = "Cannot see a client"
	qTwoFactor = "2FA lockout"
	qDuplicate = "Duplicate email or phone"
	qPolicy    = "Not permitted by a PanelAccessPolicy"
	qSecret    = "Password Secret missing"
)

var questions = []string{qLogin, qClients, qTwoFactor, qDuplicate, qPolicy, qSecret}

// reasonQuestion files each User condition reason under the question it answers; a reason not
// listed answers "Cannot log in" (the panel user is not what the spec says).
var reasonQuestion = map[string]string{
	v1.ReasonDuplicateEmail:     qDuplicate,
	v1.ReasonEmailTakenInPanel:  qDuplicate,
	v1.ReasonBoundElsewhere:     qDuplicate,
	v1.ReasonDuplicatePhone:     qDuplicate,
	v1.ReasonNotPermitted:       qPolicy,
	v1.ReasonSecretNotFound:     qSecret,
	v1.ReasonSecretKeyMissing:   qSecret,
	v1.ReasonTOTPSecretConflict: qTwoFactor,
}

// eventsShown is how many of the User's latest events why prints.
const eventsShown = 5

type whyOptions struct {
	f     *Factory
	color string
}

// NewWhyCommand is `kubectl puq why USER`: the admin guide's troubleshooting questions (cannot
// log in, cannot see a client, 2FA lockout, duplicate email) and the operator's own (not
// permitted, Secret missing) answered for one User from its conditions, status, events, its
// ClientMemberships and its Secrets' existence: the cause and the fix on one screen.
func NewWhyCommand(f *Factory) *cobra.Command {
	o := &whyOptions{f: f}
	cmd := &cobra.Command{
		Use:   "why USER",
		Short: "Answer the troubleshooting questions for a user: cause and fix on one screen",
		Long: "Answer the panel's troubleshooting questions for the User named USER: cannot log in, cannot see a client,\n" +
			"2FA lockout, duplicate email or phone, not permitted by a PanelAccessPolicy, password Secret missing.\n" +
			"The answers come from the User's conditions (whose messages say the fix), its status, its latest events,\n" +
			"the ClientMemberships naming it and whether its Secrets exist (never their contents).",
		Example: "  kubectl puq why jane -n team-a",
		Args:    cobra.ExactArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args[0]) },
	}
	addColorFlag(cmd, &o.color)
	return cmd
}

// whyInput is what why reads; diagnose is a pure function of it.
type whyInput struct {
	user        *v1.User
	memberships []v1.ClientMembership
	events      []corev1.Event
	// password and totpSecret are what is known of the Secrets: their metadata only.
	password   secretPresence
	totpSecret secretPresence
	now        time.Time
}

// secretPresence is what why knows of a Secret without reading its data.
type secretPresence struct {
	known, exists bool
	// operatorIssued: labelled by the operator and controlled by the User.
	operatorIssued bool
}

func (o *whyOptions) run(ctx context.Context, name string) error {
	color, err := useColor(o.color, o.f.IOStreams.Out)
	if err != nil {
		return err
	}
	c, user, err := o.f.User(ctx, name)
	if err != nil {
		return err
	}
	ns := user.Namespace
	in := whyInput{user: user, now: time.Now()}
	if in.memberships, err = membershipsOf(ctx, c, in.user); err != nil {
		return err
	}
	events := &corev1.EventList{}
	if err := c.List(ctx, events, client.InNamespace(ns),
		client.MatchingFields{"involvedObject.uid": string(in.user.UID)}); err != nil {
		return fmt.Errorf("cannot list the User's events: %w", err)
	}
	in.events = events.Items
	if in.password, err = secretMeta(ctx, c, ns, in.user.Spec.PasswordSecretRef.Name, nil); err != nil {
		return err
	}
	if in.totpSecret, err = secretMeta(ctx, c, ns, totp.SecretName(in.user.Name), in.user); err != nil {
		return err
	}
	return writeDiagnosis(o.f.IOStreams.Out, in, diagnose(in), color)
}

// secretMeta reads a Secret's metadata only (no data crosses the wire); a Secret the caller may
// not read is unknown, not an error.
func secretMeta(ctx context.Context, c client.Client, ns, name string, user *v1.User) (secretPresence, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, m)
	switch {
	case apierrors.IsNotFound(err):
		return secretPresence{known: true}, nil
	case apierrors.IsForbidden(err):
		return secretPresence{}, nil
	case err != nil:
		return secretPresence{}, fmt.Errorf("cannot read Secret %s/%s: %w", ns, name, err)
	}
	p := secretPresence{known: true, exists: true}
	if user != nil {
		p.operatorIssued = notOperatorIssued(m, user) == ""
	}
	return p, nil
}

// answer is one question answered: the problems found, or else what is fine (and how to act on
// it), or that nothing can be said yet (unknown).
type answer struct {
	question string
	problems []string
	fine     string
	unknown  bool
}

// diagnosis collects the answers while diagnose goes through what it read.
type diagnosis struct {
	problems map[string][]string
	fine     map[string]string
	unknown  map[string]bool
}

func (d *diagnosis) add(q, format string, args ...any) {
	d.problems[q] = append(d.problems[q], fmt.Sprintf(format, args...))
}

// diagnose answers every question for the User: each condition reason under the question it
// belongs to (its message says the fix), and what the status and the Secrets' presence say.
func diagnose(in whyInput) []answer {
	d := &diagnosis{problems: map[string][]string{}, unknown: map[string]bool{}, fine: map[string]string{
		qLogin:     "The panel user is what the spec says (Ready).",
		qDuplicate: "No other panel user or User holds this email or phone.",
		qPolicy:    "A PanelAccessPolicy grants this namespace the email.",
	}}
	ready := meta.FindStatusCondition(in.user.Status.Conditions, v1.ConditionReady)
	d.condition(in.user, ready)
	d.accountState(in.user)
	d.clients(in)
	d.twoFactor(in, ready)
	d.passwordSecret(in, ready)
	out := make([]answer, 0, len(questions))
	for _, q := range questions {
		out = append(out, answer{question: q, problems: d.problems[q], fine: d.fine[q], unknown: d.unknown[q]})
	}
	return out
}

// condition files the User's Ready condition under its question; "Cannot log in" points there.
// Until the User is Ready, what the operator checks after the problem it stopped at is unknown.
func (d *diagnosis) condition(u *v1.User, ready *metav1.Condition) {
	switch {
	case ready == nil:
		d.add(qLogin, "The operator has not reconciled this User yet: check that it runs and watches namespace %s.", u.Namespace)
	case ready.Status != metav1.ConditionTrue:
		q, ok := reasonQuestion[ready.Reason]
		if !ok {
			q = qLogin
		}
		d.add(q, "%s: %s", ready.Reason, ready.Message)
		if q != qLogin {
			d.add(qLogin, "The panel user is not what the spec says (Ready is False, %s): see %q below.", ready.Reason, q)
		}
	case u.Status.ObservedGeneration < u.Generation:
		d.add(qLogin, "The operator has not judged the latest spec yet (generation %d, observed %d): the answers are "+
			"about the one before.", u.Generation, u.Status.ObservedGeneration)
	}
	if ready == nil || ready.Status != metav1.ConditionTrue {
		notReported := "Nothing reported yet: the operator reports the first problem it finds; look again once that is fixed."
		d.fine[qDuplicate], d.fine[qPolicy] = notReported, notReported
		d.unknown[qDuplicate], d.unknown[qPolicy] = true, true
	}
}

// accountState answers "check if the user is ACTIVE" of "Cannot log in".
func (d *diagnosis) accountState(u *v1.User) {
	switch st := u.Status.PanelStatus; {
	case u.Spec.State == v1.UserStateInactive:
		d.add(qLogin, "spec.state is Inactive: the panel user is inactive and its login disabled. Set spec.state: Active "+
			"to let the person in.")
	case st != "" && st != statusActive && st != statusNew:
		d.add(qLogin, "The panel status is %s and spec.state is unset, so the operator leaves it as the panel has it. "+
			"Set spec.state: Active to make the login active and enabled.", st)
	}
}

// clients answers "Cannot see a client" from the memberships and the clients as the panel has
// them (the guide: associate them, verify status and permissions).
func (d *diagnosis) clients(in whyInput) {
	u := in.user
	for _, m := range in.memberships {
		r := meta.FindStatusCondition(m.Status.Conditions, v1.ConditionReady)
		switch {
		case r == nil:
			d.add(qClients, "ClientMembership %s (client %s) has not been reconciled yet.", m.Name, clientSelector(m.Spec.Client))
		case r.Status != metav1.ConditionTrue:
			d.add(qClients, "ClientMembership %s (client %s): %s: %s", m.Name, clientSelector(m.Spec.Client), r.Reason, r.Message)
		case !m.Spec.Owner && len(m.Spec.Permissions) == 0:
			d.add(qClients, "ClientMembership %s gives no permissions on client %s: add them to its spec.permissions.",
				m.Name, clientSelector(m.Spec.Client))
		}
	}
	for _, c := range u.Status.Clients {
		if c.Status != "" && c.Status != statusActive && c.Status != statusNew {
			d.add(qClients, "Client %s (%s) is %s in the panel.", c.UUID, orDash(c.CompanyName), c.Status)
		}
	}
	switch {
	case u.Status.UUID == "":
		d.fine[qClients], d.unknown[qClients] = "Not known until the operator has read the panel user.", true
	case len(u.Status.Clients) == 0 && len(in.memberships) == 0:
		d.fine[qClients] = fmt.Sprintf("The user is associated with no client. Associate one with a ClientMembership whose "+
			"spec.userRef.name is %s (the panel's Client -> Users -> Associate User).", u.Name)
	default:
		d.fine[qClients] = fmt.Sprintf("Associated with %d client(s): kubectl puq clients %s", len(u.Status.Clients), u.Name)
	}
}

// twoFactor answers "2FA lockout": the authenticator seed's Secret, or the verified address
// email codes need.
func (d *diagnosis) twoFactor(in whyInput, ready *metav1.Condition) {
	u, tf := in.user, in.user.Spec.TwoFactor
	switch {
	case tf.Enabled && tf.Method == v1.TwoFactorMethodTOTP:
		switch {
		case in.totpSecret.known && !in.totpSecret.exists:
			d.add(qTwoFactor, "Secret %s does not exist: the operator issues it at its next reconcile.", totp.SecretName(u.Name))
		case in.totpSecret.known && !in.totpSecret.operatorIssued && ready != nil && ready.Reason != v1.ReasonTOTPSecretConflict:
			d.add(qTwoFactor, "Secret %s was not issued by the operator for this User: rename or delete it so the operator "+
				"can issue the authenticator seed there.", totp.SecretName(u.Name))
		}
		d.fine[qTwoFactor] = fmt.Sprintf("Authenticator app (TOTP). Show the enrolment again: kubectl puq totp %s. Lost "+
			"device: kubectl puq totp %s --reset issues a new seed (the old one stops working).", u.Name, u.Name)
	case tf.Enabled:
		if u.Status.UUID != "" && !u.Status.EmailVerified {
			d.add(qTwoFactor, "The panel has the email unverified: it sends and accepts no codes for it. Set "+
				"spec.emailVerified: true, use method: TOTP, or disable twoFactor.")
		}
		d.fine[qTwoFactor] = fmt.Sprintf("Codes by email to %s, which the panel has verified. To start over, set "+
			"spec.twoFactor.enabled: false, then true again.", u.Spec.Email)
	default:
		d.fine[qTwoFactor] = "Two-factor authentication is off for this user: no code is asked."
	}
}

// passwordSecret answers "Password Secret missing" from the Secret's presence, when the
// condition does not say it already; fine, it says how to reset the password (the guide's
// first fix for "Cannot log in").
func (d *diagnosis) passwordSecret(in whyInput, ready *metav1.Condition) {
	u, ref := in.user, in.user.Spec.PasswordSecretRef.Name
	if in.password.known && !in.password.exists && (ready == nil || reasonQuestion[ready.Reason] != qSecret) {
		d.add(qSecret, "Secret %s/%s named in spec.passwordSecretRef does not exist; create it.", u.Namespace, ref)
	}
	d.fine[qSecret] = fmt.Sprintf("Secret %s exists. To reset the password, change it: the operator writes the new one "+
		"to the panel.", ref)
	if !in.password.known {
		d.fine[qSecret] = fmt.Sprintf("Not checked: you may not read Secret %s/%s.", u.Namespace, ref)
	}
}

// writeDiagnosis prints the User's summary, the answers and the latest events.
func writeDiagnosis(w io.Writer, in whyInput, answers []answer, color bool) error {
	u := in.user
	var b strings.Builder
	fmt.Fprintf(&b, "User %s/%s  %s\n", u.Namespace, u.Name, u.Spec.Email)
	fmt.Fprintf(&b, "Panel: status %s, 2FA %s, %s clients, verified %s\n", paint(color, statusColour(u.Status.PanelStatus),
		orDash(u.Status.PanelStatus)), orDash(u.Status.TwoFactor), clientCount(*u), verified(u.Status))
	rc := readyCell(u.Status.Conditions)
	fmt.Fprintf(&b, "Ready: %s\n\n", paint(color, rc.c, rc.text))
	for _, a := range answers {
		switch {
		case len(a.problems) == 0 && a.unknown:
			fmt.Fprintf(&b, "%s  %s\n", paint(color, yellow, "[?]      "), a.question)
			wrap(&b, a.fine)
			continue
		case len(a.problems) == 0:
			fmt.Fprintf(&b, "%s  %s\n", paint(color, green, "[ok]     "), a.question)
			wrap(&b, a.fine)
			continue
		}
		fmt.Fprintf(&b, "%s  %s\n", paint(color, red, "[PROBLEM]"), a.question)
		for _, p := range a.problems {
			wrap(&b, p)
		}
	}
	events := latestEvents(in.events, eventsShown)
	if len(events) > 0 {
		fmt.Fprintf(&b, "\nLatest events:\n")
		for _, e := range events {
			c := noColour
			if e.Type == corev1.EventTypeWarning {
				c = red
			}
			fmt.Fprintf(&b, "  %s %s: %s (%s ago)\n", paint(color, c, e.Type), e.Reason, e.Message,
				duration.HumanDuration(in.now.Sub(eventTime(e))))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// wrapWidth is where why breaks its lines, so the answers fit one screen.
const wrapWidth = 100

// wrap writes text indented by 13 spaces (under the question), broken between words.
func wrap(b *strings.Builder, text string) {
	const indent = "             "
	line := indent
	for word := range strings.FieldsSeq(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > wrapWidth {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
}

// latestEvents are the n latest events, oldest first.
func latestEvents(events []corev1.Event, n int) []corev1.Event {
	sorted := slices.Clone(events)
	slices.SortStableFunc(sorted, func(a, b corev1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	return sorted[max(0, len(sorted)-n):]
}

// eventTime is when an event last happened: events.k8s.io events carry eventTime (and series),
// older core events lastTimestamp.
func eventTime(e corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}
