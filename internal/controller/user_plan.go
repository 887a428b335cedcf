package controller

import (
	"slices"
	"strings"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
)

// userFacts are what gatherUser read for one User: every input planUser decides from. Only I/O
// fills them; nothing here is decided.
type userFacts struct {
	user *v1.User

	// grants are what the User's namespace may do in the panel (its PanelAccessPolicies, from the
	// cache), read before anything of the panel is.
	grants tenancy.Grants

	// peersRead says the email's peers were looked at: peers are the Users whose email folds to
	// this one's (this User included); emailBound is the binding of the panel user that has the
	// email (read only when there are peers); mover is the User of this instance that panel user
	// is bound to when that User changed its email and has not yet moved it.
	peersRead  bool
	peers      []v1.User
	emailBound *panel.Binding
	mover      *v1.User

	// found is the panel user the User manages, or would take (panel.Store.Locate).
	found panel.Located

	password secretFacts
	totp     totpFacts
}

// secretFacts are what is known of the password Secret.
type secretFacts struct {
	// read says the Secret was read (its version differed from the one applied, or was unknown).
	read bool
	// missing: no Secret of that name.
	missing bool
	// value is the key's value with its line ending dropped (read only).
	value string
	// version is the Secret's applied version (appliedVersion): read, or known from the watch.
	version string
}

// totpFacts are what is known of the User's TOTP Secret (<name>-totp).
type totpFacts struct {
	read   bool
	exists bool
	// owned: this User controls the Secret; seed is its "secret" key.
	owned bool
	seed  string
	// imported: no one controls the Secret and kubectl puq import made it (v1.LabelImported) from
	// the panel's own seed: the User adopts it instead of calling it a conflict.
	imported bool
}

// userPlan is what a reconcile of the User will do, decided by planUser from userFacts alone.
type userPlan struct {
	// stop, when set, ends the reconcile with this outcome before anything is written: the
	// spec, its Secrets or other resources must change first.
	stop *outcome
	// incomplete: the facts lack something the decision needs (the resync reads no Secret); a
	// reconcile must gather them.
	incomplete bool

	via panel.Via
	// change is the panel write; nil when the panel already matches.
	change *panel.UserChange
	// hash is the password hash to write (key passwordHash); cleartext the password to hash
	// into change.PasswordHash first (bcrypt runs outside the transaction, in a hash slot).
	hash, cleartext string
	// issueTOTP: create the User's TOTP Secret with a new seed before the transaction (the seed
	// goes into change.Desired). withdrawTOTP: delete the owned TOTP Secret after it.
	issueTOTP, withdrawTOTP bool
	// adoptTOTP: make the User the controller of the imported TOTP Secret (a Kubernetes write only).
	adoptTOTP bool
	// totpSecretName is what status.totpSecretName says afterwards.
	totpSecretName string
	// version is the password Secret version the panel holds afterwards.
	version string
	// current is the panel user as it is, when the plan writes nothing to it (from the snapshot's
	// comparison, so it is not built again for status).
	current *panel.User
	// adopt: the panel user is taken over (it was unbound). recreated: the panel user status
	// named was deleted outside the operator; a new one is created.
	adopt, recreated bool
}

// empty reports whether carrying out the plan writes nothing anywhere.
func (p userPlan) empty() bool {
	return p.stop == nil && !p.incomplete && p.change == nil && !p.issueTOTP && !p.withdrawTOTP && !p.adoptTOTP
}

