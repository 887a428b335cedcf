package puqctl

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// panelStatuses are the user statuses the panel has, for --status.
var panelStatuses = []string{statusNew, statusActive, statusInactive, statusClosed, statusFraud}

type usersOptions struct {
	f             *Factory
	allNamespaces bool
	search        string
	statuses      []string
	output        string
	color         string
}

// NewUsersCommand is `kubectl puq users`: the panel's Users list (Clients -> Manage Users), from
// the User objects and the status the operator read back from the panel.
func NewUsersCommand(f *Factory) *cobra.Command {
	o := &usersOptions{f: f}
	cmd := &cobra.Command{
		Use:   "users",
		Short: "List the panel's users: status, 2FA, email, phone, clients, created",
		Long: "List the panel's users as the panel's Manage Users page does, from the User objects: the panel status\n" +
			"badge (NEW, ACTIVE, INACTIVE, CLOSED, FRAUD), 2FA, email and phone, the number of clients, when the User\n" +
			"was created, and whether the operator has the panel in sync (READY, or the reason it is not: see\n" +
			"`kubectl puq why USER`).",
		Example: "  kubectl puq users -n team-a\n" +
			"  kubectl puq users -A --search example.com --status NEW,INACTIVE\n" +
			"  kubectl puq users -o wide",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context()) },
	}
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "List the users of every namespace")
	cmd.Flags().StringVar(&o.search, "search", "",
		"Only users whose email, first name, last name or phone contains this text (case ignored; phone on digits too)")
	cmd.Flags().StringSliceVar(&o.statuses, "status", nil,
		"Only users with these panel statuses: "+strings.Join(panelStatuses, ", ")+" (comma separated)")
	addOutputFlag(cmd, &o.output)
	addColorFlag(cmd, &o.color)
	return cmd
}

