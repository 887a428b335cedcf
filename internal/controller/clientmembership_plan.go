package controller

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
)

// membershipInputs is what a ClientMembership reconcile gathered, by I/O only: every decision is
// planMembership's.
type membershipInputs struct {
	membership *v1.ClientMembership
	// operator is this operator as the binding tables know it.
	operator panel.Operator
	// user is the User named in spec.userRef; nil when it does not exist.
	user *v1.User

	// For a membership not being deleted:

	// grants are what the membership's namespace may do in the panel (its PanelAccessPolicies,
	// from the cache), judged before anything of the client is read.
	grants tenancy.Grants
	// clientUUID is the client spec.client stands for: spec.client.uuid, or the one client with
	// spec.client.companyName; "" when that name matches no client or several (named says how
	// many, up to 2).
	clientUUID string
	named      int
	// ownerNamespace is the membership's namespace when the client's owner is a panel user a User
	// of that namespace (and this operator instance) manages, else ""; read (ownerRead) only when
	// a policy grants clients by their owner and the grant cannot be decided without it.
	ownerNamespace string
	ownerRead      bool

	// client is the panel client spec.client selects, read once it is granted; nil when none
	// matches.
	client *panel.Client
	// peers are the memberships whose status names the same client, this one included or not.
	peers []v1.ClientMembership
	// state is the association of the user's panel user with the client and its binding; read
	// only when both are known.
	state panel.MembershipState
	// holder is the membership the association's binding names when it is another one of this
	// namespace and operator instance and still exists (same UID); nil otherwise.
	holder *v1.ClientMembership

	// For a membership being deleted:

	// bound are the associations bound to this membership: what it made, whatever its status says.
	bound []panel.MembershipState
}

// membershipPlan is what a reconcile does, decided from its inputs alone.
type membershipPlan struct {
	// addFinalizer and setOwner change the membership's metadata, before anything is written to
	// the panel (once its User exists, together): the finalizer so that a deletion always gets to
	// remove what was written, the
	// ownerReference to setOwner (the User) so that garbage collection removes the membership
	// with its User.
	addFinalizer bool
	setOwner     *v1.User

	// write, when set, is the association and binding to write in one transaction.
	write *membershipWrite

	// remove are the associations (with their bindings) the deletion removes, release the
	// bindings it forgets, leaving their associations to the panel.
	remove  []panel.MembershipBinding
	release []membershipRelease
	// removeFinalizer lets the membership go once remove and release are done.
	removeFinalizer bool

	// recheck: the outcome rests on the client's owner, read from the panel, which no watch
	// reports: the membership looks again every resync.
	recheck bool

	// refused is the outcome when the store refuses the write or a removal by a panel rule: the
	// client's owner changed between gathering and writing.
	refused outcome

	// status fields known from the inputs; empty ones are left as they are.
	userUUID, clientUUID string
	client               *v1.ClientSummary
}

// membershipWrite is one ApplyMembership call.
type membershipWrite struct {
	binding panel.MembershipBinding
	want    panel.Membership
	// replacing is the UID of the resource whose binding this one takes over ("" for none).
	replacing string
	// event is the reason and note of the event when the association changes.
	reason, note string
}

// membershipRelease is a binding forgotten and why.
type membershipRelease struct {
	binding panel.MembershipBinding
	// owner: the association is the client's owner, kept by the panel as its User goes.
	owner bool
}

