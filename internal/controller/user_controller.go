package controller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/totp"
)

// UserFinalizer keeps a User until its panel user is deleted, disabled or released.
const UserFinalizer = "panel.puqcloud.com/user"

// Options are the operator settings the controllers share.
type Options struct {
	// InstanceID names this operator in the binding table.
	InstanceID string
	// BcryptCost is the bcrypt cost for cleartext passwords.
	BcryptCost int
	// PasswordPolicy checks cleartext passwords.
	PasswordPolicy password.Policy
	// Languages are the panel's enabled locales.
	Languages []string
	// TOTPIssuer labels issued authenticator seeds.
	TOTPIssuer string
	// ResyncPeriod is how often a Ready object is re-read from the panel to repair drift.
	ResyncPeriod time.Duration
	// MaxConcurrentReconciles is the number of objects reconciled at once per kind.
	MaxConcurrentReconciles int
	// Namespaces are the watched namespaces; empty for all.
	Namespaces []string
	// MaxConcurrentHashes bounds the bcrypt hashes computed at once (default: one per core), so
	// reconciles waiting on the API server or the database are never stuck behind hashes.
	MaxConcurrentHashes int
}

// resync is the resync period with up to 10% jitter, so objects do not all come due at once.
func (o Options) resync() time.Duration {
	if o.ResyncPeriod <= 0 {
		return 0
	}
	return o.ResyncPeriod + time.Duration(rand.Int64N(int64(o.ResyncPeriod)/10+1))
}

// UserReconciler keeps a panel user equal to its User resource.
type UserReconciler struct {
	client.Client
	// APIReader reads Secrets straight from the API server, so no Secret is ever cached.
	APIReader client.Reader
	Store     *panel.Store
	Recorder  recorder.EventRecorder
	Options   Options

	hashSlots chan struct{}
	// secrets knows the versions of the Secrets Users use, so an unchanged password Secret costs
	// no API call, and queues Users when their Secrets change.
	secrets *secretWatch
}

// RBAC, least privilege: Secrets are read (and listed and watched as metadata); the only Secrets written are
// the TOTP Secrets the operator creates and deletes. No verb on anything else.
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=users,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=users/status,verbs=update
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=users/finalizers,verbs=update
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=clientmemberships,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one User's panel user in line with its spec and reports the panel's view.
func (r *UserReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return retryConflicts(r.reconcile(ctx, req))
}

func (r *UserReconciler) reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	user := &v1.User{}
	if err := r.Get(ctx, req.NamespacedName, user); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !user.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, user)
	}
	if controllerutil.AddFinalizer(user, UserFinalizer) {
		if err := r.Update(ctx, user); err != nil {
			return ctrl.Result{}, err
		}
	}
	before := user.Status.DeepCopy()
	o, err := r.reconcileNormal(ctx, user)
	// No requeue when Ready: the resyncer compares Ready Users with the panel in batches.
	return conclude("User", &user.Status.Conditions, &user.Status.ObservedGeneration, user.Generation, o, err,
		func() error { return r.patchStatus(ctx, user, before) }, 0)
}

// reconcileNormal checks the inputs, then creates or updates the panel user. Bad input ends it
// before anything is written.
func (r *UserReconciler) reconcileNormal(ctx context.Context, user *v1.User) (outcome, error) {
	if o := r.checkLanguage(user); o != nil {
		return *o, nil
	}
	if o, err := r.checkEmailHolder(ctx, user); o != nil || err != nil {
		return deref(o), err
	}
	existing, binding, snap, o, err := r.findPanelUser(ctx, user)
	if o != nil || err != nil {
		return deref(o), err
	}
	// The Secret version last written: the binding row is the truth (a cached status can be
	// stale); no panel user yet means nothing was written.
	applied := ""
	if binding != nil {
		applied = binding.SecretVersion
	}
	pw, o, err := r.readPassword(ctx, user, applied)
	if o != nil || err != nil {
		return deref(o), err
	}
	desired, o, err := r.desiredUser(ctx, user, existing != "")
	if o != nil || err != nil {
		return deref(o), err
	}
	current, o, err := r.applyPanelUser(ctx, user, existing, binding, snap, desired, pw)
	if o != nil || err != nil {
		return deref(o), err
	}
	// The clients: from the snapshot when one was read; a panel user just created has none.
	var clients []panel.UserClient
	known := existing == ""
	if snap != nil && snap.UUID == current.UUID {
		clients, known = snap.Clients, true
	}
	if o, err := r.observe(ctx, user, *current, clients, known); o != nil || err != nil {
		return deref(o), err
	}
	return ready("The panel user matches the spec."), nil
}

func deref(o *outcome) outcome {
	if o == nil {
		return retrying(v1.ReasonProgressing, "Reconciling")
	}
	return *o
}

func (r *UserReconciler) checkLanguage(user *v1.User) *outcome {
	lang := user.Spec.Language
	if lang == "" || slices.Contains(r.Options.Languages, lang) {
		return nil
	}
	o := waiting(v1.ReasonUnsupportedLanguage, "Language %q is not enabled in the panel; use one of %s in spec.language.",
		lang, strings.Join(r.Options.Languages, ", "))
	return &o
}

