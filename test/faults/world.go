// Package faults is the fault suite of issue 12: it kills, stalls and restarts the real parts
// (the manager binary, MariaDB, kube-apiserver) while Users and ClientMemberships change, and ends
// every scenario with one invariant over the panel database and the cluster, CheckInvariant.
//
// A World is what a scenario runs in and what the invariant reads: a namespace of the cluster, a
// panel database, the operator instance that manages them, and the ledger of the changes the
// scenario asked for (so that the invariant can tell one write per change from two).
package faults

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
)

// World is one scenario's namespace, panel database and operator instance, and the ledger of
// what the scenario changed. Its methods make the changes a person would make with kubectl (and
// an admin in the panel UI), and record them.
type World struct {
	// K8s is an admin's client; every read goes to the API server (no cache).
	K8s client.Client
	// Namespace holds the scenario's Users, ClientMemberships and Secrets.
	Namespace string
	// Instance is the manager's --instance-id: the bindings it writes carry it.
	Instance string
	// Panel is the panel database; Panel.Root reads it directly.
	Panel *testdb.Panel
	// Reach asks whether the panel database answers the way the manager reaches it (through a
	// proxy, say). Nil: a ping of Panel.Root.
	Reach func(context.Context) error

	mu           sync.Mutex
	token        string
	serial       int
	ledger       map[string]*changes // by lower-case email
	foreignUsers map[string]bool     // panel users made outside the operator, by uuid
	foreignLinks map[link]bool       // associations made in the panel UI
}

// changes counts what a scenario asked of one User: each edit and each rotation may become at
// most one write in the panel.
type changes struct {
	edits, rotations int
}

// link is one client_x_user row.
type link struct{ user, client string }

// NewWorld returns a world over a namespace and a panel database managed by operator instance.
func NewWorld(k8s client.Client, namespace, instance string, panel *testdb.Panel) *World {
	raw := make([]byte, 12)
	_, _ = rand.Read(raw)
	w := &World{K8s: k8s, Namespace: namespace, Instance: instance, Panel: panel, token: hex.EncodeToString(raw),
		ledger: map[string]*changes{}, foreignUsers: map[string]bool{}, foreignLinks: map[link]bool{}}
	// Every password of the world holds the token: keeping it secret keeps them all out of
	// what the tests print, and a manager that prints one is caught (testenv.CheckOutput).
	testenv.KeepSecret(w.token)
	return w
}

// EmailOf is the email the world gives the User name.
func (w *World) EmailOf(name string) string {
	return fmt.Sprintf("%s@%s.faults.example.com", name, w.Namespace)
}

// newPassword is a password the operator's policy accepts, unique in the world. The policy
// refuses a password holding the first name (3 letters or more), so the names the world gives
// ("Grace", "Grace<n>") hold letters a hex token never does: "Ada" made every password refused
// whenever the random token held "ada".
func (w *World) newPassword() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.serial++
	return fmt.Sprintf("Kv7-%s-%d", w.token, w.serial)
}

func (w *World) entry(email string) *changes {
	key := strings.ToLower(email)
	c := w.ledger[key]
	if c == nil {
		c = &changes{}
		w.ledger[key] = c
	}
	return c
}

// recorded is the ledger of an email (zero when the world never made it).
func (w *World) recorded(email string) (changes, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.ledger[strings.ToLower(email)]
	if !ok {
		return changes{}, false
	}
	return *c, true
}

// CreateUser creates the User name and its password Secret, as kubectl apply would.
func (w *World) CreateUser(ctx context.Context, name string) (*v1.User, error) {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: name + "-password"},
		StringData: map[string]string{"password": w.newPassword()}}
	if err := w.K8s.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("cannot create Secret %s: %w", secret.Name, err)
	}
	u := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: name}, Spec: v1.UserSpec{
		Email: w.EmailOf(name), PasswordSecretRef: v1.SecretKeyReference{Name: secret.Name}, FirstName: "Grace",
		LastName: "Lovelace", Language: "en",
	}}
	w.mu.Lock()
	w.entry(u.Spec.Email)
	w.mu.Unlock()
	if err := w.K8s.Create(ctx, u); err != nil {
		return nil, fmt.Errorf("cannot create User %s: %w", name, err)
	}
	return u, nil
}

// EditUser gives the User name a new first name.
func (w *World) EditUser(ctx context.Context, name string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var u v1.User
		if err := w.K8s.Get(ctx, types.NamespacedName{Namespace: w.Namespace, Name: name}, &u); err != nil {
			return err
		}
		w.mu.Lock()
		w.serial++
		u.Spec.FirstName = fmt.Sprintf("Grace%d", w.serial)
		w.mu.Unlock()
		if err := w.K8s.Update(ctx, &u); err != nil {
			return err
		}
		w.mu.Lock()
		w.entry(u.Spec.Email).edits++
		w.mu.Unlock()
		return nil
	})
}

// RotatePassword puts a new password into the Secret of the User name.
func (w *World) RotatePassword(ctx context.Context, name string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var s corev1.Secret
		if err := w.K8s.Get(ctx, types.NamespacedName{Namespace: w.Namespace, Name: name + "-password"}, &s); err != nil {
			return err
		}
		s.Data = map[string][]byte{"password": []byte(w.newPassword())}
		if err := w.K8s.Update(ctx, &s); err != nil {
			return err
		}
		w.mu.Lock()
		w.entry(w.EmailOf(name)).rotations++
		w.mu.Unlock()
		return nil
	})
}

