package testenv

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const clusterRoleKind = "ClusterRole"

// tenantRoleFiles are the shipped ClusterRoles a tenant team is given in its namespace: editing
// Users and ClientMemberships, nothing else of the operator's.
var tenantRoleFiles = []string{"user_editor_role.yaml", "clientmembership_editor_role.yaml"}

// tenantSecretRules are what a tenant needs of Secrets in its own namespace to hand the operator
// passwords: the Role a cluster admin gives a team beside the editor roles.
var tenantSecretRules = []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"},
	Verbs: []string{"get", "list", "create", "update", "delete"}}}

// BindTenant makes sa a tenant of its namespace, as a cluster admin would: the ServiceAccount,
// RoleBindings in its namespace to the shipped editor ClusterRoles of config/rbac (as read from
// disk, created under "test-" names when missing), and a Role for the namespace's Secrets. It
// grants nothing outside the namespace and nothing on PanelAccessPolicies. It returns once the
// API server's authorizer grants every rule. c is an admin's.
func BindTenant(ctx context.Context, c client.Client, sa ServiceAccount) error {
	var rules []rbacv1.PolicyRule
	objs := []client.Object{&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: sa.Name}}}
	for _, file := range tenantRoleFiles {
		role := &rbacv1.ClusterRole{}
		if err := readRBAC(file, clusterRoleKind, role); err != nil {
			return err
		}
		if len(role.Rules) == 0 {
			return fmt.Errorf("config/rbac/%s has no rules", file)
		}
		name := "test-" + role.Name
		role.ObjectMeta = metav1.ObjectMeta{Name: name}
		// Every tenant of the suite shares the ClusterRole, as tenants of a cluster share the
		// shipped one; the first tenant creates it.
		if err := c.Create(ctx, role); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("cannot create ClusterRole %s: %w", name, err)
		}
		rules = append(rules, role.Rules...)
		objs = append(objs, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: name},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: clusterRoleKind, Name: name}, Subjects: []rbacv1.Subject{sa.Subject()}})
	}
	const secrets = "tenant-secrets"
	objs = append(objs,
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: secrets}, Rules: tenantSecretRules},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: secrets},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: secrets}, Subjects: []rbacv1.Subject{sa.Subject()}})
	if err := createAll(ctx, c, objs); err != nil {
		return err
	}
	return waitGranted(ctx, c, sa, append(rules, tenantSecretRules...), []string{sa.Namespace})
}