// checkEmailHolder lets only one of the Users sharing an email hold it (emailHolderOf); the others
// wait, and proceed when the holder goes. A User no other User shares its email with costs no
// database round trip; one that shares it reads which resource the panel user with the email is
// bound to, so every peer decides from the same facts.
func (r *UserReconciler) checkEmailHolder(ctx context.Context, user *v1.User) (*outcome, error) {
	var peers v1.UserList
	if err := r.List(ctx, &peers, client.MatchingFields{indexUserEmail: panel.NormalizeEmail(user.Spec.Email)}); err != nil {
		return nil, fmt.Errorf("cannot list Users by email: %w", err)
	}
	// Alone with its email, a User proceeds without asking the panel, unless it was waiting for a
	// holder: that holder may have changed its email and not yet moved its panel user off this one.
	if !slices.ContainsFunc(peers.Items, func(p v1.User) bool { return p.UID != user.UID }) &&
		!isReadyReason(user.Status.Conditions, v1.ReasonDuplicateEmail) {
		return nil, nil
	}
	bound, err := r.emailBinding(ctx, user.Spec.Email)
	if err != nil {
		return databaseOutcome(err), storeErr(err)
	}
	if mover := r.movingHolder(ctx, peers.Items, bound); mover != nil {
		// Its reconcile moves the panel user off this email; nothing else would wake this one then.
		o := retrying(v1.ReasonDuplicateEmail, "The panel user with this email is managed by User %s/%s, whose spec.email "+
			"changed; waiting for it to move the panel user to its new email.", mover.Namespace, mover.Name)
		return &o, nil
	}
	holder, byBinding := emailHolderOf(peers.Items, bound, r.Options.InstanceID)
	if holder == nil || holder.UID == user.UID {
		return nil, nil
	}
	why := "created earlier"
	if byBinding {
		why = "which manages the panel user with this email"
	}
	o := waiting(v1.ReasonDuplicateEmail, "The email is already held by User %s/%s, %s; emails are unique in the panel. "+
		"Change spec.email, or delete that User and this one proceeds.", holder.Namespace, holder.Name, why)
	if !isReadyReason(user.Status.Conditions, v1.ReasonDuplicateEmail) {
		r.Recorder.Eventf(user, nil, corev1.EventTypeWarning, v1.ReasonDuplicateEmail, "CheckEmail", o.message)
	}
	return &o, nil
}

// movingHolder is the User of this operator instance that the panel user with the email is bound
// to when that User is no longer one of the email's peers (it changed its spec.email and has not
// yet written the new one to the panel); nil otherwise.
func (r *UserReconciler) movingHolder(ctx context.Context, peers []v1.User, bound *panel.Binding) *v1.User {
	if bound == nil || bound.InstanceID != r.Options.InstanceID {
		return nil
	}
	if holder, byBinding := emailHolderOf(peers, bound, r.Options.InstanceID); holder != nil && byBinding {
		return nil
	}
	mover := &v1.User{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: bound.Namespace, Name: bound.Name}, mover); err != nil {
		return nil // gone, or in a namespace this operator does not watch: not moving
	}
	return mover
}

