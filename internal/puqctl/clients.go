package puqctl

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

type clientsOptions struct {
	f      *Factory
	output string
	color  string
}

// NewClientsCommand is `kubectl puq clients USER`: the panel's "User Clients" view, from the
// User's status (which lists every association, those made in the panel UI too) and the
// ClientMemberships that manage some of them.
func NewClientsCommand(f *Factory) *cobra.Command {
	o := &clientsOptions{f: f}
	cmd := &cobra.Command{
		Use:   "clients USER",
		Short: "Show the clients a user is associated with, as the panel's User Clients view",
		Long: "Show the panel's User Clients view for the User named USER: the user's UUID, name, email and phone,\n" +
			"then each client the panel associates the user with (client UUID, contact name, company, tax ID, the\n" +
			"client's status, OWNER), the user's permissions on it and the ClientMembership that manages the\n" +
			"association. Associations made in the panel UI are listed too, with no ClientMembership.",
		Example: "  kubectl puq clients jane -n team-a\n  kubectl puq clients jane -o yaml",
		Args:    cobra.ExactArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args[0]) },
	}
	addOutputFlag(cmd, &o.output)
	addColorFlag(cmd, &o.color)
	return cmd
}

// userClientsView is the User Clients view, as -o yaml and -o json print it.
type userClientsView struct {
	User    userInfo        `json:"user"`
	Clients []clientRow     `json:"clients"`
	Pending []pendingMember `json:"pendingMemberships,omitempty"`
}