func (o *usersOptions) run(ctx context.Context) error {
	if err := checkOutput(o.output, outputWide, outputYAML, outputJSON); err != nil {
		return err
	}
	statuses, err := parseStatuses(o.statuses)
	if err != nil {
		return err
	}
	color, err := useColor(o.color, o.f.IOStreams.Out)
	if err != nil {
		return err
	}
	c, err := o.f.Client()
	if err != nil {
		return err
	}
	var opts []client.ListOption
	if !o.allNamespaces {
		ns, err := o.f.Namespace()
		if err != nil {
			return err
		}
		opts = append(opts, client.InNamespace(ns))
	}
	list := &v1.UserList{}
	if err := c.List(ctx, list, opts...); err != nil {
		return fmt.Errorf("cannot list Users: %w", err)
	}
	users := filterUsers(list.Items, o.search, statuses)
	slices.SortFunc(users, func(a, b v1.User) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	switch o.output {
	case outputYAML, outputJSON:
		items := make([]v1.User, len(users))
		for i, u := range users {
			u.ManagedFields = nil // as kubectl get -o yaml prints them
			items[i] = u
		}
		return writeStructured(o.f.IOStreams.Out, o.output, map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	}
	if len(users) == 0 {
		_, err := fmt.Fprintln(o.f.IOStreams.ErrOut, "No users found.")
		return err
	}
	return usersTable(users, o.allNamespaces, o.output == outputWide).write(o.f.IOStreams.Out, color)
}

// parseStatuses checks --status against the panel's statuses, ignoring case.
func parseStatuses(in []string) ([]string, error) {
	var out []string
	for _, s := range in {
		s = strings.ToUpper(strings.TrimSpace(s))
		if !slices.Contains(panelStatuses, s) {
			return nil, fmt.Errorf("unknown --status %q: use %s", s, strings.Join(panelStatuses, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

// filterUsers keeps the users matching search (a substring of email, names or phone, ignoring
// case; the phone also compared on digits, as the panel compares phones) and, when statuses is
// not empty, holding one of them as their panel status.
func filterUsers(users []v1.User, search string, statuses []string) []v1.User {
	var out []v1.User
	for _, u := range users {
		if len(statuses) > 0 && !slices.Contains(statuses, strings.ToUpper(u.Status.PanelStatus)) {
			continue
		}
		if search != "" && !matches(u, search) {
			continue
		}
		out = append(out, u)
	}
	return out
}

func matches(u v1.User, search string) bool {
	q := strings.ToLower(strings.TrimSpace(search))
	s := u.Spec
	for _, field := range []string{s.Email, s.FirstName, s.LastName, s.FirstName + " " + s.LastName, s.Phone} {
		if strings.Contains(strings.ToLower(field), q) {
			return true
		}
	}
	// A phone typed with spaces or dashes ("+48 123 456") finds the number, as the panel compares
	// phones on digits.
	digits := onlyDigits(q)
	return digits != "" && strings.Trim(q, "0123456789 +-()") == "" && strings.Contains(onlyDigits(s.Phone), digits)
}

func onlyDigits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func usersTable(users []v1.User, withNamespace, wide bool) *table {
	t := &table{header: []string{"NAME", "STATUS", "2FA", "EMAIL", "PHONE", "CLIENTS", "CREATED", "READY"}}
	if wide {
		t.header = append(t.header, "FULL NAME", "VERIFIED", "2FA METHOD", "UUID")
	}
	if withNamespace {
		t.header = append([]string{"NAMESPACE"}, t.header...)
	}
	for _, u := range users {
		row := []cell{plain(u.Name), {text: orDash(u.Status.PanelStatus), c: statusColour(u.Status.PanelStatus)},
			twoFactorCell(u.Status.TwoFactor), plain(u.Spec.Email), plain(orDash(u.Spec.Phone)), plain(clientCount(u)),
			plain(u.CreationTimestamp.UTC().Format("2006-01-02")), readyCell(u.Status.Conditions)}
		if wide {
			row = append(row, plain(strings.TrimSpace(u.Spec.FirstName+" "+u.Spec.LastName)), plain(verified(u.Status)),
				plain(orDash(twoFactorMethod(u.Spec.TwoFactor))), plain(orDash(u.Status.UUID)))
		}
		if withNamespace {
			row = append([]cell{plain(u.Namespace)}, row...)
		}
		t.add(row...)
	}
	return t
}

func twoFactorCell(s string) cell {
	switch s {
	case "Enabled":
		return cell{text: s, c: green}
	case "Disabled":
		return cell{text: s, c: grey}
	}
	return plain("-")
}

// clientCount is the Clients counter; "-" until the operator has read the panel user.
func clientCount(u v1.User) string {
	if u.Status.UUID == "" {
		return "-"
	}
	return strconv.Itoa(int(u.Status.ClientCount))
}

// readyCell is True, or False with the reason: red when the operator waits for a person
// (Stalled), yellow while it is still working or retrying.
func readyCell(conds []metav1.Condition) cell {
	r := meta.FindStatusCondition(conds, v1.ConditionReady)
	switch {
	case r == nil:
		return cell{text: "Unknown", c: yellow}
	case r.Status == metav1.ConditionTrue:
		return cell{text: "True", c: green}
	case meta.IsStatusConditionTrue(conds, v1.ConditionStalled):
		return cell{text: "False (" + r.Reason + ")", c: red}
	}
	return cell{text: string(r.Status) + " (" + r.Reason + ")", c: yellow}
}

// verified is the panel's verified flags: "email,phone", one of them, or "-".
func verified(st v1.UserStatus) string {
	var v []string
	if st.EmailVerified {
		v = append(v, "email")
	}
	if st.PhoneVerified {
		v = append(v, "phone")
	}
	return orDash(strings.Join(v, ","))
}

func twoFactorMethod(tf v1.TwoFactor) string {
	if !tf.Enabled {
		return ""
	}
	if tf.Method == "" {
		return "default"
	}
	return string(tf.Method)
}