// emailBinding is the binding of the panel user that has the email; nil when no panel user has
// it, or when that user is bound to no resource.
func (r *UserReconciler) emailBinding(ctx context.Context, email string) (*panel.Binding, error) {
	existing, err := r.Store.FindUserByEmail(ctx, email)
	if errors.Is(err, panel.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b, err := r.Store.GetBinding(ctx, existing.UUID)
	if errors.Is(err, panel.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// emailHolderOf is the User, among the Users sharing an email, that holds it: the one the panel
// user with the email is bound to (bound, by operator instance), whatever the ages, since it
// already manages that user (byBinding); otherwise the oldest (emailHolder). Every peer computes
// it from the same cache and the same binding row, so exactly one proceeds, and the one that does
// is never the one findPanelUser would find bound to another (the binding is matched as ownBinding
// matches it).
func emailHolderOf(users []v1.User, bound *panel.Binding, instance string) (holder *v1.User, byBinding bool) {
	if bound != nil {
		for i := range users {
			if bound.SameResource(users[i].Namespace, users[i].Name, instance) {
				return &users[i], true
			}
		}
	}
	return emailHolder(users), false
}

// emailHolder is the oldest of the Users sharing an email.
func emailHolder(users []v1.User) *v1.User {
	var holder *v1.User
	for i := range users {
		u := &users[i]
		if holder == nil || olderThan(u.ObjectMeta, holder.ObjectMeta) {
			holder = u
		}
	}
	return holder
}

// olderThan orders objects by creationTimestamp, then namespace/name.
func olderThan(a, b metav1.ObjectMeta) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// passwordInput is the password to write: a $2y$ hash, or "" when the panel already has this
// Secret version; and the version of the Secret read.
type passwordInput struct {
	hash    string
	version string
}

// readPassword reads the referenced Secret straight from the API server and, only when its
// version differs from the one last applied, checks and hashes it.
func (r *UserReconciler) readPassword(ctx context.Context, user *v1.User, applied string) (passwordInput, *outcome, error) {
	ref := user.Spec.PasswordSecretRef
	key := passwordKey(user)
	secretKey := types.NamespacedName{Namespace: user.Namespace, Name: ref.Name}
	if applied != "" && r.cachedSecretVersion(user) == applied {
		return passwordInput{version: applied}, nil, nil
	}
	secret := &corev1.Secret{}
	if err := r.readSecret(ctx, secretKey, secret); err != nil {
		if apierrors.IsNotFound(err) {
			o := waiting(v1.ReasonSecretNotFound, "Secret %s/%s named in spec.passwordSecretRef does not exist; create it with key %q.",
				user.Namespace, ref.Name, key)
			return passwordInput{}, &o, nil
		}
		return passwordInput{}, nil, fmt.Errorf("cannot read the password Secret: %w", err)
	}
	secretVersion := string(secret.UID) + "/" + secret.ResourceVersion
	r.secrets.Saw(secretKey, secretVersion)
	version := appliedVersion(secretVersion, key)
	if version == applied {
		return passwordInput{version: version}, nil, nil
	}
	value := trimLineEnding(string(secret.Data[key]))
	if value == "" {
		o := waiting(v1.ReasonSecretKeyMissing, "Secret %s/%s has no key %q; add it, or set spec.passwordSecretRef.key to %q or %q.",
			user.Namespace, ref.Name, key, v1.PasswordKeyCleartext, v1.PasswordKeyHash)
		return passwordInput{}, &o, nil
	}
	if key == v1.PasswordKeyHash {
		h, err := password.PanelForm(strings.TrimSpace(value))
		if err != nil {
			o := waiting(v1.ReasonInvalidPasswordHash, "Key %q of Secret %s/%s is %v; the panel's password is unchanged.",
				key, user.Namespace, ref.Name, err)
			return passwordInput{}, &o, nil
		}
		return passwordInput{hash: h, version: version}, nil, nil
	}
	who := password.Person{Email: user.Spec.Email, FirstName: user.Spec.FirstName, LastName: user.Spec.LastName}
	if err := r.Options.PasswordPolicy.Check(value, who); err != nil {
		o := waiting(v1.ReasonWeakPassword, "The password in Secret %s/%s is refused: %v. Put a stronger one in the Secret; "+
			"the panel's password is unchanged.", user.Namespace, ref.Name, err)
		return passwordInput{}, &o, nil
	}
	h, err := r.hash(ctx, value)
	if ctx.Err() != nil {
		return passwordInput{}, nil, ctx.Err()
	}
	if err != nil {
		o := waiting(v1.ReasonWeakPassword, "%v; the panel's password is unchanged.", err)
		return passwordInput{}, &o, nil
	}
	return passwordInput{hash: h, version: version}, nil, nil
}

// passwordKey is the Secret key the User's password is read from.
func passwordKey(user *v1.User) string {
	if k := user.Spec.PasswordSecretRef.Key; k != "" {
		return k
	}
	return v1.PasswordKeyCleartext
}

// appliedVersion is what the binding row records as applied: the Secret's UID/resourceVersion,
// followed by the key when it is not the default one, so that switching spec.passwordSecretRef.key
// on an unchanged Secret is applied. Rows written before keep matching for the default key, so
// an upgrade hashes nothing again; a User on key passwordHash is applied once more (no bcrypt).
func appliedVersion(secretVersion, key string) string {
	if secretVersion == "" || key == v1.PasswordKeyCleartext {
		return secretVersion
	}
	return secretVersion + "/" + key
}

// trimLineEnding drops the line endings at the end of a Secret value ("\n", "\r\n", as
// `kubectl create secret --from-file` keeps them from the file), the same for both keys; any other
// whitespace of a cleartext password is part of it.
func trimLineEnding(value string) string {
	return strings.TrimRight(value, "\r\n")
}

// cachedSecretVersion is the applied version (appliedVersion) of the User's password Secret as the
// Secret watch last saw it; "" when it does not know it, or when the watch is not following the
// namespace right now (its versions may be stale: a rotation would go unseen).
func (r *UserReconciler) cachedSecretVersion(user *v1.User) string {
	if !r.secrets.Healthy(user.Namespace) {
		return ""
	}
	return appliedVersion(r.secrets.Version(types.NamespacedName{Namespace: user.Namespace, Name: user.Spec.PasswordSecretRef.Name}),
		passwordKey(user))
}

// readSecret reads a Secret from the API server: from its watch cache, no older than what the
// Secret watch has delivered, and from etcd when that read fails or finds nothing (so a cache
// behind the watch never makes a Secret look missing). While the Secret watch is not healthy it
// reads from etcd (a quorum read) straight away.
func (r *UserReconciler) readSecret(ctx context.Context, key types.NamespacedName, secret *corev1.Secret) error {
	if rv := r.secrets.Through(key.Namespace); rv != "" && r.secrets.Healthy(key.Namespace) {
		if err := r.APIReader.Get(ctx, key, secret, &client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: rv}}); err == nil {
			return nil
		}
	}
	return r.APIReader.Get(ctx, key, secret)
}

// hashPassword computes a bcrypt hash; a variable so tests can hold hashes in their slots.
var hashPassword = password.Hash

// hash computes a bcrypt hash when one of the hash slots is free.
func (r *UserReconciler) hash(ctx context.Context, cleartext string) (string, error) {
	if r.hashSlots != nil {
		hashesWaiting.Inc()
		select {
		case r.hashSlots <- struct{}{}:
			hashesWaiting.Dec()
			defer func() { <-r.hashSlots }()
		case <-ctx.Done():
			hashesWaiting.Dec()
			return "", ctx.Err()
		}
	}
	hashesRunning.Inc()
	defer hashesRunning.Dec()
	start := time.Now()
	h, err := hashPassword(cleartext, r.Options.BcryptCost)
	hashDuration.Observe(time.Since(start).Seconds())
	return h, err
}

// userExists is Store.UserExists; a variable so a test can make it fail.
var userExists = (*panel.Store).UserExists

// newMetadataClient makes the Secret watch's client; a variable so a test can make it fail.
var newMetadataClient = metadata.NewForConfig

// findPanelUser finds the panel user this resource manages: by status, by the binding table (a
// resource restored into a new cluster), or by email (adoption). "" means none exists yet. The
// binding is returned when it is this resource's; the snapshot when the user was found by status
// (one round trip reads the user, its binding and its clients).
func (r *UserReconciler) findPanelUser(ctx context.Context, user *v1.User) (string, *panel.Binding, *panel.Snapshot, *outcome, error) {
	if id := user.Status.UUID; id != "" {
		snap, err := r.Store.Snapshot(ctx, id)
		if err != nil {
			return "", nil, nil, databaseOutcome(err), storeErr(err)
		}
		// Bound to this resource: the user exists (deleting it removes the binding too; if it was
		// deleted behind the operator's back, ApplyUser says so and it is created again).
		b, o := r.ownBinding(user, id, snap.Binding)
		if b != nil || o != nil || snap.Exists {
			return id, b, snap, o, nil
		}
	}
	if b, err := r.Store.FindBinding(ctx, r.Options.InstanceID, user.Namespace, user.Name); err == nil {
		exists, err := userExists(r.Store, ctx, b.UserUUID)
		if err != nil {
			return "", nil, nil, databaseOutcome(err), storeErr(err)
		}
		if exists {
			return b.UserUUID, &b, nil, nil, nil
		}
	} else if !errors.Is(err, panel.ErrNotFound) {
		return "", nil, nil, databaseOutcome(err), storeErr(err)
	}
	existing, err := r.Store.FindUserByEmail(ctx, user.Spec.Email)
	switch {
	case errors.Is(err, panel.ErrNotFound):
		return "", nil, nil, nil, nil
	case err != nil:
		return "", nil, nil, databaseOutcome(err), storeErr(err)
	}
	b, err := r.Store.GetBinding(ctx, existing.UUID)
	switch {
	case errors.Is(err, panel.ErrNotFound):
	case err != nil:
		return "", nil, nil, databaseOutcome(err), storeErr(err)
	default:
		if own, o := r.ownBinding(user, existing.UUID, &b); own != nil || o != nil {
			return existing.UUID, own, nil, o, nil
		}
	}
	if user.Spec.Adoption != v1.AdoptionIfExists {
		o := waiting(v1.ReasonEmailTakenInPanel, "A panel user (%s) that no User resource manages already has this email. "+
			"Set spec.adoption: IfExists to take it over (its managed fields are overwritten), or change spec.email.", existing.UUID)
		return "", nil, nil, &o, nil
	}
	r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "Adopted", "Adopt", "Adopted the existing panel user %s", existing.UUID)
	return existing.UUID, nil, nil, nil, nil
}

