package puqctl

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

const usersNS = "views-users"

var usersOnce sync.Once

// usersFixture is a namespace holding one User per state the list shows: ACTIVE with TOTP and
// clients, NEW, INACTIVE, stalled on a duplicate email, and one the operator has not seen yet;
// and a second namespace with one User, for -A.
func usersFixture(t *testing.T) {
	t.Helper()
	usersOnce.Do(func() {
		ns := namespace(t, usersNS)
		user(t, ns, "ada", v1.UserSpec{Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace", Phone: "+48123456789",
			EmailVerified: true, TwoFactor: v1.TwoFactor{Enabled: true, Method: v1.TwoFactorMethodTOTP}},
			&v1.UserStatus{UUID: "0b6f4f52-6c1e-4d8e-9a43-000000000001", PanelStatus: "ACTIVE", TwoFactor: "Enabled",
				EmailVerified: true, ClientCount: 2, Conditions: ready()})
		user(t, ns, "bob", v1.UserSpec{Email: "bob@example.com", FirstName: "Bob", LastName: "Babbage"},
			&v1.UserStatus{UUID: "0b6f4f52-6c1e-4d8e-9a43-000000000002", PanelStatus: "NEW", TwoFactor: "Disabled",
				Conditions: ready()})
		user(t, ns, "cyd", v1.UserSpec{Email: "cyd@example.org", FirstName: "Cyd", LastName: "Charisse", Phone: "+380441234567",
			PhoneVerified: true, State: v1.UserStateInactive},
			&v1.UserStatus{UUID: "0b6f4f52-6c1e-4d8e-9a43-000000000003", PanelStatus: "INACTIVE", TwoFactor: "Disabled",
				PhoneVerified: true, ClientCount: 1, Conditions: ready()})
		user(t, ns, "dup", v1.UserSpec{Email: "ADA@example.com", FirstName: "Ada", LastName: "Again"},
			&v1.UserStatus{Conditions: stalled(v1.ReasonDuplicateEmail, "The email is already held by User views-users/ada, "+
				"created earlier; emails are unique in the panel. Change spec.email, or delete that User and this one proceeds.")})
		user(t, ns, "eve", v1.UserSpec{Email: "eve@example.net", FirstName: "Eve", LastName: "Newcomer"}, nil)
		other := namespace(t, usersNS+"-b")
		user(t, other, "ada", v1.UserSpec{Email: "ada@b.example", FirstName: "Ada", LastName: "Byron"},
			&v1.UserStatus{UUID: "0b6f4f52-6c1e-4d8e-9a43-000000000004", PanelStatus: "ACTIVE", TwoFactor: "Disabled",
				Conditions: ready()})
	})
}

// names is the NAME column of a table (the column after NAMESPACE with -A).
func names(out string, col int) []string {
	lines := strings.Split(strings.TrimSpace(out), "\n")[1:]
	got := make([]string, 0, len(lines))
	for _, line := range lines {
		got = append(got, strings.Fields(line)[col])
	}
	return got
}

func TestUsersListsStatusBadge2FAContactsClientsCreatedAndReady(t *testing.T) {
	usersFixture(t)
	golden(t, "users", mustRun(t, usersNS, NewUsersCommand))
}

func TestUsersWideAddsFullNameVerifiedFlags2FAMethodAndUUID(t *testing.T) {
	usersFixture(t)
	golden(t, "users-wide", mustRun(t, usersNS, NewUsersCommand, "-o", "wide"))
}

func TestUsersAllNamespacesAddsTheNamespaceColumn(t *testing.T) {
	usersFixture(t)
	golden(t, "users-all-namespaces", mustRun(t, "", NewUsersCommand, "-A", "--search", "ada"))
}

func TestUsersSearchMatchesEmailNamesAndPhoneOnDigits(t *testing.T) {
	usersFixture(t)
	for _, tc := range []struct {
		search string
		want   []string
	}{
		{"EXAMPLE.ORG", []string{"cyd"}}, // email, case ignored
		{"lovelace", []string{"ada"}},    // last name
		{"bob babbage", []string{"bob"}}, // first and last name
		{"+48 123 456", []string{"ada"}}, // phone typed with spaces, compared on digits
		{"380441", []string{"cyd"}},      // phone digits
		{"ada", []string{"ada", "dup"}},  // email and first name
		{"nobody", nil},                  // nothing
	} {
		r := run(t, usersNS, NewUsersCommand, "--search", tc.search)
		if r.err != nil {
			t.Fatal(r.err)
		}
		var got []string
		if r.out != "" {
			got = names(r.out, 0)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("--search %q lists %v, want %v", tc.search, got, tc.want)
		}
	}
}

func TestUsersStatusFilterKeepsThePanelStatusesAsked(t *testing.T) {
	usersFixture(t)
	got := names(mustRun(t, usersNS, NewUsersCommand, "--status", "new,Inactive"), 0)
	if want := []string{"bob", "cyd"}; !slices.Equal(got, want) {
		t.Errorf("--status new,Inactive lists %v, want %v", got, want)
	}
	r := run(t, usersNS, NewUsersCommand, "--status", "gone")
	if r.err == nil || !strings.Contains(r.err.Error(), "NEW, ACTIVE, INACTIVE, CLOSED, FRAUD") {
		t.Errorf("--status gone: err %v, want one naming the panel's statuses", r.err)
	}
}

func TestUsersColoursBadgesOnlyWhenAsked(t *testing.T) {
	usersFixture(t)
	if out := mustRun(t, usersNS, NewUsersCommand); strings.Contains(out, "\x1b[") {
		t.Errorf("output to a pipe (--color=auto) has ANSI escapes:\n%q", out)
	}
	out := mustRun(t, usersNS, NewUsersCommand, "--color=always")
	for _, badge := range []string{"\x1b[32mACTIVE\x1b[0m", "\x1b[34mNEW\x1b[0m", "\x1b[33mINACTIVE\x1b[0m",
		"\x1b[31mFalse (DuplicateEmail)\x1b[0m"} {
		if !strings.Contains(out, badge) {
			t.Errorf("--color=always: no %q in\n%q", badge, out)
		}
	}
	// Colour is added after padding: without the escapes, the table is the plain one.
	if plain := mustRun(t, usersNS, NewUsersCommand, "--color=never"); stripANSI(out) != plain {
		t.Errorf("coloured table misaligned:\n%s\nwant\n%s", stripANSI(out), plain)
	}
}

func stripANSI(s string) string {
	for {
		i := strings.Index(s, "\x1b[")
		if i < 0 {
			return s
		}
		j := strings.IndexByte(s[i:], 'm')
		s = s[:i] + s[i+j+1:]
	}
}

func TestUsersJSONIsAListOfUserObjects(t *testing.T) {
	usersFixture(t)
	var list struct {
		Kind  string    `json:"kind"`
		Items []v1.User `json:"items"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, usersNS, NewUsersCommand, "-o", "json", "--status", "ACTIVE")), &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "List" || len(list.Items) != 1 || list.Items[0].Name != "ada" || list.Items[0].Kind != "User" ||
		list.Items[0].Status.ClientCount != 2 {
		t.Errorf("-o json: %+v, want a List holding User ada with its status", list)
	}
}
