package puqctl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/totp"
)

// secretCounts are what applySecrets did.
type secretCounts struct{ created, updated, unchanged int }

// decisiveKey is the key of a Secret import made that says what the panel holds: the hash of a
// password Secret, the seed of a TOTP Secret.
func decisiveKey(s *corev1.Secret) string {
	if _, ok := s.Data[v1.PasswordKeyHash]; ok {
		return v1.PasswordKeyHash
	}
	return "secret"
}

// applySecrets creates the Secrets of the imported users in the cluster, or updates those an
// earlier import made when the panel's value changed since. A user one of whose Secrets exists,
// was not made by import and holds another value is moved to the skipped users: nothing of it is
// written, the directory included.
func applySecrets(ctx context.Context, c client.Client, issuer string, res *importResult) (secretCounts, error) {
	var counts secretCounts
	type pending struct {
		want, have *corev1.Secret
	}
	kept := res.users[:0]
	var todo []pending
	for _, in := range res.users {
		secrets, err := secretsOf(issuer, in)
		if err != nil {
			return counts, err
		}
		var mine []pending
		var conflict []string
		for _, want := range secrets {
			have := &corev1.Secret{}
			err := c.Get(ctx, client.ObjectKeyFromObject(want), have)
			switch {
			case apierrors.IsNotFound(err):
				mine = append(mine, pending{want: want})
			case err != nil:
				return counts, fmt.Errorf("cannot read Secret %s/%s: %w", want.Namespace, want.Name, err)
			case bytes.Equal(have.Data[decisiveKey(want)], want.Data[decisiveKey(want)]):
				mine = append(mine, pending{want: want, have: have})
			case have.Labels[v1.LabelImported] != labelOn:
				conflict = append(conflict, want.Name)
			default:
				mine = append(mine, pending{want: want, have: have})
			}
		}
		if len(conflict) > 0 {
			res.skipped = append(res.skipped, &skipped{uuid: in.record.UUID, email: in.record.Email, problems: []string{
				fmt.Sprintf("Secret %s exists, was not made by kubectl puq import and holds another value; "+
					"rename or delete it", strings.Join(conflict, ", "))}})
			res.memberships -= len(in.memberships)
			continue
		}
		kept = append(kept, in)
		todo = append(todo, mine...)
	}
	res.users = kept
	for _, p := range todo {
		switch {
		case p.have == nil:
			if err := c.Create(ctx, p.want); err != nil {
				return counts, fmt.Errorf("cannot create Secret %s/%s: %w", p.want.Namespace, p.want.Name, err)
			}
			counts.created++
		case bytes.Equal(p.have.Data[decisiveKey(p.want)], p.want.Data[decisiveKey(p.want)]):
			counts.unchanged++
		default:
			// The panel's value changed since the last import (a password set in the panel): the
			// Secret follows it, so the operator never writes the old one back.
			p.have.Data = p.want.Data
			if err := c.Update(ctx, p.have); err != nil {
				return counts, fmt.Errorf("cannot update Secret %s/%s: %w", p.want.Namespace, p.want.Name, err)
			}
			counts.updated++
		}
	}
	return counts, nil
}

// totpKey is the TOTP Secret's content for a seed the panel holds.
func totpKey(issuer, email, seed string) (totp.Key, error) {
	return totp.FromSeed(issuer, email, seed)
}

// writeSecretFiles writes the imported users' Secrets as manifests readable by their owner only
// (0600, in a 0700 directory), for SOPS or Sealed Secrets.
func writeSecretFiles(dir, issuer string, users []*imported) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create --secrets-dir: %w", err)
	}
	for _, in := range users {
		secrets, err := secretsOf(issuer, in)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if err := writeFile(filepath.Join(dir, s.Name+".yaml"), s, 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

// The directory's layout: one file per object, so that a change in git names the person it is.
const (
	usersDir       = "users"
	membershipsDir = "clientmemberships"
)

// writeDirectory writes one file per User and ClientMembership and a kustomization.yaml listing
// them (in the namespace), and removes the files of those subdirectories an earlier run wrote for
// users no longer imported; it returns those, relative to dir. The same panel gives the same bytes.
func writeDirectory(dir, namespace string, users []*imported) ([]string, error) {
	wrote := map[string]bool{}
	var resources []string
	for _, in := range users {
		rel := filepath.Join(usersDir, in.user.Name+".yaml")
		if err := writeFile(filepath.Join(dir, rel), in.user, 0o644); err != nil {
			return nil, err
		}
		wrote[rel] = true
		resources = append(resources, rel)
		for _, m := range in.memberships {
			rel := filepath.Join(membershipsDir, m.Name+".yaml")
			if err := writeFile(filepath.Join(dir, rel), m, 0o644); err != nil {
				return nil, err
			}
			wrote[rel] = true
			resources = append(resources, rel)
		}
	}
	var removed []string
	for _, sub := range []string{usersDir, membershipsDir} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("cannot read %s: %w", filepath.Join(dir, sub), err)
		}
		for _, e := range entries {
			rel := filepath.Join(sub, e.Name())
			if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".yaml") && !wrote[rel] {
				if err := os.Remove(filepath.Join(dir, rel)); err != nil {
					return nil, fmt.Errorf("cannot remove %s: %w", rel, err)
				}
				removed = append(removed, rel)
			}
		}
	}
	slices.Sort(resources)
	k := map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"namespace":  namespace,
		"resources":  resources,
	}
	return removed, writeFile(filepath.Join(dir, "kustomization.yaml"), k, 0o644)
}

// writeFile writes obj as YAML with the mode, creating the directory; a file that already holds
// the same bytes is left alone.
func writeFile(path string, obj any, mode os.FileMode) error {
	b, err := yaml.Marshal(obj)
	if err != nil {
		return fmt.Errorf("cannot render %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %w", filepath.Dir(path), err)
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return os.Chmod(path, mode)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return os.Chmod(path, mode)
}