// ownBinding returns the panel user's binding b when it is this resource's, nil when the user is
// unbound (b nil), and an outcome when another resource or operator instance holds it.
func (r *UserReconciler) ownBinding(user *v1.User, userUUID string, b *panel.Binding) (*panel.Binding, *outcome) {
	if b == nil {
		return nil, nil
	}
	if !b.SameResource(user.Namespace, user.Name, r.Options.InstanceID) {
		o := waiting(v1.ReasonBoundElsewhere, "Panel user %s is managed by User %s/%s of operator instance %q; "+
			"delete that resource with deletionPolicy Retain to release it.", userUUID, b.Namespace, b.Name, b.InstanceID)
		return nil, &o
	}
	return b, nil
}

// desiredUser is the panel user the spec asks for, issuing or withdrawing the TOTP seed.
// panelUserExists says whether there is one yet: a panel user about to be created has no seed to
// withdraw, so creating one costs no Secret read.
func (r *UserReconciler) desiredUser(ctx context.Context, user *v1.User, panelUserExists bool) (panel.DesiredUser, *outcome, error) {
	d := desiredFields(user)
	if wantsTOTP(user) {
		seed, o, err := r.ensureTOTPSecret(ctx, user)
		if o != nil || err != nil {
			return d, o, err
		}
		d.DefaultMethod, d.TOTPSecret = panel.MethodTOTP, seed
		return d, nil, nil
	}
	if !panelUserExists {
		return d, nil, nil
	}
	// Withdrawn when a seed this User issued still exists, whatever status says: the status write
	// that recorded the Secret's name may have been lost, and then only the Secret tells.
	owned, err := r.ownedTOTPSecret(ctx, user)
	if err != nil {
		return d, nil, err
	}
	if owned != nil {
		d.DefaultMethod, d.RemoveTOTP = panel.MethodEmail, true
	}
	return d, nil, nil
}

