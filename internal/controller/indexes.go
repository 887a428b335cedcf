package controller

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// Field indexes on the manager's cache.
const (
	// IndexUserEmail is the normalized email (trimmed, case and accents folded the way the panel's
	// collation compares), for email uniqueness across all namespaces.
	IndexUserEmail = "panel.puqcloud.com/normalized-email"
	// indexUserSecret is the password Secret's name, to reconcile the Users of a changed Secret.
	indexUserSecret = "panel.puqcloud.com/password-secret"
	// indexMembershipUser is the referenced User's name, to wake memberships when their User changes.
	indexMembershipUser = "panel.puqcloud.com/user-ref"
	// indexMembershipClient is the resolved client UUID, for owner and duplicate conflicts.
	indexMembershipClient = "panel.puqcloud.com/client-uuid"
)

// SetupIndexes registers the field indexes the controllers use.
func SetupIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &v1.User{}, IndexUserEmail, func(o client.Object) []string {
		return []string{panel.NormalizeEmail(o.(*v1.User).Spec.Email)}
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1.User{}, indexUserSecret, func(o client.Object) []string {
		return []string{o.(*v1.User).Spec.PasswordSecretRef.Name}
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1.ClientMembership{}, indexMembershipUser, func(o client.Object) []string {
		return []string{o.(*v1.ClientMembership).Spec.UserRef.Name}
	}); err != nil {
		return err
	}
	return indexer.IndexField(ctx, &v1.ClientMembership{}, indexMembershipClient, func(o client.Object) []string {
		if id := o.(*v1.ClientMembership).Status.ClientUUID; id != "" {
			return []string{id}
		}
		return nil
	})
}
