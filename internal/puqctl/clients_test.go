package puqctl

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

const (
	acmeUUID   = "5f0c1a2b-3c4d-4e5f-8a9b-000000000a01"
	globexUUID = "5f0c1a2b-3c4d-4e5f-8a9b-000000000a02"
	initechUID = "5f0c1a2b-3c4d-4e5f-8a9b-000000000a03"
)

// clientsFixture is jane, associated with three clients: Acme, which she owns (a
// ClientMembership), Globex with two permissions (a ClientMembership), and Initech, associated
// in the panel UI (no ClientMembership); and a ClientMembership the panel does not hold, its
// client not found.
func clientsFixture(t *testing.T) string {
	t.Helper()
	ns := namespace(t, "views-clients")
	user(t, ns, "jane", v1.UserSpec{Email: "jane@example.com", FirstName: "Jane", LastName: "Doe", Phone: "+48123456789"},
		&v1.UserStatus{UUID: "0b6f4f52-6c1e-4d8e-9a43-00000000000a", PanelStatus: "ACTIVE", TwoFactor: "Disabled", ClientCount: 3,
			Clients: []v1.UserClient{
				{UUID: acmeUUID, Name: "Wile Coyote", CompanyName: "Acme Corp", TaxID: "PL5250001009", Status: "ACTIVE", Owner: true},
				{UUID: globexUUID, Name: "Hank Scorpio", CompanyName: "Globex", Status: "INACTIVE"},
				{UUID: initechUID, Name: "Bill Lumbergh", CompanyName: "Initech", TaxID: "US-12-3456789", Status: "NEW"},
			},
			Conditions: ready()})
	newMembership(t, ns, "jane-acme", v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: "jane"},
		Client: v1.ClientSelector{UUID: acmeUUID}, Owner: true},
		&v1.ClientMembershipStatus{ClientUUID: acmeUUID, Conditions: ready()})
	newMembership(t, ns, "jane-globex", v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: "jane"},
		Client:      v1.ClientSelector{CompanyName: "Globex"},
		Permissions: []v1.Permission{v1.PermissionManageInvoices, v1.PermissionManageServices}},
		&v1.ClientMembershipStatus{ClientUUID: globexUUID, Conditions: ready()})
	newMembership(t, ns, "jane-hooli", v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: "jane"},
		Client: v1.ClientSelector{CompanyName: "Hooli"}},
		&v1.ClientMembershipStatus{Conditions: stalled(v1.ReasonClientNotFound,
			"No panel client has the company name in spec.client.companyName; create the client in the panel or fix the name.")})
	// Another user's membership of a client jane also has is not jane's.
	user(t, ns, "joe", v1.UserSpec{Email: "joe@example.com"}, nil)
	newMembership(t, ns, "joe-initech", v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: "joe"},
		Client: v1.ClientSelector{UUID: initechUID}, Permissions: []v1.Permission{v1.PermissionManageUsers}},
		&v1.ClientMembershipStatus{ClientUUID: initechUID, Conditions: ready()})
	return ns
}

func TestClientsShowsTheUserClientsViewWithPermissionsAndPanelUIAssociations(t *testing.T) {
	ns := clientsFixture(t)
	golden(t, "clients", mustRun(t, ns, NewClientsCommand, "jane"))

	var view struct {
		Clients []struct {
			UUID        string   `json:"uuid"`
			Owner       bool     `json:"owner"`
			Permissions []string `json:"permissions"`
			Membership  string   `json:"membership"`
		} `json:"clients"`
		Pending []struct {
			Membership string `json:"membership"`
			Reason     string `json:"reason"`
		} `json:"pendingMemberships"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, ns, NewClientsCommand, "jane", "-o", "json")), &view); err != nil {
		t.Fatal(err)
	}
	if len(view.Clients) != 3 {
		t.Fatalf("-o json: %d clients, want 3: %+v", len(view.Clients), view)
	}
	acme, globex, initech := view.Clients[0], view.Clients[1], view.Clients[2]
	if !acme.Owner || len(acme.Permissions) != len(v1.AllPermissions) || acme.Membership != "jane-acme" {
		t.Errorf("Acme: %+v, want owner with every permission, from jane-acme", acme)
	}
	if !slices.Equal(globex.Permissions, []string{"manage-services", "manage-invoices"}) || globex.Membership != "jane-globex" {
		t.Errorf("Globex: %+v, want manage-services and manage-invoices (the panel's order), from jane-globex", globex)
	}
	if initech.Permissions != nil || initech.Membership != "" {
		t.Errorf("Initech (panel UI): %+v, want permissions unknown (null) and no membership", initech)
	}
	if len(view.Pending) != 1 || view.Pending[0].Membership != "jane-hooli" || view.Pending[0].Reason != v1.ReasonClientNotFound {
		t.Errorf("pending: %+v, want jane-hooli with ClientNotFound", view.Pending)
	}
}

func TestClientsOfAUserWithoutClientsSaysSo(t *testing.T) {
	ns := namespace(t, "views-clients-none")
	user(t, ns, "solo", v1.UserSpec{Email: "solo@example.com"},
		&v1.UserStatus{UUID: "0b6f4f52-6c1e-4d8e-9a43-00000000000b", PanelStatus: "NEW", Conditions: ready()})
	if out := mustRun(t, ns, NewClientsCommand, "solo"); !strings.Contains(out, "No clients are associated with this user.") {
		t.Errorf("a user without clients:\n%s", out)
	}
	if r := run(t, ns, NewClientsCommand, "nobody"); r.err == nil || !strings.Contains(r.err.Error(), "not found") {
		t.Errorf("an unknown user: err %v, want not found", r.err)
	}
}