// ownedTOTPSecret returns the User's TOTP Secret when it exists and this User controls it; nil
// when there is none, or when the Secret of that name is someone else's (never touched then).
func (r *UserReconciler) ownedTOTPSecret(ctx context.Context, user *v1.User) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	err := r.readSecret(ctx, types.NamespacedName{Namespace: user.Namespace, Name: totpSecretName(user)}, secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("cannot read the TOTP Secret: %w", err)
	case !metav1.IsControlledBy(secret, user):
		return nil, nil
	}
	return secret, nil
}

// wantsTOTP reports whether the User asks for an authenticator app as its second factor.
func wantsTOTP(user *v1.User) bool {
	return user.Spec.TwoFactor.Enabled && user.Spec.TwoFactor.Method == v1.TwoFactorMethodTOTP
}

// desiredFields is the panel user the spec asks for, except the TOTP seed (which lives in a Secret).
func desiredFields(user *v1.User) panel.DesiredUser {
	s := user.Spec
	d := panel.DesiredUser{
		Email: strings.TrimSpace(s.Email), FirstName: s.FirstName, LastName: s.LastName, Phone: s.Phone,
		Language: s.Language, AdminNotes: s.AdminNotes, PhoneVerified: s.PhoneVerified, EmailVerified: s.EmailVerified,
		TwoFactor: s.TwoFactor.Enabled,
	}
	switch s.State {
	case v1.UserStateActive:
		d.State = panel.StateActive
	case v1.UserStateInactive:
		d.State = panel.StateInactive
	}
	switch {
	case wantsTOTP(user):
		d.DefaultMethod = panel.MethodTOTP
	case user.Status.TOTPSecretName != "":
		d.DefaultMethod, d.RemoveTOTP = panel.MethodEmail, true
	case s.TwoFactor.Method == v1.TwoFactorMethodEmail:
		d.DefaultMethod = panel.MethodEmail
	}
	return d
}

func totpSecretName(user *v1.User) string { return user.Name + "-totp" }

// ensureTOTPSecret returns the seed in the User's TOTP Secret, issuing a new seed into a new
// Secret (owned by the User) when there is none.
func (r *UserReconciler) ensureTOTPSecret(ctx context.Context, user *v1.User) (string, *outcome, error) {
	name := totpSecretName(user)
	secret := &corev1.Secret{}
	err := r.readSecret(ctx, types.NamespacedName{Namespace: user.Namespace, Name: name}, secret)
	if err == nil {
		if !metav1.IsControlledBy(secret, user) {
			o := waiting("TOTPSecretConflict", "Secret %s/%s exists and is not owned by this User; rename or delete it so the "+
				"operator can issue the authenticator seed there.", user.Namespace, name)
			return "", &o, nil
		}
		if seed := string(secret.Data["secret"]); seed != "" {
			// Recorded again each time: the write that recorded it at issue may have been lost.
			user.Status.TOTPSecretName = name
			return seed, nil, nil
		}
	} else if !apierrors.IsNotFound(err) {
		return "", nil, fmt.Errorf("cannot read the TOTP Secret: %w", err)
	}
	key, err := totp.Issue(r.Options.TOTPIssuer, user.Spec.Email)
	if err != nil {
		return "", nil, err
	}
	secret = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: user.Namespace, Name: name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "puq-user-operator"}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"secret": []byte(key.Secret), "otpauth-url": []byte(key.URL), "qr.png": key.QRPNG},
	}
	if err := controllerutil.SetControllerReference(user, secret, r.Scheme()); err != nil {
		return "", nil, err
	}
	if err := r.Create(ctx, secret); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return "", nil, fmt.Errorf("the TOTP Secret appeared while issuing a seed; retrying: %w", err)
		}
		return "", nil, fmt.Errorf("cannot create the TOTP Secret: %w", err)
	}
	user.Status.TOTPSecretName = name
	r.Recorder.Eventf(user, secret, corev1.EventTypeNormal, "TwoFactorEnrolled", "IssueSeed",
		"Issued a new authenticator seed into Secret %s", name)
	return key.Secret, nil, nil
}