// planMembership decides everything a reconcile of a ClientMembership does, and the outcome its
// conditions say, from what was gathered. It does no I/O.
func planMembership(in membershipInputs) (membershipPlan, outcome) {
	if !in.membership.DeletionTimestamp.IsZero() {
		return planMembershipDeletion(in)
	}
	m := in.membership
	var p membershipPlan
	// The finalizer waits for the User: with no User nothing is written, and the ownerReference
	// goes in the same update as the finalizer, so a membership applied before its User costs
	// one metadata update, not two.
	p.addFinalizer = in.user != nil && !slices.Contains(m.Finalizers, MembershipFinalizer)
	if in.user != nil && !ownedBy(m, in.user) && in.user.DeletionTimestamp.IsZero() {
		p.setOwner = in.user
	}
	if stop := checkMembershipUser(in); stop != nil {
		return p, *stop
	}
	p.userUUID = in.user.Status.UUID
	stop, keepOwner, recheck := decideGrant(in)
	if stop != nil {
		p.recheck = recheck
		return p, *stop
	}
	if in.client == nil {
		return p, waiting(v1.ReasonClientNotFound, "No panel client matches spec.client (%s); create it in the panel or fix the "+
			"selector. Checked again every resync.", describeSelector(m.Spec.Client))
	}
	c := in.client
	p.clientUUID = c.UUID
	p.client = &v1.ClientSummary{Name: c.Name, CompanyName: c.CompanyName, TaxID: c.TaxID, Status: strings.ToUpper(c.Status)}
	p.refused = waiting(v1.ReasonOwnerConflict, "The user owns client %s; the panel takes ownership away only by "+
		"transferring it. Set spec.owner: true on another membership of this client.", c.UUID)
	if keepOwner != nil {
		p.refused = *keepOwner // the owner changed since it was read: ownership is not granted
	}
	if o := olderPeerConflict(m, p.userUUID, in.peers); o != nil {
		return p, *o
	}
	replacing := ""
	if b := in.state.Binding; b != nil && !b.HeldBy(in.operator, m.Namespace, m.Name, string(m.UID)) {
		switch {
		case b.Foreign(in.operator):
			return p, waiting(v1.ReasonBoundElsewhere, "The association of this user with client %s belongs to another "+
				"operator instance or cluster; release it there.", c.UUID)
		case b.Namespace != m.Namespace:
			return p, waiting(v1.ReasonBoundElsewhere, "The association of this user with client %s belongs to %s; delete "+
				"that one, or its row in puq_operator_membership_bindings if it is gone.", c.UUID, membershipFor(m, b.Namespace, b.Name))
		case in.holder != nil && OlderThan(in.holder.ObjectMeta, m.ObjectMeta):
			return p, waiting(v1.ReasonDuplicateMembership, "%s, created earlier, already associates this user with this "+
				"client; delete one of them.", membershipFor(m, in.holder.Namespace, in.holder.Name))
		}
		// The holder is gone (deleted without releasing, or this resource's predecessor of the
		// same name) or younger (it yields to this one as a DuplicateMembership): take it over.
		replacing = b.ResourceUID
	}
	if a := in.state.Association; a != nil && a.Owner && !m.Spec.Owner {
		return p, p.refused
	}
	want := panel.Membership{Owner: m.Spec.Owner, Permissions: permissionKeys(m.Spec.Permissions), KeepOwner: keepOwner != nil}
	binding := membershipBinding(m, in.operator, p.userUUID, c.UUID)
	if b := in.state.Binding; b != nil && replacing == "" && b.ResourceUID != binding.ResourceUID {
		replacing = b.ResourceUID // the previous cluster's binding of this name, taken over
	}
	// Its own binding is rewritten when it lacks this cluster (a row from before the upgrade) or
	// is the previous cluster's.
	bound := in.state.Binding != nil && *in.state.Binding == binding
	if a := in.state.Association; a == nil || !a.Satisfies(want) || !bound {
		w := &membershipWrite{binding: binding, want: want, replacing: replacing,
			reason: "Updated", note: "Associated the user with client " + c.UUID}
		if m.Status.ObservedGeneration == m.Generation && IsReadyReason(m.Status.Conditions, v1.ReasonReconciled) {
			w.reason, w.note = "DriftCorrected", "Repaired the association with client "+c.UUID+", changed outside the operator"
		}
		p.write = w
	}
	return p, ready("The association matches the spec.")
}

// checkMembershipUser waits for the User the membership names: it must exist, not be going, hold
// an email the namespace is granted (a User whose namespace lost its grant gets no association
// written for it either), and be Ready.
func checkMembershipUser(in membershipInputs) *outcome {
	m, user := in.membership, in.user
	var o outcome
	if user == nil {
		o = waiting(v1.ReasonUserNotFound, "User %s/%s named in spec.userRef does not exist; create it.", m.Namespace, m.Spec.UserRef.Name)
		return &o
	}
	if !user.DeletionTimestamp.IsZero() {
		// Its deletion removes its memberships; an association written now would outlive it.
		o = waiting(v1.ReasonUserNotReady, "User %s is being deleted; no association is written for it.", user.Name)
		return &o
	}
	if err := in.grants.Email(user.Spec.Email); err != nil {
		o = waiting(v1.ReasonNotPermitted, "User %s may not hold its email, so no association is written for it: %v", user.Name, err)
		return &o
	}
	if user.Status.UUID == "" || !IsReadyReason(user.Status.Conditions, v1.ReasonReconciled) {
		o = waiting(v1.ReasonUserNotReady, "User %s is not Ready yet; the association is written once it is.", user.Name)
		return &o
	}
	return nil
}