// planUser decides, from the facts alone, what the User's reconcile does: every check of the
// spec and its inputs, who holds the email, which panel user is the User's, and what to write.
// It performs no I/O: Reconcile and the resync both call it.
func planUser(o Options, f userFacts) userPlan {
	user := f.user
	if stop := checkSpec(o, user); stop != nil {
		return userPlan{stop: stop}
	}
	if stop := checkGrant(f); stop != nil {
		return userPlan{stop: stop}
	}
	if stop := checkHolder(o, f); stop != nil {
		return userPlan{stop: stop}
	}
	p := userPlan{via: f.found.Via}
	snap := f.found.Snapshot
	applied := ""
	claim := bindingClaim(o, f)
	switch {
	case snap == nil:
		p.recreated = user.Status.UUID != ""
	case claim == panel.ClaimForeign:
		stop := waiting(v1.ReasonBoundElsewhere, "The panel user with this email is managed by another operator instance or "+
			"cluster; change spec.email, or release it there.")
		return userPlan{stop: &stop}
	case claim == panel.ClaimOther:
		b := snap.Binding
		stop := waiting(v1.ReasonBoundElsewhere, "The panel user with this email is managed by %s; delete that resource with "+
			"deletionPolicy Retain to release it, or change spec.email.", resourceFor(user, b.Namespace, b.Name))
		return userPlan{stop: &stop}
	case claim == panel.ClaimOwn:
		applied = snap.Binding.SecretVersion
	case claim == panel.ClaimStale && user.Spec.Adoption != v1.AdoptionIfExists:
		// An earlier User of this namespace and name made it and is gone without releasing it (its
		// finalizer was removed, or its namespace deleted): a new object inherits nothing by name.
		stop := waiting(v1.ReasonEmailTakenInPanel, "A panel user with this email was made by an earlier User of this "+
			"namespace and name, which is gone without releasing it; a new User does not inherit it. Set spec.adoption: "+
			"IfExists to take it over (its managed fields and password are overwritten), or change spec.email.")
		return userPlan{stop: &stop}
	case user.Spec.Adoption != v1.AdoptionIfExists:
		stop := waiting(v1.ReasonEmailTakenInPanel, "A panel user that no User resource manages already has this email. "+
			"Set spec.adoption: IfExists to take it over (its managed fields are overwritten) where a PanelAccessPolicy "+
			"allows it, or change spec.email.")
		if f.found.Via == panel.ViaStatus {
			stop = waiting(v1.ReasonEmailTakenInPanel, "The panel user named in status.uuid is not bound to this User. "+
				"Set spec.adoption: IfExists to take it over where a PanelAccessPolicy allows it, or clear status.uuid.")
		}
		return userPlan{stop: &stop}
	default:
		// Unbound, or bound to an earlier User of this name (ClaimStale): adopted like an unbound
		// panel user, the stale binding being what the write expects to replace.
		if err := f.grants.Adoption(user.Spec.Email); err != nil {
			stop := denied(err)
			return userPlan{stop: &stop}
		}
		p.adopt = true
	}
	if stop := checkHeldEmail(f, p.adopt); stop != nil {
		return userPlan{stop: stop}
	}

	if stop, incomplete := planPassword(o, f, applied, &p); stop != nil || incomplete {
		return userPlan{stop: stop, incomplete: incomplete}
	}
	d := desiredFields(o, user)
	if stop, incomplete := planTOTP(f, &d, &p); stop != nil || incomplete {
		return userPlan{stop: stop, incomplete: incomplete}
	}

	want := panel.Binding{Namespace: user.Namespace, Name: user.Name, ResourceUID: string(user.UID),
		InstanceID: o.InstanceID, ClusterID: o.ClusterID, SecretVersion: p.version}
	if snap == nil {
		p.change = &panel.UserChange{Desired: &d, PasswordHash: p.hash, Binding: &want, Unbind: f.found.Stale}
		return p
	}
	want.UserUUID = snap.UUID
	u, matches := snap.Matches(d)
	if matches && p.hash == "" && p.cleartext == "" && snap.Binding != nil && *snap.Binding == want {
		p.current = &u
		return p
	}
	p.change = &panel.UserChange{UUID: snap.UUID, Desired: &d, PasswordHash: p.hash, Binding: &want, Expect: snap.Binding}
	return p
}

// bindingClaim is how the binding of the panel user found relates to the User (panel.ClaimNone
// when none was found or it is unbound).
func bindingClaim(o Options, f userFacts) panel.Claim {
	if f.found.Snapshot == nil {
		return panel.ClaimNone
	}
	return o.operator().Claim(f.found.Snapshot.Binding, f.user.Namespace, f.user.Name, string(f.user.UID))
}

// checkSpec refuses what the spec alone makes impossible, before any panel read.
func checkSpec(o Options, user *v1.User) *outcome {
	lang := user.Spec.Language
	if lang == "" || slices.Contains(o.Languages, lang) {
		return nil
	}
	stop := waiting(v1.ReasonUnsupportedLanguage, "Language %q is not enabled in the panel; use one of %s in spec.language.",
		lang, strings.Join(o.Languages, ", "))
	return &stop
}