// applyPanelUser creates the panel user, or updates only what differs, then sets the password and
// the binding.
func (r *UserReconciler) applyPanelUser(ctx context.Context, user *v1.User, existing string, binding *panel.Binding,
	snap *panel.Snapshot, d panel.DesiredUser, pw passwordInput) (*panel.User, *outcome, error) {
	log := logf.FromContext(ctx)
	var current panel.User
	if existing == "" {
		bound := r.binding(user, pw.version)
		created, err := r.Store.CreateUser(ctx, d, pw.hash, &bound)
		if err != nil {
			return nil, databaseOutcome(err), storeErr(err)
		}
		current = created
		user.Status.UUID = created.UUID
		bound.UserUUID = created.UUID
		binding = &bound
		r.passwordApplied(user, pw)
		log.Info("Created panel user", "user", klog.KObj(user), "uuid", created.UUID)
		r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "Created", "CreateUser", "Created panel user %s", created.UUID)
	} else {
		user.Status.UUID = existing
		applied, changed, err := r.Store.ApplyUser(ctx, existing, d, snap)
		if errors.Is(err, panel.ErrNotFound) {
			user.Status.UUID = ""
			_ = r.Store.Unbind(ctx, existing)
			o := retrying(v1.ReasonProgressing, "Panel user %s was deleted outside the operator; creating it again.", existing)
			return nil, &o, nil
		}
		if err != nil {
			return nil, databaseOutcome(err), storeErr(err)
		}
		current = applied
		if len(changed) > 0 {
			reason, note := "Updated", "Updated panel user fields: %s"
			if user.Status.ObservedGeneration == user.Generation && isReadyReason(user.Status.Conditions, v1.ReasonReconciled) {
				reason, note = "DriftCorrected", "Repaired panel user fields changed outside the operator: %s"
			}
			log.Info("Updated panel user", "user", klog.KObj(user), "fields", changed)
			r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, reason, "UpdateUser", note, strings.Join(changed, ", "))
		}
		if pw.hash != "" {
			if err := r.Store.SetPasswordHash(ctx, existing, pw.hash); err != nil {
				return nil, databaseOutcome(err), storeErr(err)
			}
			r.passwordApplied(user, pw)
			log.Info("Set panel user password", "user", klog.KObj(user))
			r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "PasswordChanged", "SetPassword",
				"Set the panel password from Secret %s", user.Spec.PasswordSecretRef.Name)
		}
	}
	if d.RemoveTOTP {
		if err := r.deleteTOTPSecret(ctx, user); err != nil {
			return nil, nil, err
		}
	}
	want := r.binding(user, pw.version)
	if binding == nil || *binding != want {
		if err := r.Store.Bind(ctx, want); err != nil {
			return nil, databaseOutcome(err), storeErr(err)
		}
	}
	user.Status.PasswordSecretVersion = pw.version
	return &current, nil, nil
}

// binding is the binding row of the User's panel user, with the password Secret version applied.
func (r *UserReconciler) binding(user *v1.User, secretVersion string) panel.Binding {
	return panel.Binding{UserUUID: user.Status.UUID, Namespace: user.Namespace, Name: user.Name,
		ResourceUID: string(user.UID), InstanceID: r.Options.InstanceID, SecretVersion: secretVersion}
}

func (r *UserReconciler) passwordApplied(user *v1.User, pw passwordInput) {
	if pw.hash == "" {
		return
	}
	now := metav1.Now()
	user.Status.PasswordUpdatedAt = &now
}

// deleteTOTPSecret deletes the User's TOTP Secret when this User controls it: a Secret of that
// name made by someone else is left as it is. The delete is conditional on the UID read, so a
// Secret replaced in between is not deleted either.
func (r *UserReconciler) deleteTOTPSecret(ctx context.Context, user *v1.User) error {
	secret, err := r.ownedTOTPSecret(ctx, user)
	if err != nil {
		return err
	}
	if secret != nil {
		err := r.Delete(ctx, secret, client.Preconditions{UID: &secret.UID})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("cannot delete the TOTP Secret: %w", err)
		}
	}
	if secret != nil || user.Status.TOTPSecretName != "" {
		r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "TwoFactorRemoved", "RemoveSeed",
			"Removed the authenticator seed; email codes are the default again")
	}
	user.Status.TOTPSecretName = ""
	return nil
}

// observe puts the panel's view of the user, as the last write left it, and its clients (read
// now unless known) into status.
func (r *UserReconciler) observe(ctx context.Context, user *v1.User, u panel.User, clients []panel.UserClient, known bool) (
	*outcome, error) {
	if !known {
		var err error
		if clients, err = r.Store.UserClients(ctx, u.UUID); err != nil {
			return databaseOutcome(err), storeErr(err)
		}
	}
	setObservedUser(&user.Status, u, clients)
	trackedUsers.set(user.UID, user.Status.PanelStatus)
	return nil, nil
}

// setObservedUser copies the panel's view into status.
func setObservedUser(st *v1.UserStatus, u panel.User, clients []panel.UserClient) {
	st.UUID = u.UUID
	st.PanelStatus = strings.ToUpper(u.Status)
	st.TwoFactor = "Disabled"
	if u.TwoFactor {
		st.TwoFactor = "Enabled"
	}
	st.EmailVerified, st.PhoneVerified = u.EmailVerified, u.PhoneVerified
	st.ClientCount = int32(len(clients))
	st.Clients = nil
	for _, c := range clients {
		st.Clients = append(st.Clients, v1.UserClient{UUID: c.UUID, Name: c.Name, CompanyName: c.CompanyName,
			TaxID: c.TaxID, Status: strings.ToUpper(c.Status), Owner: c.Owner})
	}
}

