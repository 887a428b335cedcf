package faults

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
)

// The clauses of the invariant. A Violation names the one it breaks.
const (
	// ClauseOneUser: the panel holds exactly one user per User that exists and is Ready, bound
	// to it, matching its spec, and the person can log in with the password in its Secret; and
	// no panel user the operator made belongs to no User.
	ClauseOneUser = "one panel user per User"
	// ClauseBindings: no binding names a resource that no longer exists, or a panel user that
	// does not.
	ClauseBindings = "no binding to a resource that is gone"
	// ClauseAssociations: every association of a panel user the operator manages belongs to a
	// ClientMembership that exists, and every Ready ClientMembership's association matches it.
	ClauseAssociations = "no association without its ClientMembership"
	// ClauseActivity: no activity row is written twice for one change: one create and at most one
	// delete per panel user, no two identical rows (password writes aside: two in one second
	// are identical), no more password writes than rotations and no more column updates than
	// edits the world made.
	ClauseActivity = "no duplicate activity rows"
	// ClauseConditions: every User and ClientMembership is Ready at its generation, or Ready=False
	// with a reason naming a cause that holds.
	ClauseConditions = "Ready or a named cause"
	// ClauseFinalizers: an object being deleted holds its finalizer only with a condition naming
	// why, and only while that cause holds.
	ClauseFinalizers = "no finalizer without its cause"
)

// Clauses are the invariant's clauses, in the order they are checked.
var Clauses = []string{ClauseOneUser, ClauseBindings, ClauseAssociations, ClauseActivity, ClauseConditions,
	ClauseFinalizers}

// Violation is one way the world breaks the invariant.
type Violation struct {
	Clause string
	What   string
}

func (v Violation) String() string { return v.Clause + ": " + v.What }

// Snapshot is one look at the world: the objects of its namespace and the panel's rows.
type Snapshot struct {
	Users       []v1.User
	Memberships []v1.ClientMembership
	// Passwords are the cleartext passwords of the namespace's Secrets, by Secret name.
	Passwords  map[string]string
	PanelUsers []PanelUser
	Bindings   []Binding
	Activity   []Activity
	Links      []Link
	// Unreachable is why the panel database did not answer the way the manager reaches it; empty
	// when it did.
	Unreachable string
	// Logins are the panel's answers to a login of each Ready User with its Secret's password,
	// by User name; nil when not tried.
	Logins map[string]testdb.LoginResult
}

// PanelUser is a users row, as the invariant reads it.
type PanelUser struct {
	UUID, Email, FirstName, LastName, Status, Language string
	Disable                                            bool
}

// Binding is a puq_operator_bindings row.
type Binding struct {
	UserUUID, Namespace, Name, ResourceUID, Instance string
}

// Activity is an activity_logs row about a panel user.
type Activity struct {
	ModelUUID, Action, Old, New string
}

// Link is a client_x_user row.
type Link struct {
	UserUUID, ClientUUID string
	Owner                bool
	Permissions          []string
}

// Rows is the number of panel rows the snapshot holds.
func (s *Snapshot) Rows() int {
	return len(s.PanelUsers) + len(s.Bindings) + len(s.Activity) + len(s.Links)
}