// checkGrant refuses an email no PanelAccessPolicy grants the User's namespace: before any panel
// lookup, so the namespace learns nothing of what the panel holds for it. A User already bound
// when its namespace lost the grant is refused the same way: nothing is written to its panel user
// (its deletion still releases it).
func checkGrant(f userFacts) *outcome {
	if err := f.grants.Email(f.user.Spec.Email); err != nil {
		stop := denied(err)
		return &stop
	}
	return nil
}

// checkHeldEmail refuses to write to a panel user whose email, as the panel holds it now, the
// namespace is not granted (adopt: granted for adoption): a User whose namespace lost the grant
// of its panel user's email cannot keep that login by moving it to an email it is still granted,
// and a panel user found through status or a stale binding, whose email differs from spec.email,
// is not taken because spec.email is granted. The message does not repeat that email.
func checkHeldEmail(f userFacts, adopt bool) *outcome {
	snap := f.found.Snapshot
	if snap == nil || !snap.Exists || panel.NormalizeEmail(snap.Email()) == panel.NormalizeEmail(f.user.Spec.Email) {
		return nil
	}
	check, role, verb := f.grants.Email, "manages", "hold"
	if adopt {
		check, role, verb = f.grants.Adoption, "would adopt", "adopt"
	}
	if check(snap.Email()) == nil {
		return nil
	}
	stop := waiting(v1.ReasonNotPermitted, "The panel user this User %s holds an email other than spec.email, which no "+
		"PanelAccessPolicy lets namespace %s %s (%s); an email change needs both the old and the new email granted.",
		role, f.user.Namespace, verb, f.grants.Describe())
	return &stop
}

// denied is the outcome of a request no policy allows (a *tenancy.Denial): NotPermitted, waiting
// for a policy or the spec to change.
func denied(err error) outcome {
	return waiting(v1.ReasonNotPermitted, "%s", err.Error())
}

// checkHolder lets only one of the Users sharing an email hold it (emailHolderOf); the others
// wait, and proceed when the holder goes.
func checkHolder(o Options, f userFacts) *outcome {
	if !f.peersRead {
		return nil
	}
	if f.mover != nil {
		// Its reconcile moves the panel user off this email; nothing else would wake this one then.
		stop := retrying(v1.ReasonDuplicateEmail, "The panel user with this email is managed by %s, whose spec.email "+
			"changed; waiting for it to move the panel user to its new email.", resourceFor(f.user, f.mover.Namespace, f.mover.Name))
		return &stop
	}
	holder, byBinding := emailHolderOf(f.peers, f.emailBound, o.operator())
	if holder == nil || holder.UID == f.user.UID {
		return nil
	}
	why := "created earlier"
	if byBinding {
		why = "which manages the panel user with this email"
	}
	if holder.Namespace != f.user.Namespace {
		// Whose it is, and why, are another tenant's business.
		stop := waiting(v1.ReasonDuplicateEmail, "The email is already held by a User in another namespace; emails are unique "+
			"in the panel. Change spec.email; this User proceeds if that User lets the email go.")
		return &stop
	}
	stop := waiting(v1.ReasonDuplicateEmail, "The email is already held by User %s/%s, %s; emails are unique in the panel. "+
		"Change spec.email, or delete that User and this one proceeds.", holder.Namespace, holder.Name, why)
	return &stop
}

// resourceFor names another User for the user's conditions and events (SameNamespaceName).
func resourceFor(user *v1.User, namespace, name string) string {
	return SameNamespaceName("User", user.Namespace, namespace, name)
}

// SameNamespaceName names another object of the kind for the conditions and events of an object
// in namespace from: by namespace/name when it is in that same namespace, as "a <kind> in another
// namespace" otherwise (no tenant learns another's resource names).
func SameNamespaceName(kind, from, namespace, name string) string {
	if namespace == from {
		return kind + " " + namespace + "/" + name
	}
	return "a " + kind + " in another namespace"
}