// reconcileDelete applies the deletion policy, then releases the finalizer.
func (r *UserReconciler) reconcileDelete(ctx context.Context, user *v1.User) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(user, UserFinalizer) {
		return ctrl.Result{}, nil
	}
	if v1.Abandoned(user.Annotations) {
		// The admin's word that the panel database is gone for good: no database call at all.
		r.Recorder.Eventf(user, nil, corev1.EventTypeWarning, v1.ReasonAbandoned, "Abandon",
			"The %s annotation is set: the finalizer was removed without reaching the panel database; "+
				"the panel user this User made (if any) was left as it is", v1.AnnotationAbandon)
		logf.FromContext(ctx).Info("Abandoned the panel side of a deleted User", "user", klog.KObj(user), "uuid", user.Status.UUID)
		trackedUsers.set(user.UID, "")
		controllerutil.RemoveFinalizer(user, UserFinalizer)
		return ctrl.Result{}, r.Update(ctx, user)
	}
	before := user.Status.DeepCopy()
	o, err := r.releasePanelUser(ctx, user)
	if err == nil && o == nil {
		trackedUsers.set(user.UID, "")
		controllerutil.RemoveFinalizer(user, UserFinalizer)
		return ctrl.Result{}, r.Update(ctx, user)
	}
	if o != nil {
		setConditions(&user.Status.Conditions, user.Generation, *o)
	}
	if patchErr := r.patchStatus(ctx, user, before); patchErr != nil && err == nil {
		err = patchErr
	}
	if err == nil && o != nil && o.kind == outcomeRetrying {
		err = errors.New(o.message)
	}
	if err == nil && o != nil && o.kind == outcomeProgressing {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	if err == nil && o != nil && o.reason == v1.ReasonDeletionBlocked {
		// Clients associated in the panel UI: no watch sees them go.
		return blockedRequeue(user.Status.Conditions, time.Now()), nil
	}
	return ctrl.Result{}, err
}

// releasePanelUser deletes, disables or leaves the panel user. A nil outcome and error mean done.
func (r *UserReconciler) releasePanelUser(ctx context.Context, user *v1.User) (*outcome, error) {
	id := user.Status.UUID
	if id == "" {
		return nil, nil
	}
	// The binding table, not status, says what this User owns. A panel user with no binding (a
	// status restored or copied from elsewhere; or one already deleted) or bound to another
	// resource or operator instance (one restarted under another --instance-id) is not this
	// User's to delete, disable or unbind: only the finalizer goes.
	b, err := r.Store.GetBinding(ctx, id)
	if err != nil && !errors.Is(err, panel.ErrNotFound) {
		return databaseOutcome(err), storeErr(err)
	}
	if err != nil || !b.SameResource(user.Namespace, user.Name, r.Options.InstanceID) {
		r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "LeftAlone", "Release",
			"The panel user named in status is not bound to this User; it was left as it is")
		return nil, nil
	}
	log := logf.FromContext(ctx)
	switch user.Spec.DeletionPolicy {
	case v1.UserDeletionRetain:
		err := r.Store.Unbind(ctx, id)
		return databaseOutcome(err), storeErr(err)
	case v1.UserDeletionDisable:
		if _, err := r.Store.DisableUser(ctx, id); err != nil {
			return databaseOutcome(err), storeErr(err)
		}
		r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "Disabled", "DisableUser", "Disabled panel user %s", id)
		log.Info("Disabled panel user", "user", klog.KObj(user), "uuid", id)
		err := r.Store.Unbind(ctx, id)
		return databaseOutcome(err), storeErr(err)
	}
	// Delete: the User's memberships go first (their controller removes the rows), then the user.
	pending, err := r.deleteMemberships(ctx, user)
	if err != nil {
		return nil, err
	}
	if pending > 0 {
		o := progressing(v1.ReasonDeletionBlocked, "Waiting for %d ClientMembership(s) of this User to be removed.", pending)
		return &o, nil
	}
	err = r.Store.DeleteUser(ctx, id)
	if errors.Is(err, panel.ErrRefused) {
		o := waiting(v1.ReasonDeletionBlocked, "The panel user is still associated with clients made in the panel UI: %v. "+
			"Remove them in Client -> Users, or set spec.deletionPolicy to Retain or Disable.", err)
		if !isStalledReason(user.Status.Conditions, v1.ReasonDeletionBlocked) {
			r.Recorder.Eventf(user, nil, corev1.EventTypeWarning, v1.ReasonDeletionBlocked, "DeleteUser", o.message)
		}
		return &o, nil
	}
	if err != nil {
		return databaseOutcome(err), storeErr(err)
	}
	if user.Status.TOTPSecretName != "" {
		if err := r.deleteTOTPSecret(ctx, user); err != nil {
			return nil, err
		}
	}
	r.Recorder.Eventf(user, nil, corev1.EventTypeNormal, "Deleted", "DeleteUser", "Deleted panel user %s", id)
	log.Info("Deleted panel user", "user", klog.KObj(user), "uuid", id)
	return nil, nil
}

