package puqctl

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/tenancy"
)

// imported is one panel user as import writes it: the User, its ClientMemberships and the values
// of its Secrets (which never reach the output directory unless --secrets-dir says so).
type imported struct {
	record      *panel.Record
	user        *v1.User
	memberships []*v1.ClientMembership
	// hash is the panel's password hash as stored; seed the authenticator seed ("" without TOTP).
	hash, seed string
	// setsLanguage is the language applying writes once, for a panel user whose language is
	// unset (imported with --include-unset-language); "" when applying writes nothing.
	setsLanguage string
}

// skipped is a panel user import leaves out, and why: each problem names the field and what the
// spec cannot say about it (never a hash or a seed).
type skipped struct {
	uuid, email string
	problems    []string
}

// importRules are the operator settings import must mirror to know what the operator would write.
type importRules struct {
	namespace string
	operator  controller.Options
	grants    tenancy.Grants
	// owners are the UUIDs of the selected panel users, by the clients they own: a policy granting
	// clients by their owner (ownedFromNamespace) grants them when their owner is imported too.
	owners map[string]bool
	// includeUnsetLanguage imports a panel user whose language is unset although applying writes
	// the default language (--include-unset-language).
	includeUnsetLanguage bool
}

// The patterns of the User API (api/v1alpha1/user_types.go), checked here so that a user the
// apiserver would refuse is reported instead of written.
var (
	emailAtom       = `[^\x00-\x20\x7F\x{85}\p{Z}()<>\[\]:;@\\,".]+`
	emailPattern    = regexp.MustCompile(`^` + emailAtom + `(\.` + emailAtom + `)*@` + emailAtom + `(\.` + emailAtom + `)*$`)
	phonePattern    = regexp.MustCompile(`^\+[0-9]{7,15}$`)
	languagePattern = regexp.MustCompile(`^[a-z]{2}(_[A-Z]{2})?$`)
)

// planImport decides, from the panel alone, what import writes for one panel user, or why it
// cannot: every field the panel holds must be one the spec says exactly, so that applying the
// output changes nothing in the panel (the operator's own comparison, Snapshot.Differences,
// is the last word).
func planImport(rules importRules, r *panel.Record, snap *panel.Snapshot) (*imported, *skipped) {
	skip := &skipped{uuid: r.UUID, email: r.Email}
	problem := func(format string, args ...any) { skip.problems = append(skip.problems, fmt.Sprintf(format, args...)) }
	if snap == nil || !snap.Exists {
		problem("the panel user went away while it was read")
		return nil, skip
	}
	u := snap.User()
	name := userName(r.Email, r.UUID)

	if b := r.Binding; b != nil && (b.Namespace != rules.namespace || b.Name != name) {
		problem("already managed by User %s/%s", b.Namespace, b.Name)
	}
	state := stateOf(u, problem)
	checkFields(rules, u, r.PasswordHash, problem)

	spec := v1.UserSpec{
		Email: u.Email, FirstName: u.FirstName, LastName: u.LastName, Phone: u.Phone, Language: u.Language,
		AdminNotes: u.AdminNotes, EmailVerified: u.EmailVerified, PhoneVerified: u.PhoneVerified, State: state,
		PasswordSecretRef: v1.SecretKeyReference{Name: name + "-password", Key: v1.PasswordKeyHash},
		Adoption:          v1.AdoptionIfExists, DeletionPolicy: v1.UserDeletionRetain,
	}
	seed := ""
	if u.TwoFactor {
		spec.TwoFactor.Enabled = true
		switch u.DefaultMethod {
		case panel.MethodTOTP:
			spec.TwoFactor.Method = v1.TwoFactorMethodTOTP
			seed = defaultSeed(r)
		case panel.MethodEmail:
			spec.TwoFactor.Method = v1.TwoFactorMethodEmail
		}
		if spec.TwoFactor.Method != v1.TwoFactorMethodTOTP && !u.EmailVerified {
			problem("two_factor is on with email codes but the email is not verified: the spec cannot say that")
		}
	}
	user := &v1.User{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "User"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: rules.namespace, Labels: importedLabel()},
		Spec:       spec,
	}
	desired := controller.DesiredPanelUser(rules.operator, user, seed)
	diff := snap.Differences(desired)
	setsLanguage := ""
	if u.Language == "" && slices.Contains(diff, "language") {
		// Unset in the panel (most people who never opened the client area): the operator writes
		// the default, as the panel's client-area middleware does at the first visit.
		diff = slices.DeleteFunc(diff, func(c string) bool { return c == "language" })
		setsLanguage = desired.DefaultLanguage
		if !rules.includeUnsetLanguage {
			problem("language is unset in the panel: applying would write language = %s once (one UPDATE and one "+
				"activity row, as the panel's client area does at the first visit); --include-unset-language imports it "+
				"anyway", setsLanguage)
		}
	}
	if len(diff) > 0 {
		problem("the operator would rewrite %s: the panel holds a value the spec cannot say exactly", strings.Join(diff, ", "))
	}
	if err := rules.grants.Adoption(u.Email); err != nil {
		problem("namespace %s may not adopt it: %v", rules.namespace, err)
	}

	out := &imported{record: r, user: user, hash: r.PasswordHash, seed: seed, setsLanguage: setsLanguage}
	for _, m := range r.Memberships {
		cm, err := membership(rules, name, m)
		if err != nil {
			problem("client %s: %v", m.ClientUUID, err)
			continue
		}
		out.memberships = append(out.memberships, cm)
	}
	if len(skip.problems) > 0 {
		return nil, skip
	}
	return out, nil
}

