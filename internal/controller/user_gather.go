package controller

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/totp"
)

// locate is panel.Store.Locate; a variable so a test can make it fail.
var locate = (*panel.Store).Locate

// gatherUser reads what planUser decides from: the User's email peers, its panel user (one round
// trip in the usual case), and its password and TOTP Secrets. It reads nothing more once the facts
// read so far already stop the plan (a bad spec reads nothing; a waiting duplicate reads no
// Secret), and the password Secret only when its version differs from the one the panel holds.
func (r *UserReconciler) gatherUser(ctx context.Context, user *v1.User) (userFacts, error) {
	f := userFacts{user: user}
	if checkSpec(r.Options, user) != nil {
		return f, nil
	}
	grants, err := GrantsOf(ctx, r.Client, user.Namespace)
	if err != nil {
		return f, err
	}
	if f.grants = grants; checkGrant(f) != nil {
		return f, nil
	}
	if err := r.gatherPeers(ctx, &f); err != nil {
		return f, err
	}
	if checkHolder(r.Options, f) != nil {
		return f, nil
	}
	found, err := locate(r.Store, ctx, panel.Lookup{UUID: user.Status.UUID, Operator: r.Options.operator(),
		Namespace: user.Namespace, Name: user.Name, UID: string(user.UID), Email: user.Spec.Email})
	if err != nil {
		return f, err
	}
	f.found = found
	applied := ""
	if b := bindingOf(found); r.Options.operator().Claim(b, user.Namespace, user.Name, string(user.UID)) == panel.ClaimOwn {
		applied = b.SecretVersion
	}
	if f.password, err = r.gatherPassword(ctx, user, applied); err != nil {
		return f, err
	}
	if wantsTOTP(user) || found.Snapshot != nil {
		if f.totp, err = r.gatherTOTP(ctx, user); err != nil {
			return f, err
		}
	}
	return f, nil
}

func bindingOf(l panel.Located) *panel.Binding {
	if l.Snapshot == nil {
		return nil
	}
	return l.Snapshot.Binding
}

// gatherPeers reads the Users sharing the email. A User alone with its email costs no database
// round trip, unless it was waiting for a holder (that holder may have changed its email and not
// yet moved its panel user off this one); one that shares it reads which resource the panel user
// with the email is bound to, so every peer decides from the same facts.
func (r *UserReconciler) gatherPeers(ctx context.Context, f *userFacts) error {
	user := f.user
	var peers v1.UserList
	if err := r.List(ctx, &peers, client.MatchingFields{IndexUserEmail: panel.NormalizeEmail(user.Spec.Email)}); err != nil {
		return fmt.Errorf("cannot list Users by email: %w", err)
	}
	granted, err := r.grantedPeers(ctx, user, peers.Items)
	if err != nil {
		return err
	}
	f.peersRead, f.peers = true, granted
	if !slices.ContainsFunc(granted, func(p v1.User) bool { return p.UID != user.UID }) &&
		!IsReadyReason(user.Status.Conditions, v1.ReasonDuplicateEmail) {
		return nil
	}
	bound, err := r.emailBinding(ctx, user.Spec.Email)
	if err != nil {
		return err
	}
	f.emailBound = bound
	f.mover = r.movingHolder(ctx, granted, bound)
	return nil
}

// grantedPeers are the peers whose namespace is granted their email (the cache's policies): a
// User that may not hold the email holds nothing, so a namespace no policy grants the email
// cannot keep it from one that is granted it by creating a User first. The peers share the email
// (folded), so one look per namespace decides for all of its Users; the User's own namespace is
// granted (checkGrant passed).
func (r *UserReconciler) grantedPeers(ctx context.Context, user *v1.User, peers []v1.User) ([]v1.User, error) {
	grants := NewGrantsCache(r.Client)
	out := make([]v1.User, 0, len(peers))
	for _, p := range peers {
		if p.Namespace == user.Namespace {
			out = append(out, p)
			continue
		}
		g, err := grants.Of(ctx, p.Namespace)
		if err != nil {
			return nil, err
		}
		if g.Email(p.Spec.Email) == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// gatherPassword reads the password Secret, unless the Secret watch knows its version is the
// one applied: then nothing is read.
func (r *UserReconciler) gatherPassword(ctx context.Context, user *v1.User, applied string) (secretFacts, error) {
	if applied != "" && r.cachedSecretVersion(user) == applied {
		return secretFacts{version: applied}, nil
	}
	key := types.NamespacedName{Namespace: user.Namespace, Name: user.Spec.PasswordSecretRef.Name}
	secret := &corev1.Secret{}
	if err := r.readSecret(ctx, key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return secretFacts{read: true, missing: true}, nil
		}
		return secretFacts{}, fmt.Errorf("cannot read the password Secret: %w", err)
	}
	secretVersion := string(secret.UID) + "/" + secret.ResourceVersion
	r.secrets.Saw(key, secretVersion)
	return secretFacts{read: true, version: appliedVersion(secretVersion, passwordKey(user)),
		value: trimLineEnding(string(secret.Data[passwordKey(user)]))}, nil
}

// gatherTOTP reads the User's TOTP Secret. A User that does not want TOTP only needs to know
// whether a Secret it owns is there (planTOTP withdraws it), and the Secret watch remembers every
// Secret a User owns and queues the User when one appears: while the watch is healthy and knows
// no Secret of that name, there is none to withdraw, as of what the watch has delivered (one that
// comes later wakes the User), and nothing is read.
func (r *UserReconciler) gatherTOTP(ctx context.Context, user *v1.User) (totpFacts, error) {
	key := types.NamespacedName{Namespace: user.Namespace, Name: totpSecretName(user)}
	if !wantsTOTP(user) && r.secrets.Healthy(user.Namespace) && r.secrets.Version(key) == "" {
		return totpFacts{read: true}, nil
	}
	secret := &corev1.Secret{}
	err := r.readSecret(ctx, key, secret)
	switch {
	case apierrors.IsNotFound(err):
		return totpFacts{read: true}, nil
	case err != nil:
		return totpFacts{}, fmt.Errorf("cannot read the TOTP Secret: %w", err)
	}
	owned := metav1.IsControlledBy(secret, user)
	imported := !owned && metav1.GetControllerOf(secret) == nil && secret.Labels[v1.LabelImported] == "true"
	return totpFacts{read: true, exists: true, owned: owned, imported: imported, seed: string(secret.Data[totp.SecretKeySeed])}, nil
}