// deleteMemberships deletes the ClientMemberships that reference the User and returns how many
// are still there. Garbage collection would do the same through their ownerReferences, but only
// once the User is gone, which its finalizer prevents.
func (r *UserReconciler) deleteMemberships(ctx context.Context, user *v1.User) (int, error) {
	var list v1.ClientMembershipList
	if err := r.List(ctx, &list, client.InNamespace(user.Namespace), client.MatchingFields{indexMembershipUser: user.Name}); err != nil {
		return 0, fmt.Errorf("cannot list the User's memberships: %w", err)
	}
	for i := range list.Items {
		m := &list.Items[i]
		if m.DeletionTimestamp.IsZero() {
			if err := r.Delete(ctx, m); err != nil && !apierrors.IsNotFound(err) {
				return 0, fmt.Errorf("cannot delete ClientMembership %s: %w", m.Name, err)
			}
		}
	}
	return len(list.Items), nil
}

// patchStatus writes the status once, and only when it changed.
func (r *UserReconciler) patchStatus(ctx context.Context, user *v1.User, before *v1.UserStatus) error {
	if equality.Semantic.DeepEqual(before, &user.Status) {
		return nil
	}
	return r.Status().Update(ctx, user)
}

// isReadyReason reports whether the Ready condition has the reason.
func isReadyReason(conds []metav1.Condition, reason string) bool {
	c := meta.FindStatusCondition(conds, v1.ConditionReady)
	return c != nil && c.Reason == reason
}

// SetupWithManager registers the controller: Users, the Secrets they reference (metadata only,
// so Secret contents are never cached), and their ClientMemberships (for status.clients).
func (r *UserReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if n := r.Options.MaxConcurrentHashes; n > 0 {
		r.hashSlots = make(chan struct{}, n)
	}
	metaClient, err := newMetadataClient(mgr.GetConfig())
	if err != nil {
		return err
	}
	r.secrets = newSecretWatch(metaClient, mgr.GetCache(), r.Options.Namespaces)
	if err := mgr.Add(r.secrets); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr)
	if r.Options.ResyncPeriod > 0 {
		resync := newResyncer(r, mgr.GetCache(), r.Options.ResyncPeriod)
		if err := mgr.Add(resync); err != nil {
			return err
		}
		b = b.WatchesRawSource(source.Channel(resync.queue, &handler.EnqueueRequestForObject{}))
	}
	return b.
		For(&v1.User{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{}, deletionPredicate()))).
		Watches(&v1.User{}, r.emailPeers()).
		WatchesRawSource(source.Channel(r.secrets.queue, &handler.EnqueueRequestForObject{})).
		Watches(&v1.ClientMembership{}, handler.EnqueueRequestsFromMapFunc(userOfMembership)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Options.MaxConcurrentReconciles,
			RateLimiter: retryRateLimiter()}).
		Named("user").
		Complete(r)
}

// deletionPredicate passes every update of an object being deleted (not only the one that starts
// the deletion): so the abandon annotation (v1.AnnotationAbandon) set on it wakes its controller.
func deletionPredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e eventUpdate) bool {
		return !e.ObjectNew.GetDeletionTimestamp().IsZero()
	}}
}

// emailPeers wakes the Users that share an email with a User that changed its email (the peers of
// the old email and of the new one), started its deletion or was deleted: a waiting duplicate
// proceeds as soon as the holder lets go, and the peers of a taken email learn who holds it now.
func (r *UserReconciler) emailPeers() handler.EventHandler {
	enqueue := func(ctx context.Context, email string, self types.UID, q workqueue) {
		var peers v1.UserList
		if err := r.List(ctx, &peers, client.MatchingFields{indexUserEmail: panel.NormalizeEmail(email)}); err != nil {
			return
		}
		for _, p := range peers.Items {
			if p.UID != self {
				q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
			}
		}
	}
	return handler.Funcs{
		UpdateFunc: func(ctx context.Context, e eventUpdate, q workqueue) {
			oldU, newU := e.ObjectOld.(*v1.User), e.ObjectNew.(*v1.User)
			changed := panel.NormalizeEmail(oldU.Spec.Email) != panel.NormalizeEmail(newU.Spec.Email)
			if changed || !newU.DeletionTimestamp.IsZero() {
				enqueue(ctx, oldU.Spec.Email, newU.UID, q)
			}
			if changed {
				enqueue(ctx, newU.Spec.Email, newU.UID, q)
			}
		},
		DeleteFunc: func(ctx context.Context, e eventDelete, q workqueue) {
			if u, ok := e.Object.(*v1.User); ok {
				enqueue(ctx, u.Spec.Email, u.UID, q)
			}
		},
	}
}

// userOfMembership maps a ClientMembership to its User.
func userOfMembership(_ context.Context, o client.Object) []reconcile.Request {
	m := o.(*v1.ClientMembership)
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: m.Spec.UserRef.Name}}}
}