// stateOf is spec.state for the panel's status and disable: Active, Inactive, or unset for a new
// user (the panel makes it active at the first login); a problem when the spec cannot say it.
func stateOf(u panel.User, problem func(string, ...any)) v1.UserState {
	var state v1.UserState
	switch {
	case u.Status == "active" && !u.Disabled:
		state = v1.UserStateActive
	case u.Status == "inactive" && u.Disabled:
		state = v1.UserStateInactive
	case u.Status == "new" && !u.Disabled:
		// Left to the panel, which makes a new user active at their first login.
	case u.Status == "closed" || u.Status == "fraud":
		problem("status %s: a User's state is Active or Inactive", u.Status)
	default:
		problem("status %s with disable %t: the panel's status and disable disagree", u.Status, u.Disabled)
	}
	return state
}

// checkFields adds a problem for each field the User API would refuse, and for a password the
// operator would not take as a hash.
func checkFields(rules importRules, u panel.User, hash string, problem func(string, ...any)) {
	if l := len(u.Email); l < 3 || l > 255 || !emailPattern.MatchString(u.Email) {
		problem("email %q is not an address spec.email accepts", u.Email)
	}
	if u.FirstName == "" {
		problem("firstname is empty; spec.firstName is required")
	}
	if u.LastName == "" {
		problem("lastname is empty; spec.lastName is required")
	}
	if u.Phone != "" && !phonePattern.MatchString(u.Phone) {
		problem("phone %q is not E.164 (+ and 7 to 15 digits)", u.Phone)
	}
	switch {
	case u.Language != "" && !languagePattern.MatchString(u.Language):
		problem("language %q is not a locale spec.language accepts", u.Language)
	case u.Language != "" && !slices.Contains(rules.operator.Languages, u.Language):
		// The operator would stop the User with UnsupportedLanguage.
		problem("language %q is not one of the operator's --languages (%s)", u.Language,
			strings.Join(rules.operator.Languages, ", "))
	}
	if h, err := password.PanelForm(hash); err != nil {
		problem("password: the stored value is not a bcrypt hash")
	} else if cost, _ := password.CostOf(h); !rules.operator.HashCosts.Contains(cost) {
		problem("password: a bcrypt hash of cost %d, outside the operator's accepted costs %s", cost, rules.operator.HashCosts)
	}
}

// membership is the ClientMembership of one client_x_user row, or why the spec cannot say it.
func membership(rules importRules, userName string, m panel.RecordMembership) (*v1.ClientMembership, error) {
	spec := v1.ClientMembershipSpec{UserRef: v1.LocalUserReference{Name: userName},
		Client: v1.ClientSelector{UUID: m.ClientUUID}, Owner: m.Owner, DeletionPolicy: v1.MembershipDeletionRetain}
	perms := make([]v1.Permission, 0, len(m.Permissions))
	for _, k := range m.Permissions {
		perms = append(perms, v1.Permission(k))
	}
	switch {
	case m.Owner && !slices.Equal(m.Permissions, panel.PermissionKeys):
		return nil, fmt.Errorf("the owner lacks some permissions; the operator gives an owner all of them")
	case !m.Owner && !knownPermissions(m.Raw):
		return nil, fmt.Errorf("permissions hold keys the spec does not know")
	case !m.Owner:
		spec.Permissions = perms
	}
	req := tenancy.MembershipRequest{ClientUUID: m.ClientUUID, Owner: m.Owner, Permissions: spec.Permissions}
	if rules.owners[strings.ToLower(m.ClientUUID)] {
		req.OwnerNamespace = rules.namespace
	}
	if err := rules.grants.Membership(req); err != nil {
		return nil, fmt.Errorf("namespace %s may not hold this membership: %w", rules.namespace, err)
	}
	return &v1.ClientMembership{
		TypeMeta: metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "ClientMembership"},
		ObjectMeta: metav1.ObjectMeta{Name: userName + "-" + shortID(m.ClientUUID), Namespace: rules.namespace,
			Labels: importedLabel()},
		Spec: spec,
	}, nil
}

// knownPermissions reports whether a stored permissions value is a JSON list of known keys only
// (an empty or NULL value is none).
func knownPermissions(raw string) bool {
	if strings.TrimSpace(raw) == "" {
		return true
	}
	var keys []string
	if err := json.Unmarshal([]byte(raw), &keys); err != nil {
		return false
	}
	for _, k := range keys {
		if !slices.Contains(panel.PermissionKeys, k) {
			return false
		}
	}
	return true
}

// defaultSeed is the seed of the user's default totp row ("" when none).
func defaultSeed(r *panel.Record) string {
	for _, v := range r.Verifications {
		if v.Type == string(panel.MethodTOTP) && v.Default {
			return v.Secret
		}
	}
	return ""
}

var notNameChar = regexp.MustCompile(`[^a-z0-9]+`)

// userName is the User's name for a panel user: its email in DNS-label form, cut to 40
// characters, and the first 8 characters of its UUID, so that it stays the same on every run
// whatever else the panel holds, and two emails that read alike never share a name.
func userName(email, uuid string) string {
	base := strings.Trim(notNameChar.ReplaceAllString(strings.ToLower(email), "-"), "-")
	if len(base) > 40 {
		base = strings.TrimRight(base[:40], "-")
	}
	if base == "" {
		base = "user"
	}
	return base + "-" + shortID(uuid)
}

// shortID is the first 8 hex digits of a UUID, or of the SHA-256 of anything else.
func shortID(id string) string {
	hexOnly := strings.ReplaceAll(strings.ToLower(id), "-", "")
	if len(hexOnly) >= 8 && strings.Trim(hexOnly, "0123456789abcdef") == "" {
		return hexOnly[:8]
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:4])
}

// labelOn is the value of the import label.
const labelOn = "true"

// importedLabel marks what import wrote (v1.LabelImported).
func importedLabel() map[string]string { return map[string]string{v1.LabelImported: labelOn} }
