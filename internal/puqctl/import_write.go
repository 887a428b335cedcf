package puqctl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/panel"
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

// secretWorkers is how many Secret requests import has in flight at once.
const secretWorkers = 8

// applySecrets creates the Secrets of the imported users in the cluster, or updates those an
// earlier import made when the panel's value changed since. A user one of whose Secrets exists,
// was not made by import and holds another value is moved to the skipped users: nothing of it is
// written, the directory included. Reads, then writes, run secretWorkers at a time.
func applySecrets(ctx context.Context, c client.Client, issuer string, res *importResult) (secretCounts, error) {
	type pending struct {
		user       int
		want, have *corev1.Secret
	}
	var all []*pending
	for i, in := range res.users {
		secrets, err := secretsOf(issuer, in)
		if err != nil {
			return secretCounts{}, err
		}
		for _, want := range secrets {
			all = append(all, &pending{user: i, want: want})
		}
	}
	err := parallel(ctx, len(all), func(i int) error {
		p, have := all[i], &corev1.Secret{}
		err := c.Get(ctx, client.ObjectKeyFromObject(p.want), have)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return fmt.Errorf("cannot read Secret %s/%s: %w", p.want.Namespace, p.want.Name, err)
		default:
			p.have = have
		}
		return nil
	})
	if err != nil {
		return secretCounts{}, err
	}
	same := func(p *pending) bool {
		return p.have != nil && bytes.Equal(p.have.Data[decisiveKey(p.want)], p.want.Data[decisiveKey(p.want)])
	}
	conflicts := map[int][]string{}
	for _, p := range all {
		if p.have != nil && !same(p) && p.have.Labels[v1.LabelImported] != labelOn {
			conflicts[p.user] = append(conflicts[p.user], p.want.Name)
		}
	}
	var todo []*pending
	for _, p := range all {
		if _, bad := conflicts[p.user]; !bad {
			todo = append(todo, p)
		}
	}
	kept := make([]*imported, 0, len(res.users))
	for i, in := range res.users {
		names, bad := conflicts[i]
		if !bad {
			kept = append(kept, in)
			continue
		}
		res.skipped = append(res.skipped, &skipped{uuid: in.record.UUID, email: in.record.Email, problems: []string{
			fmt.Sprintf("Secret %s exists, was not made by kubectl puq import and holds another value; "+
				"rename or delete it", strings.Join(names, ", "))}})
		res.memberships -= len(in.memberships)
	}
	res.users = kept
	var created, updated, unchanged atomic.Int64
	err = parallel(ctx, len(todo), func(i int) error {
		p := todo[i]
		switch {
		case p.have == nil:
			if err := c.Create(ctx, p.want); err != nil {
				return fmt.Errorf("cannot create Secret %s/%s: %w", p.want.Namespace, p.want.Name, err)
			}
			created.Add(1)
		case same(p):
			unchanged.Add(1)
		default:
			// The panel's value changed since the last import (a password set in the panel): the
			// Secret follows it, so the operator never writes the old one back.
			p.have.Data = p.want.Data
			if err := c.Update(ctx, p.have); err != nil {
				return fmt.Errorf("cannot update Secret %s/%s: %w", p.want.Namespace, p.want.Name, err)
			}
			updated.Add(1)
		}
		return nil
	})
	return secretCounts{created: int(created.Load()), updated: int(updated.Load()), unchanged: int(unchanged.Load())}, err
}

// parallel runs fn(0..n-1) on secretWorkers goroutines and returns the first error (the rest of
// the work is then skipped).
func parallel(ctx context.Context, n int, fn func(i int) error) error {
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range min(secretWorkers, n) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n) && first.Load() == nil && ctx.Err() == nil; i = next.Add(1) - 1 {
				if err := fn(int(i)); err != nil {
					first.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if err := first.Load(); err != nil {
		return *err
	}
	return ctx.Err()
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
// every file of the two subdirectories, in the namespace. The same panel gives the same bytes.
//
// A file an earlier run wrote and this one did not is removed only when this run speaks for its
// user: a User file whose email this run selected (and skipped) or the panel no longer holds, and
// the ClientMembership files of a user this run wrote (its memberships are exactly this run's) or
// whose User file went. Files of users outside this run's selection stay, so importing one
// domain after another into one directory keeps them all. It returns what it removed, relative
// to dir.
func writeDirectory(dir, namespace string, users []*imported, selected, inPanel map[string]bool) ([]string, error) {
	wrote, wroteUser := map[string]bool{}, map[string]bool{}
	for _, in := range users {
		rel := filepath.Join(usersDir, in.user.Name+".yaml")
		if err := writeFile(filepath.Join(dir, rel), in.user, 0o644); err != nil {
			return nil, err
		}
		wrote[rel], wroteUser[in.user.Name] = true, true
		for _, m := range in.memberships {
			rel := filepath.Join(membershipsDir, m.Name+".yaml")
			if err := writeFile(filepath.Join(dir, rel), m, 0o644); err != nil {
				return nil, err
			}
			wrote[rel] = true
		}
	}
	var removed, resources []string
	goneUser := map[string]bool{}
	for _, sub := range []string{usersDir, membershipsDir} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("cannot read %s: %w", filepath.Join(dir, sub), err)
		}
		for _, e := range entries {
			rel := filepath.Join(sub, e.Name())
			if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".yaml") {
				continue
			}
			if !wrote[rel] && stale(filepath.Join(dir, rel), sub, selected, inPanel, wroteUser, goneUser) {
				if err := os.Remove(filepath.Join(dir, rel)); err != nil {
					return nil, fmt.Errorf("cannot remove %s: %w", rel, err)
				}
				removed = append(removed, rel)
				continue
			}
			resources = append(resources, rel)
		}
	}
	slices.Sort(resources)
	// Users first, in the order the files are listed (sortOptions fifo; kustomize's default order
	// puts ClientMembership before User): a membership applied before its User is reconciled
	// once more to say UserNotFound, and its status patched once more.
	slices.SortStableFunc(resources, func(a, b string) int { return applyRank(a) - applyRank(b) })
	k := map[string]any{
		"apiVersion":  "kustomize.config.k8s.io/v1beta1",
		"kind":        "Kustomization",
		"namespace":   namespace,
		"sortOptions": map[string]any{"order": "fifo"},
		"resources":   resources,
	}
	return removed, writeFile(filepath.Join(dir, "kustomization.yaml"), k, 0o644)
}

// stale reports whether a file of an earlier run that this run did not write goes (see
// writeDirectory); a User file that goes is recorded in goneUser, which the memberships (read
// after the users) consult. A file that does not parse stays: it is not one import wrote.
func stale(path, sub string, selected, inPanel, wroteUser, goneUser map[string]bool) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	if sub == usersDir {
		var u v1.User
		if yaml.Unmarshal(b, &u) != nil || u.Kind != "User" {
			return false
		}
		email := panel.NormalizeEmail(u.Spec.Email)
		if selected[email] || !inPanel[email] {
			goneUser[u.Name] = true
			return true
		}
		return false
	}
	var m v1.ClientMembership
	if yaml.Unmarshal(b, &m) != nil || m.Kind != "ClientMembership" {
		return false
	}
	return wroteUser[m.Spec.UserRef.Name] || goneUser[m.Spec.UserRef.Name]
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

// applyRank is where a file of the directory goes in the kustomization: Users (0) before
// ClientMemberships (1).
func applyRank(rel string) int {
	if strings.HasPrefix(rel, usersDir+string(filepath.Separator)) {
		return 0
	}
	return 1
}