// Look reads the world once: the namespace's Users, ClientMemberships and Secrets from the API
// server, and the panel's users, bindings, activity rows about users and associations.
func (w *World) Look(ctx context.Context) (*Snapshot, error) {
	s := &Snapshot{Passwords: map[string]string{}}
	var users v1.UserList
	if err := w.K8s.List(ctx, &users, client.InNamespace(w.Namespace)); err != nil {
		return nil, fmt.Errorf("cannot list Users: %w", err)
	}
	s.Users = users.Items
	var memberships v1.ClientMembershipList
	if err := w.K8s.List(ctx, &memberships, client.InNamespace(w.Namespace)); err != nil {
		return nil, fmt.Errorf("cannot list ClientMemberships: %w", err)
	}
	s.Memberships = memberships.Items
	var secrets corev1.SecretList
	if err := w.K8s.List(ctx, &secrets, client.InNamespace(w.Namespace)); err != nil {
		return nil, fmt.Errorf("cannot list Secrets: %w", err)
	}
	for _, sec := range secrets.Items {
		if pw, ok := sec.Data["password"]; ok {
			s.Passwords[sec.Name] = string(pw)
		}
	}
	if err := w.reach(ctx); err != nil {
		s.Unreachable = err.Error()
	}
	db := w.Panel.Root
	err := query(ctx, db, "SELECT `uuid`, `email`, `firstname`, COALESCE(`lastname`, ''), `status`, "+
		"COALESCE(`language`, ''), `disable` FROM users", nil, func(r *sql.Rows) error {
		var p PanelUser
		if err := r.Scan(&p.UUID, &p.Email, &p.FirstName, &p.LastName, &p.Status, &p.Language, &p.Disable); err != nil {
			return err
		}
		s.PanelUsers = append(s.PanelUsers, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read the panel users: %w", err)
	}
	err = query(ctx, db, "SELECT user_uuid, namespace, name, resource_uid, instance_id FROM puq_operator_bindings", nil,
		func(r *sql.Rows) error {
			var b Binding
			if err := r.Scan(&b.UserUUID, &b.Namespace, &b.Name, &b.ResourceUID, &b.Instance); err != nil {
				return err
			}
			s.Bindings = append(s.Bindings, b)
			return nil
		})
	if err != nil && !isNoSuchTable(err) { // no manager has run against the database yet
		return nil, fmt.Errorf("cannot read the bindings: %w", err)
	}
	err = query(ctx, db, "SELECT model_uuid, COALESCE(action, ''), COALESCE(model_old_data, ''), "+
		"COALESCE(model_new_data, '') FROM activity_logs WHERE model_type = ?", []any{panel.UserModelType},
		func(r *sql.Rows) error {
			var a Activity
			if err := r.Scan(&a.ModelUUID, &a.Action, &a.Old, &a.New); err != nil {
				return err
			}
			s.Activity = append(s.Activity, a)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("cannot read the activity rows: %w", err)
	}
	err = query(ctx, db, "SELECT user_uuid, client_uuid, `owner`, COALESCE(`permissions`, '[]') FROM client_x_user", nil,
		func(r *sql.Rows) error {
			var l Link
			var perms string
			if err := r.Scan(&l.UserUUID, &l.ClientUUID, &l.Owner, &perms); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(perms), &l.Permissions); err != nil {
				return fmt.Errorf("permissions of user %s on client %s are not a JSON array: %w", l.UserUUID, l.ClientUUID, err)
			}
			s.Links = append(s.Links, l)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("cannot read the associations: %w", err)
	}
	return s, nil
}

func query(ctx context.Context, db *sql.DB, q string, args []any, each func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func isNoSuchTable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1146
}

// TryLogins asks the panel, through the PHP login helper, whether each User that is Ready and
// not being deleted can log in with the password its Secret holds, and records the answers.
func (w *World) TryLogins(ctx context.Context, s *Snapshot) error {
	s.Logins = map[string]testdb.LoginResult{}
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	todo := make(chan v1.User)
	for range 2 {
		wg.Go(func() {
			for u := range todo {
				pw, ok := s.Passwords[u.Spec.PasswordSecretRef.Name]
				if !ok {
					continue // no cleartext password: the login cannot be tried, and the User cannot be Ready
				}
				res, err := testdb.CanLogIn(ctx, w.Panel.Root, u.Spec.Email, pw, "")
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("cannot try the login of User %s: %w", u.Name, err)
				}
				s.Logins[u.Name] = res
				mu.Unlock()
			}
		})
	}
	for _, u := range s.Users {
		if u.DeletionTimestamp.IsZero() && readyNow(u.Status.Conditions, u.Status.ObservedGeneration, u.Generation) {
			todo <- u
		}
	}
	close(todo)
	wg.Wait()
	return firstErr
}

// readyNow reports whether an object is Ready at its current generation.
func readyNow(conds []metav1.Condition, observed, generation int64) bool {
	c := meta.FindStatusCondition(conds, v1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && observed == generation
}

// Evaluate checks the snapshot against every clause and returns the violations, in clause order.
func (w *World) Evaluate(s *Snapshot) []Violation {
	e := &evaluation{w: w, s: s, usersByUID: map[types.UID]*v1.User{}, usersByName: map[string]*v1.User{},
		panelByUUID: map[string]*PanelUser{}, bindingOf: map[string]*Binding{}, linkOf: map[link]*Link{}}
	for i := range s.Users {
		e.usersByUID[s.Users[i].UID] = &s.Users[i]
		e.usersByName[s.Users[i].Name] = &s.Users[i]
	}
	for i := range s.PanelUsers {
		e.panelByUUID[s.PanelUsers[i].UUID] = &s.PanelUsers[i]
	}
	for i := range s.Bindings {
		e.bindingOf[s.Bindings[i].UserUUID] = &s.Bindings[i]
	}
	for i := range s.Links {
		e.linkOf[link{s.Links[i].UserUUID, s.Links[i].ClientUUID}] = &s.Links[i]
	}
	e.oneUser()
	e.bindings()
	e.associations()
	e.activity()
	e.conditions()
	e.finalizers()
	return e.out
}

type evaluation struct {
	w           *World
	s           *Snapshot
	usersByUID  map[types.UID]*v1.User
	usersByName map[string]*v1.User
	panelByUUID map[string]*PanelUser
	bindingOf   map[string]*Binding
	linkOf      map[link]*Link
	out         []Violation
}

func (e *evaluation) add(clause, format string, args ...any) {
	e.out = append(e.out, Violation{Clause: clause, What: fmt.Sprintf(format, args...)})
}

// ownedBy is the User a binding of this operator instance names, by UID; nil when none exists.
func (e *evaluation) ownedBy(b *Binding) *v1.User {
	if b == nil || b.Instance != e.w.Instance {
		return nil
	}
	u := e.usersByUID[types.UID(b.ResourceUID)]
	if u == nil || u.Namespace != b.Namespace || u.Name != b.Name {
		return nil
	}
	return u
}

func (e *evaluation) oneUser() {
	bound := map[types.UID][]*PanelUser{}
	for i := range e.s.PanelUsers {
		p := &e.s.PanelUsers[i]
		if u := e.ownedBy(e.bindingOf[p.UUID]); u != nil {
			bound[u.UID] = append(bound[u.UID], p)
			continue
		}
		if e.w.isForeignUser(p.UUID) {
			continue
		}
		e.add(ClauseOneUser, "panel user %s (%s) belongs to no User that exists (binding: %s): a login with no "+
			"resource behind it", p.UUID, p.Email, describeBinding(e.bindingOf[p.UUID]))
	}
	for i := range e.s.Users {
		u := &e.s.Users[i]
		mine := bound[u.UID]
		if len(mine) > 1 {
			e.add(ClauseOneUser, "User %s is bound to %d panel users", u.Name, len(mine))
		}
		if !u.DeletionTimestamp.IsZero() || !readyNow(u.Status.Conditions, u.Status.ObservedGeneration, u.Generation) {
			continue
		}
		if len(mine) == 0 {
			e.add(ClauseOneUser, "User %s is Ready, but no panel user is bound to it", u.Name)
			continue
		}
		p := mine[0]
		if u.Status.UUID != p.UUID {
			e.add(ClauseOneUser, "User %s says status.uuid %q, but the panel user bound to it is %s", u.Name, u.Status.UUID, p.UUID)
		}
		for _, d := range specDiff(u, p) {
			e.add(ClauseOneUser, "User %s is Ready, but its panel user %s differs: %s", u.Name, p.UUID, d)
		}
		if e.s.Logins != nil {
			if what := loginDiff(u, e.s.Logins[u.Name], e.s.Passwords); what != "" {
				e.add(ClauseOneUser, "User %s is Ready, but %s", u.Name, what)
			}
		}
	}
}

func describeBinding(b *Binding) string {
	if b == nil {
		return "none"
	}
	return fmt.Sprintf("%s/%s uid %s instance %s", b.Namespace, b.Name, b.ResourceUID, b.Instance)
}

// specDiff names the managed columns of the panel user that do not match the User's spec.
func specDiff(u *v1.User, p *PanelUser) []string {
	var out []string
	diff := func(col, have, want string) {
		if have != want {
			out = append(out, fmt.Sprintf("%s is %q, the spec says %q", col, have, want))
		}
	}
	if !strings.EqualFold(p.Email, u.Spec.Email) {
		diff("email", p.Email, u.Spec.Email)
	}
	diff("firstname", p.FirstName, u.Spec.FirstName)
	diff("lastname", p.LastName, u.Spec.LastName)
	diff("language", p.Language, u.Spec.Language)
	switch u.Spec.State {
	case v1.UserStateActive:
		diff("status", p.Status, "active")
		diff("disable", fmt.Sprint(p.Disable), "false")
	case v1.UserStateInactive:
		diff("status", p.Status, "inactive")
		diff("disable", fmt.Sprint(p.Disable), "true")
	default: // the panel's own: new until the first login, then active
		if p.Status != "new" && p.Status != "active" {
			diff("status", p.Status, "new or active")
		}
	}
	return out
}

// loginDiff says how the panel's answer to the person's login differs from what the spec and
// the Secret promise: a login (Active or unset state), a request for the code (two-factor), or
// "Your account is disabled" after the password was accepted (Inactive). Empty when it matches.
func loginDiff(u *v1.User, res testdb.LoginResult, passwords map[string]string) string {
	if _, ok := passwords[u.Spec.PasswordSecretRef.Name]; !ok {
		return "" // a hash-only Secret: no cleartext to try
	}
	switch {
	case u.Spec.State == v1.UserStateInactive:
		if res.OK || res.Message != "Your account is disabled" {
			return fmt.Sprintf("the panel answers its login with %d %q, want the account disabled", res.Status, res.Message)
		}
	case u.Spec.TwoFactor.Enabled:
		if !res.TwoFactorRequired {
			return fmt.Sprintf("the panel answers its login with %d %q, want a request for the code", res.Status, res.Message)
		}
	case !res.OK:
		return fmt.Sprintf("the person cannot log in with the password in its Secret: the panel answers %d %q",
			res.Status, res.Message)
	}
	return ""
}

func (e *evaluation) bindings() {
	for i := range e.s.Bindings {
		b := &e.s.Bindings[i]
		if b.Instance != e.w.Instance {
			continue
		}
		if e.ownedBy(b) == nil {
			e.add(ClauseBindings, "panel user %s is bound to User %s/%s (uid %s), which no longer exists", b.UserUUID,
				b.Namespace, b.Name, b.ResourceUID)
		}
		if e.panelByUUID[b.UserUUID] == nil {
			e.add(ClauseBindings, "the binding of User %s/%s names panel user %s, which does not exist", b.Namespace, b.Name,
				b.UserUUID)
		}
	}
}

func (e *evaluation) associations() {
	held := map[link]bool{}
	for _, m := range e.s.Memberships {
		if m.Status.UserUUID != "" && m.Status.ClientUUID != "" {
			held[link{m.Status.UserUUID, m.Status.ClientUUID}] = true
		}
	}
	for _, l := range e.s.Links {
		key := link{l.UserUUID, l.ClientUUID}
		if held[key] || e.w.isForeignLink(key) || e.w.isForeignUser(l.UserUUID) {
			continue
		}
		e.add(ClauseAssociations, "panel user %s is associated with client %s (owner: %v), and no ClientMembership "+
			"holds that association", l.UserUUID, l.ClientUUID, l.Owner)
	}
	for _, m := range e.s.Memberships {
		if !m.DeletionTimestamp.IsZero() || !readyNow(m.Status.Conditions, m.Status.ObservedGeneration, m.Generation) {
			continue
		}
		l := e.linkOf[link{m.Status.UserUUID, m.Status.ClientUUID}]
		switch {
		case l == nil:
			e.add(ClauseAssociations, "ClientMembership %s is Ready, but the panel has no association of user %q with "+
				"client %q", m.Name, m.Status.UserUUID, m.Status.ClientUUID)
		case l.Owner != m.Spec.Owner:
			e.add(ClauseAssociations, "ClientMembership %s is Ready with owner %v, but the panel says owner %v", m.Name,
				m.Spec.Owner, l.Owner)
		case !m.Spec.Owner && !samePermissions(l.Permissions, m.Spec.Permissions):
			e.add(ClauseAssociations, "ClientMembership %s is Ready with permissions %v, but the panel has %v", m.Name,
				m.Spec.Permissions, l.Permissions)
		}
	}
}

func samePermissions(have []string, want []v1.Permission) bool {
	w := make([]string, 0, len(want))
	for _, p := range want {
		w = append(w, string(p))
	}
	h := slices.Clone(have)
	slices.Sort(h)
	slices.Sort(w)
	return slices.Equal(h, w)
}

func (e *evaluation) activity() {
	type tally struct {
		creates, deletes, passwords, columns int
		email                                string
	}
	per := map[string]*tally{}
	identical := map[Activity]int{}
	for _, a := range e.s.Activity {
		t := per[a.ModelUUID]
		if t == nil {
			t = &tally{}
			per[a.ModelUUID] = t
		}
		// Two password writes in one second carry the same JSON (the panel's leaves the hash
		// out), so only the ledger can tell a repeated one: identical rows count for the rest.
		if a.Action != "update" || !onlyUpdatedAt(a.New) {
			identical[a]++
		}
		switch a.Action {
		case "create":
			t.creates++
			var row struct {
				Email string `json:"email"`
			}
			if json.Unmarshal([]byte(a.New), &row) == nil {
				t.email = row.Email
			}
		case "delete":
			t.deletes++
		case "update":
			if onlyUpdatedAt(a.New) {
				t.passwords++
			} else {
				t.columns++
			}
		}
	}
	for a, n := range identical {
		if n > 1 {
			e.add(ClauseActivity, "%d identical %q rows about panel user %s: one change written %d times", n, a.Action,
				a.ModelUUID, n)
		}
	}
	ids := make([]string, 0, len(per))
	for id := range per {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		t := per[id]
		if t.creates > 1 {
			e.add(ClauseActivity, "panel user %s has %d create rows", id, t.creates)
		}
		if t.deletes > 1 {
			e.add(ClauseActivity, "panel user %s has %d delete rows", id, t.deletes)
		}
		c, known := e.w.recorded(t.email)
		if !known {
			continue
		}
		if t.passwords > c.rotations {
			e.add(ClauseActivity, "panel user %s (%s) has %d password writes for %d rotations of its Secret", id, t.email,
				t.passwords, c.rotations)
		}
		if t.columns > c.edits {
			e.add(ClauseActivity, "panel user %s (%s) has %d column updates for %d edits of its User", id, t.email,
				t.columns, c.edits)
		}
	}
}

// onlyUpdatedAt reports whether an update's new data holds updated_at alone: a password write
// (the panel's JSON leaves the hash out).
func onlyUpdatedAt(newData string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(newData), &m) != nil {
		return false
	}
	_, ok := m["updated_at"]
	return ok && len(m) == 1
}

func (e *evaluation) conditions() {
	for i := range e.s.Users {
		u := &e.s.Users[i]
		if u.DeletionTimestamp.IsZero() {
			e.judge(ClauseConditions, "User "+u.Name, u.Status.Conditions, u.Status.ObservedGeneration, u.Generation,
				func(c *metav1.Condition) (bool, string) { return e.userCause(u, c) })
		}
	}
	for i := range e.s.Memberships {
		m := &e.s.Memberships[i]
		if m.DeletionTimestamp.IsZero() {
			e.judge(ClauseConditions, "ClientMembership "+m.Name, m.Status.Conditions, m.Status.ObservedGeneration,
				m.Generation, func(c *metav1.Condition) (bool, string) { return e.membershipCause(m, c) })
		}
	}
}

// judge checks that an object not being deleted is Ready at its generation or names a cause that
// holds.
func (e *evaluation) judge(clause, what string, conds []metav1.Condition, observed, generation int64,
	cause func(*metav1.Condition) (bool, string)) {
	c := meta.FindStatusCondition(conds, v1.ConditionReady)
	switch {
	case c == nil:
		e.add(clause, "%s has no Ready condition", what)
	case c.Status == metav1.ConditionTrue && observed != generation:
		e.add(clause, "%s is Ready for generation %d, not its current %d", what, observed, generation)
	case c.Status == metav1.ConditionTrue:
	default:
		if holds, why := cause(c); !holds {
			e.add(clause, "%s is not Ready (%s: %q), and %s", what, c.Reason, c.Message, why)
		}
	}
}

func (e *evaluation) finalizers() {
	for i := range e.s.Users {
		u := &e.s.Users[i]
		if !u.DeletionTimestamp.IsZero() && slices.Contains(u.Finalizers, controller.UserFinalizer) {
			e.held("User "+u.Name, u.Status.Conditions, func(c *metav1.Condition) (bool, string) { return e.userCause(u, c) })
		}
	}
	for i := range e.s.Memberships {
		m := &e.s.Memberships[i]
		if !m.DeletionTimestamp.IsZero() && slices.Contains(m.Finalizers, controller.MembershipFinalizer) {
			e.held("ClientMembership "+m.Name, m.Status.Conditions,
				func(c *metav1.Condition) (bool, string) { return e.membershipCause(m, c) })
		}
	}
}

func (e *evaluation) held(what string, conds []metav1.Condition, cause func(*metav1.Condition) (bool, string)) {
	c := meta.FindStatusCondition(conds, v1.ConditionReady)
	if c == nil || c.Status == metav1.ConditionTrue {
		e.add(ClauseFinalizers, "%s is being deleted and holds its finalizer, and no condition names why", what)
		return
	}
	if holds, why := cause(c); !holds {
		e.add(ClauseFinalizers, "%s is being deleted and holds its finalizer for %s (%q), and %s", what, c.Reason,
			c.Message, why)
	}
}

// commonCause judges the reasons both kinds share; decided is false for a reason it leaves to
// the kind.
func (e *evaluation) commonCause(c *metav1.Condition) (holds bool, why string, decided bool) {
	switch {
	case c.Message == "":
		return false, "its condition has no message", true
	case c.Reason == "" || c.Reason == v1.ReasonReconciled || c.Reason == v1.ReasonProgressing:
		return false, "its reason names no cause (still in progress)", true
	case c.Reason == v1.ReasonDatabaseUnavailable:
		if e.s.Unreachable == "" {
			return false, "the panel database answers", true
		}
		return true, "", true
	}
	return false, "", false
}

// userCause reports whether the cause a User's Ready=False condition names holds.
func (e *evaluation) userCause(u *v1.User, c *metav1.Condition) (bool, string) {
	if holds, why, decided := e.commonCause(c); decided {
		return holds, why
	}
	switch c.Reason {
	case v1.ReasonDeletionBlocked:
		for _, m := range e.s.Memberships {
			if m.Spec.UserRef.Name == u.Name {
				return true, ""
			}
		}
		for _, l := range e.s.Links {
			if u.Status.UUID != "" && l.UserUUID == u.Status.UUID {
				return true, ""
			}
		}
		return false, "the User has no ClientMembership and its panel user no client left"
	case v1.ReasonDuplicateEmail:
		for _, o := range e.s.Users {
			if o.UID != u.UID && strings.EqualFold(o.Spec.Email, u.Spec.Email) {
				return true, ""
			}
		}
		return false, "no other User has its email"
	}
	return true, "" // a cause the checker cannot verify, named in the message
}

// membershipCause reports whether the cause a ClientMembership's Ready=False condition names holds.
func (e *evaluation) membershipCause(m *v1.ClientMembership, c *metav1.Condition) (bool, string) {
	if holds, why, decided := e.commonCause(c); decided {
		return holds, why
	}
	u := e.usersByName[m.Spec.UserRef.Name]
	switch c.Reason {
	case v1.ReasonUserNotFound:
		if u != nil {
			return false, "its User exists"
		}
	case v1.ReasonUserNotReady:
		if u != nil && readyNow(u.Status.Conditions, u.Status.ObservedGeneration, u.Generation) {
			return false, "its User is Ready"
		}
	case v1.ReasonOwnerRemovalBlocked:
		l := e.linkOf[link{m.Status.UserUUID, m.Status.ClientUUID}]
		if l == nil || !l.Owner {
			return false, "its user no longer owns the client"
		}
	}
	return true, ""
}

// Figures are what one invariant check measured.
type Figures struct {
	// Converged: the invariant held before the deadline.
	Converged bool
	// Converge is the time from the call to the start of the look at which the invariant held
	// (the login checks of that look excluded); the deadline when it never held.
	Converge time.Duration
	Deadline time.Duration
	// Looks counts the looks taken.
	Looks int
	// Users, Memberships, Rows and Logins are what the last look checked.
	Users, Memberships, Rows, Logins int
	// NotReady counts the objects of the last look that were not Ready, by reason.
	NotReady map[string]int
	// Violations are those of the last look (none when it converged).
	Violations []Violation
}

func (f Figures) String() string {
	return fmt.Sprintf("converged=%v in %.1fs (deadline %s, %d looks); checked %d Users, %d ClientMemberships, "+
		"%d panel rows, %d logins; not Ready: %v", f.Converged, f.Converge.Seconds(), f.Deadline, f.Looks, f.Users,
		f.Memberships, f.Rows, f.Logins, f.NotReady)
}

// CheckInvariant looks at the world every 250 ms until the invariant holds, or the deadline
// passes, and returns what it measured. The logins (php) are tried only on a look where every
// other check passed. A deadline passed fails the test with the violations of the last look.
func CheckInvariant(t testing.TB, w *World, deadline time.Duration) Figures {
	t.Helper()
	f := Check(context.Background(), w, deadline)
	if !f.Converged {
		t.Errorf("the invariant does not hold %s after the check began (its deadline); the last of %d looks found %d "+
			"violations (%s):\n%s", deadline, f.Looks, len(f.Violations), byClause(f.Violations), describe(f.Violations, 25))
	}
	t.Logf("invariant: %s", f)
	return f
}

// Check is CheckInvariant without a test: it returns the figures, and the violations of the last
// look when the invariant never held.
func Check(ctx context.Context, w *World, deadline time.Duration) Figures {
	start := time.Now()
	f := Figures{Deadline: deadline}
	for {
		look := time.Now()
		f.Looks++
		s, v := w.Violations(ctx, true)
		if s != nil {
			f.Users, f.Memberships, f.Rows = len(s.Users), len(s.Memberships), s.Rows()
			f.Logins, f.NotReady = len(s.Logins), notReady(s)
		}
		f.Violations = v
		if len(v) == 0 {
			f.Converged, f.Converge = true, look.Sub(start)
			return f
		}
		if time.Since(start) > deadline {
			f.Converge = time.Since(start)
			return f
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Violations looks at the world once and evaluates it; with logins, a look that passes every
// other check tries the logins too and is evaluated again. A look that fails is a violation.
func (w *World) Violations(ctx context.Context, logins bool) (*Snapshot, []Violation) {
	s, err := w.Look(ctx)
	if err != nil {
		return nil, []Violation{{Clause: "look", What: err.Error()}}
	}
	v := w.Evaluate(s)
	if len(v) > 0 || !logins {
		return s, v
	}
	if err := w.TryLogins(ctx, s); err != nil {
		return s, []Violation{{Clause: ClauseOneUser, What: err.Error()}}
	}
	return s, w.Evaluate(s)
}

func notReady(s *Snapshot) map[string]int {
	out := map[string]int{}
	count := func(conds []metav1.Condition) {
		c := meta.FindStatusCondition(conds, v1.ConditionReady)
		switch {
		case c == nil:
			out["none"]++
		case c.Status != metav1.ConditionTrue:
			out[c.Reason]++
		}
	}
	for _, u := range s.Users {
		count(u.Status.Conditions)
	}
	for _, m := range s.Memberships {
		count(m.Status.Conditions)
	}
	return out
}

// byClause counts violations by clause, in clause order.
func byClause(v []Violation) string {
	var parts []string
	for _, c := range append([]string{"look"}, Clauses...) {
		if n := len(slices.DeleteFunc(slices.Clone(v), func(x Violation) bool { return x.Clause != c })); n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, c))
		}
	}
	return strings.Join(parts, ", ")
}

func describe(v []Violation, n int) string {
	lines := make([]string, 0, min(len(v), n)+1)
	for i, x := range v {
		if i == n {
			lines = append(lines, fmt.Sprintf("... and %d more", len(v)-n))
			break
		}
		lines = append(lines, "  "+x.String())
	}
	return strings.Join(lines, "\n")
}