// userInfo is the view's "User Information" block.
type userInfo struct {
	Namespace string `json:"namespace"`
	Resource  string `json:"resource"`
	UUID      string `json:"uuid,omitempty"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	Phone     string `json:"phone,omitempty"`
}

// clientRow is one associated client.
type clientRow struct {
	v1.UserClient `json:",inline"`
	// Permissions are the user's permissions on the client, from the ClientMembership that
	// manages the association; nil when none does (the User's status does not carry the
	// permissions of an association made in the panel UI).
	Permissions []string `json:"permissions"`
	// Membership names the ClientMembership managing the association; empty for one made in the
	// panel UI.
	Membership string `json:"membership,omitempty"`
}

// pendingMember is a ClientMembership of the user whose association the panel does not hold
// (yet): the reason says why.
type pendingMember struct {
	Membership string `json:"membership"`
	Client     string `json:"client"`
	Reason     string `json:"reason"`
}

func (o *clientsOptions) run(ctx context.Context, name string) error {
	if err := checkOutput(o.output, outputYAML, outputJSON); err != nil {
		return err
	}
	color, err := useColor(o.color, o.f.IOStreams.Out)
	if err != nil {
		return err
	}
	c, user, err := o.f.User(ctx, name)
	if err != nil {
		return err
	}
	memberships, err := membershipsOf(ctx, c, user)
	if err != nil {
		return err
	}
	view := userClients(user, memberships)
	if o.output != outputTable {
		return writeStructured(o.f.IOStreams.Out, o.output, view)
	}
	return view.write(o.f.IOStreams.Out, color)
}

// membershipsOf lists the ClientMemberships naming the user, sorted by name.
func membershipsOf(ctx context.Context, c client.Client, user *v1.User) ([]v1.ClientMembership, error) {
	list := &v1.ClientMembershipList{}
	if err := c.List(ctx, list, client.InNamespace(user.Namespace)); err != nil {
		return nil, fmt.Errorf("cannot list ClientMemberships: %w", err)
	}
	var out []v1.ClientMembership
	for _, m := range list.Items {
		if m.Spec.UserRef.Name == user.Name {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b v1.ClientMembership) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// userClients joins the User's clients (status.clients) with the ClientMemberships that manage
// them (by status.clientUUID), for the permissions; memberships the panel does not hold are
// pending.
func userClients(user *v1.User, memberships []v1.ClientMembership) userClientsView {
	view := userClientsView{User: userInfo{Namespace: user.Namespace, Resource: user.Name, UUID: user.Status.UUID,
		Name: strings.TrimSpace(user.Spec.FirstName + " " + user.Spec.LastName), Email: user.Spec.Email, Phone: user.Spec.Phone},
		Clients: []clientRow{}}
	byClient := map[string]*v1.ClientMembership{}
	for i := range memberships {
		if uuid := memberships[i].Status.ClientUUID; uuid != "" {
			byClient[uuid] = &memberships[i]
		}
	}
	shown := map[string]bool{}
	for _, uc := range user.Status.Clients {
		row := clientRow{UserClient: uc}
		if m := byClient[uc.UUID]; m != nil {
			row.Membership = m.Name
			row.Permissions = membershipPermissions(m)
			shown[m.Name] = true
		}
		if uc.Owner {
			row.Permissions = allPermissions()
		}
		view.Clients = append(view.Clients, row)
	}
	for _, m := range memberships {
		if shown[m.Name] {
			continue
		}
		reason := "not reconciled yet"
		if r := meta.FindStatusCondition(m.Status.Conditions, v1.ConditionReady); r != nil {
			reason = r.Reason
		}
		view.Pending = append(view.Pending, pendingMember{Membership: m.Name, Client: clientSelector(m.Spec.Client), Reason: reason})
	}
	return view
}

// membershipPermissions are a membership's permissions in the panel's order; the owner has all.
func membershipPermissions(m *v1.ClientMembership) []string {
	if m.Spec.Owner {
		return allPermissions()
	}
	out := []string{}
	for _, p := range v1.AllPermissions {
		if slices.Contains(m.Spec.Permissions, p) {
			out = append(out, string(p))
		}
	}
	return out
}

func allPermissions() []string {
	out := make([]string, len(v1.AllPermissions))
	for i, p := range v1.AllPermissions {
		out[i] = string(p)
	}
	return out
}

func clientSelector(s v1.ClientSelector) string {
	if s.UUID != "" {
		return s.UUID
	}
	return s.CompanyName
}

func (v userClientsView) write(w io.Writer, color bool) error {
	u := v.User
	info := &strings.Builder{}
	fmt.Fprintf(info, "User:     %s/%s\n", u.Namespace, u.Resource)
	fmt.Fprintf(info, "UUID:     %s\n", orDash(u.UUID))
	fmt.Fprintf(info, "Name:     %s\n", u.Name)
	fmt.Fprintf(info, "Email:    %s\n", u.Email)
	fmt.Fprintf(info, "Phone:    %s\n", orDash(u.Phone))
	fmt.Fprintf(info, "Clients:  %d\n\n", len(v.Clients))
	if _, err := io.WriteString(w, info.String()); err != nil {
		return err
	}
	unknown := false
	if len(v.Clients) > 0 {
		t := &table{header: []string{"CLIENT UUID", "NAME", "COMPANY", "TAX ID", "STATUS", "OWNER", "PERMISSIONS", "MEMBERSHIP"}}
		for _, c := range v.Clients {
			owner := plain("-")
			if c.Owner {
				owner = cell{text: "OWNER", c: blue}
			}
			perms := permissionsText(c)
			unknown = unknown || c.Permissions == nil
			t.add(plain(c.UUID), plain(orDash(c.Name)), plain(orDash(c.CompanyName)), plain(orDash(c.TaxID)),
				cell{text: orDash(c.Status), c: statusColour(c.Status)}, owner, perms, plain(orDash(c.Membership)))
		}
		if err := t.write(w, color); err != nil {
			return err
		}
	} else if _, err := io.WriteString(w, "No clients are associated with this user.\n"); err != nil {
		return err
	}
	var notes strings.Builder
	if unknown {
		notes.WriteString("\n? An association made in the panel UI: its permissions are not in the User's status; see the\n" +
			"  client's Users tab in the panel, or manage it with a ClientMembership.\n")
	}
	if len(v.Pending) > 0 {
		notes.WriteString("\nClientMemberships of this user the panel does not hold (kubectl puq why " + u.Resource + "):\n")
		t := &table{header: []string{"MEMBERSHIP", "CLIENT", "REASON"}}
		for _, p := range v.Pending {
			t.add(plain(p.Membership), plain(p.Client), cell{text: p.Reason, c: red})
		}
		if _, err := io.WriteString(w, notes.String()); err != nil {
			return err
		}
		return t.write(w, color)
	}
	_, err := io.WriteString(w, notes.String())
	return err
}

// permissionsText is the PERMISSIONS cell: "all" for the owner, the list, "none", or "?" when
// the status does not say.
func permissionsText(c clientRow) cell {
	switch {
	case c.Owner:
		return plain("all")
	case c.Permissions == nil:
		return cell{text: "?", c: yellow}
	case len(c.Permissions) == 0:
		return plain("none")
	case len(c.Permissions) == len(v1.AllPermissions):
		return plain("all")
	}
	return plain(strings.Join(c.Permissions, ","))
}
