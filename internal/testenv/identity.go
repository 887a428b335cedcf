package testenv

import (
	"context"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DeployIdentity gives the ServiceAccount sa what config/rbac deploys for it, as read from disk,
// under name: the ClusterRole of role.yaml across the cluster, or through RoleBindings in the
// given namespaces only, and the Role of leader_election_role.yaml in sa's own namespace, where
// its Lease lives. It returns the path of a kubeconfig, in dir, holding a token of sa; the token
// is kept out of what the tests print (KeepSecret). c and cfg are an admin's.
func DeployIdentity(ctx context.Context, c client.Client, cfg *rest.Config, sa ServiceAccount, name, dir string,
	namespaces ...string) (string, error) {
	path := filepath.Join(dir, "kubeconfig-"+name)
	token, err := sa.Kubeconfig(ctx, c, cfg, path)
	if err != nil {
		return "", err
	}
	KeepSecret(token)
	if err := BindManagerRole(ctx, c, name, sa, namespaces...); err != nil {
		return "", err
	}
	if err := BindLeaderElectionRole(ctx, c, sa.Namespace, name, sa); err != nil {
		return "", err
	}
	return path, nil
}