// planPassword decides whether the password is written: only when the Secret's version differs
// from the one the panel holds (applied, from the binding row: status may be stale), and then
// only a password that passes the checks.
func planPassword(o Options, f userFacts, applied string, p *userPlan) (*outcome, bool) {
	user, s := f.user, f.password
	ref, key := user.Spec.PasswordSecretRef, passwordKey(user)
	p.version = applied
	if applied != "" && s.version == applied {
		return nil, false
	}
	if !s.read {
		return nil, true
	}
	if s.missing {
		stop := waiting(v1.ReasonSecretNotFound, "Secret %s/%s named in spec.passwordSecretRef does not exist; create it with key %q.",
			user.Namespace, ref.Name, key)
		return &stop, false
	}
	if s.version == applied {
		return nil, false
	}
	if s.value == "" {
		stop := waiting(v1.ReasonSecretKeyMissing, "Secret %s/%s has no key %q; add it, or set spec.passwordSecretRef.key to %q or %q.",
			user.Namespace, ref.Name, key, v1.PasswordKeyCleartext, v1.PasswordKeyHash)
		return &stop, false
	}
	p.version = s.version
	if key == v1.PasswordKeyHash {
		h, err := password.PanelForm(strings.TrimSpace(s.value))
		if err != nil {
			stop := waiting(v1.ReasonInvalidPasswordHash, "Key %q of Secret %s/%s is %v; the panel's password is unchanged.",
				key, user.Namespace, ref.Name, err)
			return &stop, false
		}
		if cost, _ := password.CostOf(h); !o.HashCosts.Contains(cost) {
			stop := waiting(v1.ReasonHashCostOutOfRange, "Key %q of Secret %s/%s is a bcrypt hash of cost %d; this operator accepts "+
				"costs %s (--password-hash-min-cost, --password-hash-max-cost). Hash the password again at a cost in that range "+
				"(the panel's own is 12); the panel's password is unchanged.", key, user.Namespace, ref.Name, cost, o.HashCosts)
			return &stop, false
		}
		p.hash = h
		return nil, false
	}
	who := password.Person{Email: user.Spec.Email, FirstName: user.Spec.FirstName, LastName: user.Spec.LastName}
	if err := o.PasswordPolicy.Check(s.value, who); err != nil {
		stop := waiting(v1.ReasonWeakPassword, "The password in Secret %s/%s is refused: %v. Put a stronger one in the Secret; "+
			"the panel's password is unchanged.", user.Namespace, ref.Name, err)
		return &stop, false
	}
	p.cleartext = s.value
	return nil, false
}

// planTOTP decides the authenticator seed from the TOTP Secret as it is (not from status, which
// a lost write leaves stale): the owned Secret's seed when TOTP is wanted (a new one issued when
// there is none), and the seed withdrawn when it is not wanted and an owned Secret still exists.
func planTOTP(f userFacts, d *panel.DesiredUser, p *userPlan) (*outcome, bool) {
	user, t := f.user, f.totp
	name := totpSecretName(user)
	if wantsTOTP(user) {
		switch {
		case !t.read:
			return nil, true
		case t.exists && !t.owned && (!t.imported || t.seed == ""):
			stop := waiting(v1.ReasonTOTPSecretConflict, "Secret %s/%s exists and is not owned by this User; rename or delete it so the "+
				"operator can issue the authenticator seed there.", user.Namespace, name)
			return &stop, false
		case t.exists && t.seed != "":
			d.TOTPSecret = t.seed
			p.adoptTOTP = !t.owned
		default:
			p.issueTOTP = true
			d.TOTPSecret = pendingSeed
		}
		d.DefaultMethod = panel.MethodTOTP
		p.totpSecretName = name
		return nil, false
	}
	snap := f.found.Snapshot
	if snap == nil {
		return nil, false // a panel user about to be created has no seed to withdraw
	}
	if !t.read {
		if user.Status.TOTPSecretName != "" || snap.User().TOTPSecretSet {
			return nil, true
		}
		return nil, false
	}
	// The seed this User issued goes: its Secret still exists (whatever status says), or status
	// says it issued one and the panel still holds a seed although the Secret was deleted by hand.
	// A seed the person enrolled in the panel themselves, with no such record, is theirs.
	if t.owned || (user.Status.TOTPSecretName != "" && snap.User().TOTPSecretSet) {
		d.DefaultMethod, d.RemoveTOTP = panel.MethodEmail, true
		p.withdrawTOTP = t.owned
	}
	return nil, false
}

// pendingSeed stands for the seed a plan with issueTOTP issues: the executor replaces it with the
// new seed before the transaction.
const pendingSeed = "(issued when the plan is carried out)"

// plannedStatus is the status after the plan, with u the panel user as the write left it and
// clients its clients (conditions are set apart).
func plannedStatus(st *v1.UserStatus, p userPlan, u panel.User, clients []panel.UserClient) {
	setObservedUser(st, u, clients)
	st.PasswordSecretVersion = p.version
	st.TOTPSecretName = p.totpSecretName
}
