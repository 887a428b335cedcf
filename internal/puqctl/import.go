package puqctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
	"github.com/puqcloud/puq-user-operator/internal/totp"
)

// ImportOptions are the flags of `kubectl puq import`.
type ImportOptions struct {
	f *Factory

	PanelDSN          string
	PanelPasswordFile string
	// DSNSecret is namespace/name[/key] of the Secret the operator's deployment takes its DSN from
	// (key "dsn" unless given) and its password (key "password").
	DSNSecret string

	Emails   []string
	Clients  []string
	Statuses []string

	OutputDir  string
	SecretsDir string

	Languages       []string
	DefaultLanguage string
	// IncludeUnsetLanguage imports panel users whose language is unset, which applying gives the
	// default language (one UPDATE and one activity row each); by default they are skipped.
	IncludeUnsetLanguage bool
	TOTPIssuer           string
	TOTPDeviceName       string
	HashCosts            password.CostRange
}

// NewImportCommand returns `kubectl puq import`.
func NewImportCommand(f *Factory) *cobra.Command {
	o := &ImportOptions{f: f, HashCosts: password.DefaultCostRange}
	cmd := &cobra.Command{
		Use:   "import -o DIR (--panel-dsn DSN | --dsn-secret NAMESPACE/NAME[/KEY])",
		Short: "Write the panel's users as User and ClientMembership YAML for git, without resetting any password",
		Long: `Reads the panel database (nothing is written to it) and writes, for the users selected, a directory
ready for kustomize: one User per panel user (adoption IfExists, deletionPolicy Retain) and one
ClientMembership per association. Each user's password Secret holds the panel's own bcrypt hash
(key passwordHash) and its TOTP Secret the panel's own seed, so nobody resets a password or enrols
again. The Secrets are created in the namespace (-n) directly, or written as 0600 files to
--secrets-dir for SOPS or Sealed Secrets. A panel user the spec cannot say exactly, or the
namespace's PanelAccessPolicies do not let it adopt, is reported and left out whole.`,
		Example: `  kubectl puq import -n tenant-a --dsn-secret puq-user-operator-system/puq-user-operator-panel-db -o users/
  kubectl puq import -n tenant-a --panel-dsn 'mysql://puq@tcp(127.0.0.1:3306)/puqcloud' --email '*@acme.io' \
      -o users/ --secrets-dir secrets/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.PanelDSN, "panel-dsn", "", "The panel database, as the operator's --panel-dsn: "+
		"mysql://user@tcp(host:3306)/database or sqlite:///path")
	fs.StringVar(&o.PanelPasswordFile, "panel-password-file", "", "File holding the database password (else $"+panel.PasswordEnv+")")
	fs.StringVar(&o.DSNSecret, "dsn-secret", "", "NAMESPACE/NAME[/KEY] of the Secret the operator takes its DSN "+
		"(key dsn) and password (key password) from")
	fs.StringSliceVar(&o.Emails, "email", nil, "Import only users whose email matches one of these patterns "+
		"(as in a PanelAccessPolicy: *@example.com)")
	fs.StringSliceVar(&o.Clients, "client", nil, "Import only users associated with one of these client UUIDs")
	fs.StringSliceVar(&o.Statuses, "status", nil, "Import only users of these panel statuses (new, active, inactive)")
	fs.StringVarP(&o.OutputDir, "output-dir", "o", "", "Directory the User and ClientMembership YAML and kustomization.yaml are written to")
	fs.StringVar(&o.SecretsDir, "secrets-dir", "", "Write the password and TOTP Secrets here as 0600 files "+
		"instead of creating them in the cluster")
	fs.StringSliceVar(&o.Languages, "languages", []string{"en", "uk", "pl", "fr"}, "The operator's --languages")
	fs.StringVar(&o.DefaultLanguage, "default-language", "", "The operator's --default-language")
	fs.BoolVar(&o.IncludeUnsetLanguage, "include-unset-language", false, "Also import panel users whose language is "+
		"unset (never visited the client area): applying writes them the default language once, one UPDATE and one "+
		"activity row each, as the panel does at their first visit; reported per user")
	fs.StringVar(&o.TOTPIssuer, "totp-issuer", "PUQcloud", "The operator's --totp-issuer (the issuer in the otpauth URL)")
	fs.StringVar(&o.TOTPDeviceName, "totp-device-name", "", "The operator's --totp-device-name")
	fs.IntVar(&o.HashCosts.Min, "password-hash-min-cost", password.DefaultCostRange.Min, "The operator's --password-hash-min-cost")
	fs.IntVar(&o.HashCosts.Max, "password-hash-max-cost", password.DefaultCostRange.Max, "The operator's --password-hash-max-cost")
	_ = cmd.MarkFlagRequired("output-dir")
	return cmd
}

// importResult is what a run did, for its report.
type importResult struct {
	users       []*imported
	skipped     []*skipped
	memberships int
	secrets     secretCounts
	removed     []string
	// unselected are the panel users --email, --client and --status left out.
	unselected int
}

// Run reads the panel, decides every selected user, creates (or writes) the Secrets of those
// imported and writes the directory.
func (o *ImportOptions) Run(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if (o.PanelDSN == "") == (o.DSNSecret == "") {
		return errors.New("give exactly one of --panel-dsn and --dsn-secret (the operator's is usually " +
			"puq-user-operator-system/puq-user-operator-panel-db)")
	}
	if err := o.HashCosts.Validate(); err != nil {
		return fmt.Errorf("invalid --password-hash-min-cost/--password-hash-max-cost: %w", err)
	}
	namespace, err := o.f.Namespace()
	if err != nil {
		return err
	}
	c, err := o.f.Client()
	if err != nil {
		return err
	}
	store, err := o.openPanel(ctx, c)
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	grants, err := grantsOf(ctx, c, namespace)
	if err != nil {
		return err
	}
	records, err := store.Records(ctx)
	if err != nil {
		return err
	}
	selected := o.selectRecords(records)
	res, err := o.decide(ctx, store, namespace, grants, selected)
	if err != nil {
		return err
	}
	res.unselected = len(records) - len(selected)
	if o.SecretsDir != "" {
		err = writeSecretFiles(o.SecretsDir, o.TOTPIssuer, res.users)
	} else {
		res.secrets, err = applySecrets(ctx, c, o.TOTPIssuer, &res)
	}
	if err != nil {
		return err
	}
	selectedEmails, panelEmails := map[string]bool{}, map[string]bool{}
	for _, r := range records {
		panelEmails[panel.NormalizeEmail(r.Email)] = true
	}
	for _, r := range selected {
		selectedEmails[panel.NormalizeEmail(r.Email)] = true
	}
	if res.removed, err = writeDirectory(o.OutputDir, namespace, res.users, selectedEmails, panelEmails); err != nil {
		return err
	}
	o.report(o.f.IOStreams.Out, namespace, res)
	return nil
}

// openPanel opens the panel database read-only, from --panel-dsn or the operator's Secret.
func (o *ImportOptions) openPanel(ctx context.Context, c client.Client) (*panel.Store, error) {
	opts := panel.Options{DSN: o.PanelDSN, PasswordFile: o.PanelPasswordFile, ReadOnly: true,
		TOTPDeviceName: cmpOr(o.TOTPDeviceName, o.TOTPIssuer)}
	if o.DSNSecret != "" {
		parts := strings.Split(o.DSNSecret, "/")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("--dsn-secret %q: want NAMESPACE/NAME or NAMESPACE/NAME/KEY", o.DSNSecret)
		}
		key := "dsn"
		if len(parts) == 3 {
			key = parts[2]
		}
		var secret corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: parts[0], Name: parts[1]}, &secret); err != nil {
			return nil, fmt.Errorf("cannot read the DSN Secret %s/%s: %w", parts[0], parts[1], err)
		}
		dsn := strings.TrimSpace(string(secret.Data[key]))
		if dsn == "" {
			return nil, fmt.Errorf("the DSN Secret %s/%s has no key %q", parts[0], parts[1], key)
		}
		opts.DSN = dsn
		if o.PanelPasswordFile == "" {
			opts.Password = strings.TrimRight(string(secret.Data["password"]), "\r\n")
		}
	}
	store, err := panel.Open(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("cannot open the panel database: %w", err)
	}
	return store, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// grantsOf is what the namespace may do in the panel, from the cluster's PanelAccessPolicies, as
// the operator computes it.
func grantsOf(ctx context.Context, c client.Client, namespace string) (tenancy.Grants, error) {
	var policies v1.PanelAccessPolicyList
	if err := c.List(ctx, &policies); err != nil {
		return tenancy.Grants{}, fmt.Errorf("cannot list PanelAccessPolicies (is the operator installed?): %w", err)
	}
	var ns corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: namespace}, &ns); err != nil {
		return tenancy.Grants{}, fmt.Errorf("cannot read namespace %s: %w", namespace, err)
	}
	return tenancy.For(policies.Items, namespace, ns.Labels), nil
}

// selectRecords keeps the records --email, --client and --status select (all when none is given).
func (o *ImportOptions) selectRecords(records []panel.Record) []*panel.Record {
	patterns := make([]v1.EmailPattern, 0, len(o.Emails))
	for _, e := range o.Emails {
		patterns = append(patterns, v1.EmailPattern(e))
	}
	var out []*panel.Record
	for i := range records {
		r := &records[i]
		if len(patterns) > 0 && !tenancy.MatchesAny(patterns, r.Email) {
			continue
		}
		if len(o.Statuses) > 0 && !slices.Contains(o.Statuses, r.Status) {
			continue
		}
		if len(o.Clients) > 0 && !slices.ContainsFunc(r.Memberships, func(m panel.RecordMembership) bool {
			return slices.ContainsFunc(o.Clients, func(c string) bool { return strings.EqualFold(c, m.ClientUUID) })
		}) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// snapshotBatch is how many users one snapshot query reads.
const snapshotBatch = 500

// decide reads the selected users' snapshots in batches and plans each.
func (o *ImportOptions) decide(ctx context.Context, store *panel.Store, namespace string, grants tenancy.Grants,
	selected []*panel.Record) (importResult, error) {
	rules := importRules{namespace: namespace, grants: grants, owners: map[string]bool{}, includeUnsetLanguage: o.IncludeUnsetLanguage,
		operator: controller.Options{Languages: o.Languages, DefaultLanguage: o.DefaultLanguage, HashCosts: o.HashCosts}}
	for _, r := range selected {
		for _, m := range r.Memberships {
			if m.Owner {
				rules.owners[strings.ToLower(m.ClientUUID)] = true
			}
		}
	}
	var res importResult
	for start := 0; start < len(selected); start += snapshotBatch {
		batch := selected[start:min(start+snapshotBatch, len(selected))]
		ids := make([]string, len(batch))
		for i, r := range batch {
			ids[i] = r.UUID
		}
		snaps, err := store.Snapshots(ctx, ids)
		if err != nil {
			return importResult{}, err
		}
		for _, r := range batch {
			in, skip := planImport(rules, r, snaps[r.UUID])
			if skip != nil {
				res.skipped = append(res.skipped, skip)
				continue
			}
			res.users = append(res.users, in)
			res.memberships += len(in.memberships)
		}
	}
	return res, nil
}

// report says what was imported and, for each user left out, why.
func (o *ImportOptions) report(w io.Writer, namespace string, res importResult) {
	_, _ = fmt.Fprintf(w, "Imported %d users and %d client memberships for namespace %s into %s.\n",
		len(res.users), res.memberships, namespace, o.OutputDir)
	if o.SecretsDir != "" {
		_, _ = fmt.Fprintf(w, "Secrets written to %s (mode 0600): encrypt them before they reach git.\n", o.SecretsDir)
	} else {
		_, _ = fmt.Fprintf(w, "Secrets in namespace %s: %d created, %d updated, %d unchanged.\n",
			namespace, res.secrets.created, res.secrets.updated, res.secrets.unchanged)
	}
	if res.unselected > 0 {
		_, _ = fmt.Fprintf(w, "Not selected: %d other panel users (left as they are).\n", res.unselected)
	}
	for _, f := range res.removed {
		_, _ = fmt.Fprintf(w, "Removed %s: its panel user is gone or no longer imported.\n", f)
	}
	var setsLanguage []*imported
	for _, in := range res.users {
		if in.setsLanguage != "" {
			setsLanguage = append(setsLanguage, in)
		}
	}
	if len(setsLanguage) > 0 {
		_, _ = fmt.Fprintf(w, "Language unset in the panel, imported by --include-unset-language: applying writes %d "+
			"users their language once (one UPDATE of users.language and one activity row each, as the panel's client "+
			"area does at a person's first visit); nothing else of them changes:\n", len(setsLanguage))
		for _, in := range setsLanguage {
			_, _ = fmt.Fprintf(w, "  %s (%s): language = %s\n", in.record.Email, in.record.UUID, in.setsLanguage)
		}
	}
	if len(res.skipped) == 0 {
		return
	}
	_, _ = fmt.Fprintf(w, "Skipped %d users (nothing of them was written):\n", len(res.skipped))
	for _, s := range res.skipped {
		_, _ = fmt.Fprintf(w, "  %s (%s): %s\n", s.email, s.uuid, strings.Join(s.problems, "; "))
	}
}

// importLabels are the labels of every Secret import creates.
func importLabels() map[string]string {
	return map[string]string{v1.LabelImported: labelOn, "app.kubernetes.io/managed-by": "kubectl-puq"}
}

// secretsOf are the Secrets of one imported user: its password Secret and, with TOTP, its TOTP
// Secret (named as the operator names it, <user>-totp).
func secretsOf(issuer string, in *imported) ([]*corev1.Secret, error) {
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: in.user.Namespace, Labels: importLabels()}
	}
	out := []*corev1.Secret{{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: meta(in.user.Spec.PasswordSecretRef.Name), Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{v1.PasswordKeyHash: []byte(in.hash)},
	}}
	if in.seed != "" {
		key, err := totpKey(issuer, in.user.Spec.Email, in.seed)
		if err != nil {
			return nil, err
		}
		out = append(out, &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: meta(totp.SecretName(in.user.Name)), Type: corev1.SecretTypeOpaque,
			Data: key.SecretData(),
		})
	}
	return out, nil
}
