package controller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
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
	// InstanceID names this operator in the binding tables.
	InstanceID string
	// ClusterID is the identity of the cluster the operator runs in (the UID of the kube-system
	// namespace), recorded in every binding next to InstanceID: a binding is a resource's only
	// when it was written in this cluster for the resource's UID (panel.Operator.Claim).
	ClusterID string
	// PreviousClusterID, when set, is a cluster whose bindings are taken over by namespace and
	// name (a cluster rebuilt from git, whose objects all have new UIDs).
	PreviousClusterID string
	// BcryptCost is the bcrypt cost for cleartext passwords; within HashCosts.
	BcryptCost int
	// HashCosts are the bcrypt costs accepted, for BcryptCost and for the hashes a Secret's
	// passwordHash key brings (password.DefaultCostRange in the shipped binary). Required: Setup
	// refuses an unset range, so nothing runs at an unchecked cost by omission.
	HashCosts password.CostRange
	// PasswordPolicy checks cleartext passwords.
	PasswordPolicy password.Policy
	// Languages are the panel's enabled client locales (its APP_AVAILABLE_LOCALE_CLIENT).
	Languages []string
	// DefaultLanguage is the panel's default client locale (config('locale.client.default')):
	// written for a User without spec.language whose panel language is NULL, empty or not one of
	// Languages, as the panel's client-area middleware writes it. Empty: the first of Languages.
	DefaultLanguage string
	// TOTPIssuer labels issued authenticator seeds.
	TOTPIssuer string
	// ResyncPeriod is how often a Ready object is re-read from the panel to repair drift.
	ResyncPeriod time.Duration
	// MaxConcurrentReconciles is the number of objects reconciled at once per kind.
	MaxConcurrentReconciles int
	// Namespaces are the watched namespaces; empty for all.
	Namespaces []string
	// NamePrefix goes before the controllers' names ("user", "clientmembership"), which label
	// their metrics; empty in the shipped binary. The tests give each manager of their process
	// its own, so one manager's work queue gauges never count for another's.
	NamePrefix string
	// MaxConcurrentHashes bounds the bcrypt hashes computed at once (default: one per core), so
	// reconciles waiting on the API server or the database are never stuck behind hashes.
	MaxConcurrentHashes int
}

// operator is this operator as the binding tables know it.
func (o Options) operator() panel.Operator {
	return panel.Operator{Instance: o.InstanceID, Cluster: o.ClusterID, PreviousCluster: o.PreviousClusterID}
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
	// lost are the Users the API server deleted while they still held the finalizer (lostUsers).
	lost lostUsers
}

// RBAC, least privilege: Secrets are read (and listed and watched as metadata); the only Secrets written are
// the TOTP Secrets the operator creates and deletes. No verb on anything else.
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=users,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=users/status,verbs=patch
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=users/finalizers,verbs=update
// +kubebuilder:rbac:groups=panel.puqcloud.com,resources=clientmemberships,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one User's panel user in line with its spec and reports the panel's view.
func (r *UserReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return retryConflicts(r.reconcile(ctx, req))
}

func (r *UserReconciler) reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	user := &v1.User{}
	if err := r.Get(ctx, req.NamespacedName, user); err != nil {
		if apierrors.IsNotFound(err) {
			return r.releaseLost(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if !user.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, user)
	}
	if controllerutil.AddFinalizer(user, UserFinalizer) {
		if err := r.Update(ctx, user); err != nil {
			return ctrl.Result{}, err
		}
	}
	base := user.DeepCopy()
	facts, err := r.gatherUser(ctx, user)
	var o outcome
	if err == nil {
		o, err = r.carryOut(ctx, user, facts, planUser(r.Options, facts))
	}
	if err != nil {
		o, err = errorOutcome(err)
	}
	// No requeue when Ready: the resyncer compares Ready Users with the panel in batches.
	return conclude("User", &user.Status.Conditions, &user.Status.ObservedGeneration, user.Generation, o, err,
		func() error { return r.patchStatus(ctx, base, user) }, 0)
}