// checkClientGrant judges the client spec.client stands for against the namespace's grants,
// from spec.client, the UUID a company name stands for and the owner's namespace: nothing of
// the client is read before it passes. A company name that matches no client or several is
// refused exactly as a client not granted, unless the namespace may use any client: the answer
// never tells a namespace whether a client it is not granted exists.
func checkClientGrant(in membershipInputs) *outcome {
	m := in.membership
	sel := m.Spec.Client
	if sel.UUID == "" && in.grants.AnyClient() {
		var o outcome
		switch {
		case in.named == 0:
			o = waiting(v1.ReasonClientNotFound, "No panel client matches spec.client (%s); create it in the panel or fix the "+
				"selector. Checked again every resync.", describeSelector(sel))
		case in.named > 1:
			o = waiting(v1.ReasonAmbiguousClient, "Several panel clients have companyName %q; name the client by spec.client.uuid "+
				"in a new ClientMembership (spec.client cannot be changed). Checked again every resync.", sel.CompanyName)
		default:
			return nil
		}
		return &o
	}
	named := ""
	if sel.UUID == "" {
		named = strconv.Quote(sel.CompanyName)
	}
	err := in.grants.Membership(tenancy.MembershipRequest{ClientUUID: in.clientUUID, Client: named, Owner: m.Spec.Owner,
		OwnerNamespace: in.ownerNamespace, Permissions: m.Spec.Permissions})
	if err == nil {
		return nil
	}
	o := denied(err)
	return &o
}

// decideGrant judges the client against the grants (checkClientGrant). stop is the denial the
// membership waits on, recheck whether it rests on the panel's owner, read again every resync.
// keepOwner is the denial when the namespace is granted the client but not its ownership and the
// panel already has this user as the client's owner: the plan then re-asserts that owner
// (panel.Membership.KeepOwner), which needs no grant, and the denial is the outcome should the
// owner change before the write.
func decideGrant(in membershipInputs) (stop, keepOwner *outcome, recheck bool) {
	denied := checkClientGrant(in)
	switch {
	case denied == nil:
		return nil, nil, false
	case !ownershipOnlyDenied(in):
		return denied, nil, in.ownerRead
	}
	if a := in.state.Association; in.client == nil || a == nil || !a.Owner {
		// The client is granted, not its ownership: one made the owner in the panel UI later is
		// accepted at a resync.
		return denied, nil, true
	}
	return nil, denied, false
}

// ownershipOnlyDenied reports whether the grants refuse the membership only for asking for
// ownership: spec.owner is true and the namespace is granted the client (with no permission
// asked, as an owner's are the panel's). Then re-asserting the user the panel already has as
// the client's owner needs no grant: it makes nobody owner. Judged from the spec and the grants
// alone, before anything of the client is read, as checkClientGrant.
func ownershipOnlyDenied(in membershipInputs) bool {
	m := in.membership
	if !m.Spec.Owner || in.clientUUID == "" {
		return false
	}
	named := ""
	if m.Spec.Client.UUID == "" {
		named = strconv.Quote(m.Spec.Client.CompanyName)
	}
	return in.grants.Membership(tenancy.MembershipRequest{ClientUUID: in.clientUUID, Client: named,
		OwnerNamespace: in.ownerNamespace}) == nil
}

// membershipFor names another ClientMembership for m's conditions: by name when it is in m's
// namespace, and without naming it otherwise (another tenant's names are not m's to read).
func membershipFor(m *v1.ClientMembership, namespace, name string) string {
	return SameNamespaceName("ClientMembership", m.Namespace, namespace, name)
}