// DeleteUser deletes the User name (its Secret stays, as a person removing only the User from
// git leaves it).
func (w *World) DeleteUser(ctx context.Context, name string) error {
	u := &v1.User{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: name}}
	return client.IgnoreNotFound(w.K8s.Delete(ctx, u))
}

// CreateMembership creates a ClientMembership of the User user with the client clientUUID.
func (w *World) CreateMembership(ctx context.Context, name, user, clientUUID string, owner bool) (*v1.ClientMembership, error) {
	m := &v1.ClientMembership{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: name},
		Spec: v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: user},
			Client: v1.ClientSelector{UUID: clientUUID}, Owner: owner,
			Permissions: []v1.Permission{"manage-services", "manage-invoices"}}}
	if err := w.K8s.Create(ctx, m); err != nil {
		return nil, fmt.Errorf("cannot create ClientMembership %s: %w", name, err)
	}
	return m, nil
}

// DeleteMembership deletes the ClientMembership name.
func (w *World) DeleteMembership(ctx context.Context, name string) error {
	m := &v1.ClientMembership{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: name}}
	return client.IgnoreNotFound(w.K8s.Delete(ctx, m))
}

// PanelUser adds a panel user the way the panel's admin UI would, outside the operator: the
// invariant expects it to stay.
func (w *World) PanelUser(ctx context.Context, email, firstName string) (string, error) {
	hash, err := password.Hash(w.newPassword(), 4)
	if err != nil {
		return "", err
	}
	hash, err = password.PanelForm(hash)
	if err != nil {
		return "", err
	}
	id := uuid.NewString()
	now := time.Now().UTC().Format(time.DateTime)
	if _, err := w.Panel.Root.ExecContext(ctx, "INSERT INTO users (`uuid`, `email`, `password`, `status`, `firstname`, "+
		"`created_at`, `updated_at`) VALUES (?, ?, ?, 'active', ?, ?, ?)", id, email, hash, firstName, now, now); err != nil {
		return "", fmt.Errorf("cannot add a panel user: %w", err)
	}
	w.mu.Lock()
	w.foreignUsers[id] = true
	w.mu.Unlock()
	return id, nil
}

// PanelClient adds a client owned by the panel user owner, as the panel does at the owner's
// first client-area visit.
func (w *World) PanelClient(ctx context.Context, company, owner string) (string, error) {
	id := uuid.NewString()
	now := time.Now().UTC().Format(time.DateTime)
	if _, err := w.Panel.Root.ExecContext(ctx, "INSERT INTO clients (`uuid`, `firstname`, `company_name`, `status`, "+
		"`created_at`, `updated_at`) VALUES (?, 'Owner', ?, 'active', ?, ?)", id, company, now, now); err != nil {
		return "", fmt.Errorf("cannot add a panel client: %w", err)
	}
	if _, err := w.Panel.Root.ExecContext(ctx, "INSERT INTO client_x_user (`client_uuid`, `user_uuid`, `owner`, "+
		"`permissions`, `created_at`, `updated_at`) VALUES (?, ?, 1, ?, ?, ?)", id, owner, allPermissions, now, now); err != nil {
		return "", fmt.Errorf("cannot associate the panel client's owner: %w", err)
	}
	w.mu.Lock()
	w.foreignLinks[link{owner, id}] = true
	w.mu.Unlock()
	return id, nil
}

// allPermissions is every permission key, as the panel stores them for an owner.
const allPermissions = `["modify-master-profile","manage-users","manage-services","manage-domains",` +
	`"manage-invoices","manage-support-tickets","manage-affiliate","manage-orders"]`

// TransferOwnership makes the panel user to the owner of the client in the panel UI, as
// Client::updateOwner does: every key to the previous owner, the flag cleared on every row of
// the client, then the flag and every key on the new owner's row.
func (w *World) TransferOwnership(ctx context.Context, clientUUID, to string) error {
	tx, err := w.Panel.Root.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	now := time.Now().UTC().Format(time.DateTime)
	for _, q := range []struct {
		query string
		args  []any
	}{
		{"UPDATE client_x_user SET `permissions` = ?, `updated_at` = ? WHERE client_uuid = ? AND `owner` = 1",
			[]any{allPermissions, now, clientUUID}},
		{"UPDATE client_x_user SET `owner` = 0 WHERE client_uuid = ?", []any{clientUUID}},
		{"UPDATE client_x_user SET `owner` = 1, `permissions` = ?, `updated_at` = ? WHERE client_uuid = ? AND user_uuid = ?",
			[]any{allPermissions, now, clientUUID, to}},
	} {
		if _, err := tx.ExecContext(ctx, q.query, q.args...); err != nil {
			return fmt.Errorf("cannot transfer the ownership: %w", err)
		}
	}
	return tx.Commit()
}

// ClientOwner is the panel user owning the client, "" when none does.
func (w *World) ClientOwner(ctx context.Context, clientUUID string) (string, error) {
	var owner string
	err := w.Panel.Root.QueryRowContext(ctx, "SELECT user_uuid FROM client_x_user WHERE client_uuid = ? AND `owner` = 1",
		clientUUID).Scan(&owner)
	if err == sql.ErrNoRows {
		return "", nil
	}
	return owner, err
}

func (w *World) isForeignUser(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.foreignUsers[id]
}

func (w *World) isForeignLink(l link) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.foreignLinks[l]
}

func (w *World) reach(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if w.Reach != nil {
		return w.Reach(ctx)
	}
	return w.Panel.Root.PingContext(ctx)
}