// movingHolder is the User of this operator instance and cluster that the panel user with the
// email is bound to when that User is no longer one of the email's peers (it changed its spec.email and has not
// yet written the new one to the panel); nil otherwise.
func (r *UserReconciler) movingHolder(ctx context.Context, peers []v1.User, bound *panel.Binding) *v1.User {
	if bound == nil {
		return nil
	}
	o := r.Options.operator()
	if holder, byBinding := emailHolderOf(peers, bound, o); holder != nil && byBinding {
		return nil
	}
	mover := &v1.User{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: bound.Namespace, Name: bound.Name}, mover); err != nil {
		return nil // gone, or in a namespace this operator does not watch: not moving
	}
	if o.Claim(bound, mover.Namespace, mover.Name, string(mover.UID)) != panel.ClaimOwn {
		return nil // another cluster's or instance's binding, or an earlier User's of that name
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
func emailHolderOf(users []v1.User, bound *panel.Binding, o panel.Operator) (holder *v1.User, byBinding bool) {
	if bound != nil {
		for i := range users {
			if o.Claim(bound, users[i].Namespace, users[i].Name, string(users[i].UID)) == panel.ClaimOwn {
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
		if holder == nil || OlderThan(u.ObjectMeta, holder.ObjectMeta) {
			holder = u
		}
	}
	return holder
}

// OlderThan orders objects by creationTimestamp, then namespace/name: the order in which the
// controllers let the first of two conflicting objects win, and the admission webhook with them.
func OlderThan(a, b metav1.ObjectMeta) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
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

// newMetadataClient makes the Secret watch's client; a variable so a test can make it fail.
var newMetadataClient = metadata.NewForConfig

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

// defaultLanguage is the panel's default client locale: DefaultLanguage, else the first of
// Languages.
func (o Options) defaultLanguage() string {
	if o.DefaultLanguage != "" || len(o.Languages) == 0 {
		return o.DefaultLanguage
	}
	return o.Languages[0]
}

// wantsTOTP reports whether the User asks for an authenticator app as its second factor.
func wantsTOTP(user *v1.User) bool {
	return user.Spec.TwoFactor.Enabled && user.Spec.TwoFactor.Method == v1.TwoFactorMethodTOTP
}

// desiredFields is the panel user the spec asks for, except the TOTP seed and its withdrawal
// (decided from the TOTP Secret by planTOTP).
func desiredFields(o Options, user *v1.User) panel.DesiredUser {
	s := user.Spec
	d := panel.DesiredUser{
		Email: strings.TrimSpace(s.Email), FirstName: s.FirstName, LastName: s.LastName, Phone: s.Phone,
		Language: s.Language, AdminNotes: s.AdminNotes, PhoneVerified: s.PhoneVerified, EmailVerified: s.EmailVerified,
		TwoFactor: s.TwoFactor.Enabled, ClientLanguages: o.Languages, DefaultLanguage: o.defaultLanguage(),
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
	case s.TwoFactor.Method == v1.TwoFactorMethodEmail:
		d.DefaultMethod = panel.MethodEmail
	}
	return d
}

func totpSecretName(user *v1.User) string { return totp.SecretName(user.Name) }

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

// IsReadyReason reports whether the Ready condition has the reason.
func IsReadyReason(conds []metav1.Condition, reason string) bool {
	c := meta.FindStatusCondition(conds, v1.ConditionReady)
	return c != nil && c.Reason == reason
}

// SetupWithManager registers the controller: Users, the Secrets they reference (metadata only,
// so Secret contents are never cached), and their ClientMemberships (for status.clients: only the
// changes that wrote or removed an association, membershipWakesUser).
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
	policies, namespaces := regrant(r.Client, func() client.ObjectList { return &v1.UserList{} })
	return b.
		For(&v1.User{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{}, deletionPredicate()))).
		Watches(&v1.PanelAccessPolicy{}, policies, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesMetadata(&corev1.Namespace{}, namespaces, builder.WithPredicates(labelsChanged())).
		Watches(&v1.User{}, r.emailPeers()).
		Watches(&v1.User{}, r.lost.handler()).
		WatchesRawSource(source.Channel(r.secrets.queue, &handler.EnqueueRequestForObject{})).
		Watches(&v1.ClientMembership{}, handler.EnqueueRequestsFromMapFunc(userOfMembership),
			builder.WithPredicates(membershipWakesUser())).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Options.MaxConcurrentReconciles,
			RateLimiter: retryRateLimiter()}).
		Named(r.Options.NamePrefix + "user").
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
		if err := r.List(ctx, &peers, client.MatchingFields{IndexUserEmail: panel.NormalizeEmail(email)}); err != nil {
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

// DesiredPanelUser is the panel user the operator makes of user, as a reconcile decides it with
// these Options, and with seed as the authenticator seed when user asks for TOTP. kubectl puq import
// compares it with the panel (panel.Snapshot.Differences) to import only users the operator will
// leave exactly as they are.
func DesiredPanelUser(o Options, user *v1.User, seed string) panel.DesiredUser {
	d := desiredFields(o, user)
	if wantsTOTP(user) {
		d.TOTPSecret = seed
	}
	return d
}