// planMembershipDeletion removes what the membership made, as its binding table rows say (not its
// status: a status write can be lost after the association committed), or releases it. The
// client's owner is never removed (the panel refuses): a membership deleted by itself waits for a
// transfer; one whose User is going releases it, since its User's deletion waits for it and the
// panel will not let the owner go either way.
func planMembershipDeletion(in membershipInputs) (membershipPlan, outcome) {
	m := in.membership
	p := membershipPlan{}
	if !slices.Contains(m.Finalizers, MembershipFinalizer) {
		return p, ready("Deleted.")
	}
	userGoing := in.user == nil || !in.user.DeletionTimestamp.IsZero()
	var blocked []string
	for _, st := range in.bound {
		b := *st.Binding
		switch {
		case m.Spec.DeletionPolicy == v1.MembershipDeletionRetain:
			p.release = append(p.release, membershipRelease{binding: b})
		case st.Association != nil && st.Association.Owner && userGoing:
			p.release = append(p.release, membershipRelease{binding: b, owner: true})
		case st.Association != nil && st.Association.Owner:
			blocked = append(blocked, b.ClientUUID)
		default:
			p.remove = append(p.remove, b)
		}
	}
	named := blocked
	if len(named) == 0 { // the owner can only have changed since it was read: name every client removed
		for _, b := range p.remove {
			named = append(named, b.ClientUUID)
		}
	}
	p.refused = waiting(v1.ReasonOwnerRemovalBlocked, "The user is the owner of client %s and the panel does not remove an "+
		"owner. Make another user the owner (spec.owner: true on their membership), or set spec.deletionPolicy: Retain.",
		strings.Join(named, ", "))
	if len(blocked) > 0 {
		return p, p.refused
	}
	p.removeFinalizer = true
	return p, ready("Deleted.")
}

// olderPeerConflict lets the oldest membership win when two name the same user and client, or
// when two claim ownership of one client. A peer refused NotPermitted claims nothing: a namespace
// that lost its grant of the client cannot keep it from one that has it.
func olderPeerConflict(m *v1.ClientMembership, userUUID string, peers []v1.ClientMembership) *outcome {
	for i := range peers {
		other := &peers[i]
		if other.UID == m.UID || !other.DeletionTimestamp.IsZero() || !OlderThan(other.ObjectMeta, m.ObjectMeta) ||
			IsReadyReason(other.Status.Conditions, v1.ReasonNotPermitted) {
			continue
		}
		if other.Status.UserUUID == userUUID {
			o := waiting(v1.ReasonDuplicateMembership, "%s, created earlier, already associates this user with this client; "+
				"delete one of them.", membershipFor(m, other.Namespace, other.Name))
			return &o
		}
		if m.Spec.Owner && other.Spec.Owner {
			o := waiting(v1.ReasonOwnerConflict, "%s, created earlier, already makes its user the owner of this client; a "+
				"client has one owner. Set spec.owner: false on one of them.", membershipFor(m, other.Namespace, other.Name))
			return &o
		}
	}
	return nil
}

// ownedBy reports whether m has an ownerReference to owner, as controllerutil.SetOwnerReference
// writes it (not a controller reference: metav1.IsControlledBy never sees it).
func ownedBy(m metav1.Object, owner metav1.Object) bool {
	return slices.ContainsFunc(m.GetOwnerReferences(), func(r metav1.OwnerReference) bool { return r.UID == owner.GetUID() })
}

// membershipBinding is the binding of m's association of a user with a client.
func membershipBinding(m *v1.ClientMembership, o panel.Operator, userUUID, clientUUID string) panel.MembershipBinding {
	return panel.MembershipBinding{UserUUID: userUUID, ClientUUID: clientUUID, Namespace: m.Namespace, Name: m.Name,
		ResourceUID: string(m.UID), InstanceID: o.Instance, ClusterID: o.Cluster}
}

func permissionKeys(perms []v1.Permission) []string {
	keys := make([]string, 0, len(perms))
	for _, p := range perms {
		keys = append(keys, string(p))
	}
	return keys
}

func describeSelector(s v1.ClientSelector) string {
	if s.UUID != "" {
		return "uuid " + s.UUID
	}
	return fmt.Sprintf("companyName %q", s.CompanyName)
}
