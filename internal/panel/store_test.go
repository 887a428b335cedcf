package panel_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pquerna/otp/totp"

	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
)

var mariadb *testdb.MariaDB

func TestMain(m *testing.M) { testdb.Main(m, &mariadb) }

// fixture is one engine under test: the store and a direct connection to the same database.
type fixture struct {
	store *panel.Store
	db    *sql.DB
	clock *time.Time
	opts  panel.Options
	ops   *opLog
}

// opLog records the operations a store reports to Options.Observe, by name.
type opLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *opLog) observe(op string, _ time.Duration, _ error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op)
}

// since returns the operations recorded after the first n.
func (l *opLog) since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ops[n:])
}

func (l *opLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ops)
}

// engines runs a test on MariaDB and on SQLite, each with a fresh panel database.
func engines(t *testing.T, test func(t *testing.T, f fixture)) {
	enginesWith(t, panel.Options{}, test)
}

// enginesWith is engines with the store options in base (DSN and password file are the engine's).
func enginesWith(t *testing.T, base panel.Options, test func(t *testing.T, f fixture)) {
	t.Run("mariadb", func(t *testing.T) {
		p, err := mariadb.NewPanel(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Root.Close() })
		opts := base
		opts.DSN, opts.PasswordFile = p.DSN, p.PasswordFile
		test(t, open(t, opts, p.Root))
	})
	t.Run("sqlite", func(t *testing.T) {
		opts := base
		opts.DSN = "sqlite://" + filepath.Join(t.TempDir(), "panel.db")
		test(t, open(t, opts, nil))
	})
}

func open(t *testing.T, opts panel.Options, direct *sql.DB) fixture {
	t.Helper()
	clock := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	f := fixture{clock: &clock, ops: &opLog{}}
	opts.Now = func() time.Time { return *f.clock }
	opts.Observe = f.ops.observe
	f.opts = opts
	s, err := panel.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open %s: %v", opts.DSN, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f.store = s
	f.db = direct
	if f.db == nil {
		f.db = s.DB()
	}
	return f
}

// reopen opens the fixture's database again, as a restarted operator would.
func reopen(t *testing.T, f fixture) *panel.Store {
	t.Helper()
	s, err := panel.Open(context.Background(), f.opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// tick moves the store's clock on, so a write would show in updated_at.
func (f fixture) tick() { *f.clock = f.clock.Add(time.Minute) }

func (f fixture) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// serverWrites is MariaDB's count of the statements that write or open a transaction, server-wide
// (the tests of this package run one at a time); on SQLite, which keeps no such count, -1.
func (f fixture) serverWrites(t *testing.T) int {
	t.Helper()
	if f.store.Engine() != panel.EngineMySQL {
		return -1
	}
	return f.count(t, "SELECT SUM(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN "+
		"('COM_INSERT', 'COM_UPDATE', 'COM_DELETE', 'COM_REPLACE', 'COM_BEGIN', 'COM_COMMIT', 'COM_ROLLBACK')")
}

func (f fixture) str(t *testing.T, query string, args ...any) string {
	t.Helper()
	var v sql.NullString
	if err := f.db.QueryRow(query, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v.String
}

func (f fixture) insertClient(t *testing.T, company, first, last, tax, status string) string {
	t.Helper()
	id := uuid.NewString()
	_, err := f.db.Exec("INSERT INTO clients (uuid, firstname, lastname, company_name, tax_id, status, created_at, updated_at) "+
		"VALUES (?, ?, ?, ?, ?, ?, '2026-01-01 00:00:00', '2026-01-01 00:00:00')", id, first, last, company, tax, status)
	if err != nil {
		t.Fatalf("insert client: %v", err)
	}
	return id
}

// testHash is a bcrypt hash made the way Go makes it ($2a$), at the minimum cost for speed.
func testHash(t *testing.T, cleartext string) string {
	t.Helper()
	h, err := password.Hash(cleartext, 4)
	if err != nil {
		t.Fatal(err)
	}
	return "$2a$" + h[4:]
}

// aliceAndBob creates two panel users: alice as asked, and bob (jane's fields, his own email, no
// phone).
func (f fixture) aliceAndBob(t *testing.T, alice panel.DesiredUser) (panel.User, panel.User) {
	t.Helper()
	a, err := f.store.CreateUser(context.Background(), alice, testHash(t, "correct horse battery"), nil)
	if err != nil {
		t.Fatal(err)
	}
	bobSpec := jane()
	bobSpec.Email, bobSpec.Phone = "bob@example.com", ""
	b, err := f.store.CreateUser(context.Background(), bobSpec, testHash(t, "correct horse battery"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func jane() panel.DesiredUser {
	return panel.DesiredUser{Email: "jane.doe@example.com", FirstName: "Jane", LastName: "Doe", Phone: "+48123456789",
		Language: "en", AdminNotes: "ticket OPS-1", PhoneVerified: true, EmailVerified: true}
}

func TestCreateUserWritesThePanelsRows(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		u, err := f.store.CreateUser(ctx, jane(), testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := uuid.Parse(u.UUID); err != nil || strings.ToLower(u.UUID) != u.UUID || len(u.UUID) != 36 {
			t.Errorf("uuid %q is not a lowercase hyphenated UUID", u.UUID)
		}
		got := f.str(t, "SELECT CONCAT(email,'|',phone_number,'|',status,'|',two_factor,'|',`disable`,'|',firstname,'|',"+
			"lastname,'|',email_verified,'|',phone_verified,'|',language,'|',admin_notes,'|',created_at,'|',updated_at) "+
			"FROM users WHERE uuid = ?", u.UUID)
		if f.store.Engine() == panel.EngineSQLite {
			got = f.str(t, "SELECT email||'|'||phone_number||'|'||status||'|'||two_factor||'|'||`disable`||'|'||firstname||'|'||"+
				"lastname||'|'||email_verified||'|'||phone_verified||'|'||language||'|'||admin_notes||'|'||created_at||'|'||updated_at "+
				"FROM users WHERE uuid = ?", u.UUID)
		}
		want := "jane.doe@example.com|+48123456789|new|0|0|Jane|Doe|1|1|en|ticket OPS-1|2026-11-27 10:00:00|2026-11-27 10:00:00"
		if got != want {
			t.Errorf("users row\n got %s\nwant %s", got, want)
		}
		if h := f.str(t, "SELECT password FROM users WHERE uuid = ?", u.UUID); !strings.HasPrefix(h, "$2y$04$") {
			t.Error("the stored hash does not have the $2y$ prefix PHP needs")
		}
		// The email verification row, in the panel's own form, and the only default.
		if n := f.count(t, "SELECT COUNT(*) FROM verifications WHERE user_uuid = ? AND type = 'email' AND value = ? "+
			"AND device_name = 'system' AND verified = 1 AND `default` = 1 AND expires_at IS NOT NULL", u.UUID, "jane.doe@example.com"); n != 1 {
			t.Errorf("want one default, verified email row, got %d", n)
		}
		if code := f.str(t, "SELECT secret FROM verifications WHERE user_uuid = ?", u.UUID); len(code) != 6 {
			t.Errorf("email verification secret %q is not 6 digits", code)
		}
		// The activity row, in the panel's form, without the password.
		var level, action, desc, modelType, modelUUID, newData string
		var oldData, actor sql.NullString
		err = f.db.QueryRow("SELECT level, action, description, model_type, model_uuid, model_old_data, model_new_data, user_uuid "+
			"FROM activity_logs WHERE model_uuid = ?", u.UUID).Scan(&level, &action, &desc, &modelType, &modelUUID, &oldData, &newData, &actor)
		if err != nil {
			t.Fatal(err)
		}
		if level != "notice" || action != "create" || desc != `App\Models\User:`+u.UUID || modelType != `App\Models\User` ||
			oldData.Valid || actor.Valid {
			t.Errorf("activity row = %s %s %s %s old=%v actor=%v", level, action, desc, modelType, oldData, actor)
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(newData), &fields); err != nil {
			t.Fatalf("model_new_data is not JSON: %v", err)
		}
		if fields["email"] != "jane.doe@example.com" || fields["disable"] != false || fields["uuid"] != u.UUID {
			t.Errorf("model_new_data = %s", newData)
		}
		for _, secret := range []string{"password", "remember_token"} {
			if _, ok := fields[secret]; ok {
				t.Errorf("model_new_data holds %s", secret)
			}
		}
		read, err := f.store.FindUserByEmail(ctx, "JANE.DOE@example.com")
		if err != nil || read.UUID != u.UUID || !read.EmailVerified || read.DefaultMethod != panel.MethodEmail || read.Status != "new" {
			t.Errorf("FindUserByEmail = %+v, %v", read, err)
		}
	})
}

func TestApplyUserTwiceWritesNothing(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		d := jane()
		d.State = panel.StateActive
		d.TwoFactor = true
		u, err := f.store.CreateUser(ctx, d, testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		f.tick()
		_, changed, err := f.store.ApplyUser(ctx, u.UUID, d, nil)
		if err != nil || len(changed) != 0 {
			t.Fatalf("first apply of an unchanged user changed %v (%v)", changed, err)
		}
		before := f.str(t, "SELECT updated_at FROM users WHERE uuid = ?", u.UUID)
		logs := f.count(t, "SELECT COUNT(*) FROM activity_logs")
		verif := f.str(t, "SELECT MAX(updated_at) FROM verifications WHERE user_uuid = ?", u.UUID)
		f.tick()
		_, changed, err = f.store.ApplyUser(ctx, u.UUID, d, nil)
		if err != nil || len(changed) != 0 {
			t.Fatalf("second apply changed %v (%v)", changed, err)
		}
		if after := f.str(t, "SELECT updated_at FROM users WHERE uuid = ?", u.UUID); after != before {
			t.Errorf("updated_at moved from %s to %s on a no-op", before, after)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM activity_logs"); n != logs {
			t.Errorf("a no-op wrote %d activity rows", n-logs)
		}
		if v := f.str(t, "SELECT MAX(updated_at) FROM verifications WHERE user_uuid = ?", u.UUID); v != verif {
			t.Errorf("a no-op touched verifications: %s -> %s", verif, v)
		}
	})
}

func TestApplyUserWritesOnlyWhatDiffers(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		u, err := f.store.CreateUser(ctx, jane(), testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		// Columns the operator does not manage are left alone.
		if _, err := f.db.Exec("UPDATE users SET notes = 'her own note', status = 'active' WHERE uuid = ?", u.UUID); err != nil {
			t.Fatal(err)
		}
		f.tick()
		d := jane()
		d.FirstName = "Janet"
		d.Phone = ""
		d.TwoFactor = true
		_, changed, err := f.store.ApplyUser(ctx, u.UUID, d, nil)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(changed, ",") != "phone_number,two_factor,firstname" {
			t.Errorf("changed = %v, want phone_number,two_factor,firstname", changed)
		}
		var phone sql.NullString
		var first, notes, status, updated string
		if err := f.db.QueryRow("SELECT phone_number, firstname, notes, status, updated_at FROM users WHERE uuid = ?", u.UUID).
			Scan(&phone, &first, &notes, &status, &updated); err != nil {
			t.Fatal(err)
		}
		if phone.Valid || first != "Janet" || notes != "her own note" || status != "active" || updated != "2026-11-27 10:01:00" {
			t.Errorf("row = phone %v first %s notes %s status %s updated %s", phone, first, notes, status, updated)
		}
		newData := f.str(t, "SELECT model_new_data FROM activity_logs WHERE action = 'update' AND model_uuid = ?", u.UUID)
		want := `{"phone_number":null,"two_factor":1,"firstname":"Janet","updated_at":"2026-11-27 10:01:00"}`
		if newData != want {
			t.Errorf("model_new_data\n got %s\nwant %s", newData, want)
		}
		oldData := f.str(t, "SELECT model_old_data FROM activity_logs WHERE action = 'update' AND model_uuid = ?", u.UUID)
		if !strings.Contains(oldData, `"firstname":"Jane"`) || strings.Contains(oldData, "password\"") {
			t.Errorf("model_old_data = %s", oldData)
		}
		if lvl := f.str(t, "SELECT level FROM activity_logs WHERE action = 'update'"); lvl != "info" {
			t.Errorf("update level = %s, want info", lvl)
		}
	})
}

func TestStateWritesStatusAndDisable(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		u, err := f.store.CreateUser(ctx, jane(), testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		d := jane()
		d.State = panel.StateInactive
		if _, _, err := f.store.ApplyUser(ctx, u.UUID, d, nil); err != nil {
			t.Fatal(err)
		}
		got, _ := f.store.GetUser(ctx, u.UUID)
		if got.Status != "inactive" || !got.Disabled {
			t.Errorf("inactive: status %s disabled %v", got.Status, got.Disabled)
		}
		d.State = panel.StateActive
		if _, _, err := f.store.ApplyUser(ctx, u.UUID, d, nil); err != nil {
			t.Fatal(err)
		}
		got, _ = f.store.GetUser(ctx, u.UUID)
		if got.Status != "active" || got.Disabled {
			t.Errorf("active: status %s disabled %v", got.Status, got.Disabled)
		}
		changed, err := f.store.DisableUser(ctx, u.UUID)
		if err != nil || !changed {
			t.Fatalf("disable: %v %v", changed, err)
		}
		changed, err = f.store.DisableUser(ctx, u.UUID)
		if err != nil || changed {
			t.Errorf("disabling again changed %v (%v)", changed, err)
		}
	})
}

func TestEmailsCollideIgnoringCaseAndAccents(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		d := jane()
		d.Email = "José@X.io"
		if _, err := f.store.CreateUser(ctx, d, testHash(t, "correct horse battery"), nil); err != nil {
			t.Fatal(err)
		}
		d2 := jane()
		d2.Email, d2.Phone = "jose@x.io", ""
		_, err := f.store.CreateUser(ctx, d2, testHash(t, "correct horse battery"), nil)
		if !errors.Is(err, panel.ErrDuplicateEmail) {
			t.Fatalf("want ErrDuplicateEmail, got %v", err)
		}
		if strings.Contains(err.Error(), "jose@x.io") {
			t.Errorf("the error repeats the value: %v", err)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM users"); n != 1 {
			t.Errorf("a refused create left %d users", n)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM verifications"); n != 1 {
			t.Errorf("a refused create left %d verification rows (half-written)", n)
		}
		found, err := f.store.FindUserByEmail(ctx, "JOSE@x.IO")
		if err != nil || found.Email != "José@X.io" {
			t.Errorf("lookup by folded email = %+v, %v", found, err)
		}
		if panel.NormalizeEmail(" José@X.io ") != panel.NormalizeEmail("jose@x.io") {
			t.Error("NormalizeEmail does not fold like the collation")
		}
	})
}

func TestDuplicatePhoneIsTyped(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		if _, err := f.store.CreateUser(ctx, jane(), testHash(t, "correct horse battery"), nil); err != nil {
			t.Fatal(err)
		}
		d := jane()
		d.Email = "john@example.com"
		_, err := f.store.CreateUser(ctx, d, testHash(t, "correct horse battery"), nil)
		if !errors.Is(err, panel.ErrDuplicatePhone) {
			t.Fatalf("want ErrDuplicatePhone, got %v", err)
		}
	})
}

// TestPhoneTypedWithSpacesInThePanelIsADuplicate: the panel's admin form stores a phone as typed,
// so a row holding "+48 123 456 789" holds +48123456789: creating or changing a user to it fails
// with ErrDuplicatePhone, the typed row is left as it was, and other digits are still free.
func TestPhoneTypedWithSpacesInThePanelIsADuplicate(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		typed := jane()
		typed.Email, typed.Phone = "typed@example.com", "+48999999999"
		holder, err := f.store.CreateUser(ctx, typed, testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		// What the panel's admin form writes: the dial code and the number as typed.
		if _, err := f.db.ExecContext(ctx, "UPDATE users SET phone_number = ? WHERE uuid = ?", "+48 123-456 789",
			holder.UUID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.CreateUser(ctx, jane(), testHash(t, "correct horse battery"), nil); !errors.Is(err, panel.ErrDuplicatePhone) {
			t.Errorf("create with the typed row's digits: want ErrDuplicatePhone, got %v", err)
		}
		john := jane()
		john.Email, john.Phone = "john@example.com", "+48123456780"
		u, err := f.store.CreateUser(ctx, john, testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatalf("create with other digits: %v", err)
		}
		john.Phone = "+48123456789"
		if _, _, err := f.store.ApplyUser(ctx, u.UUID, john, nil); !errors.Is(err, panel.ErrDuplicatePhone) {
			t.Errorf("change to the typed row's digits: want ErrDuplicatePhone, got %v", err)
		}
		if got := f.str(t, "SELECT phone_number FROM users WHERE uuid = ?", u.UUID); got != "+48123456780" {
			t.Errorf("the refused change left phone %q, want +48123456780", got)
		}
		if got := f.str(t, "SELECT phone_number FROM users WHERE uuid = ?", holder.UUID); got != "+48 123-456 789" {
			t.Errorf("the typed row's phone became %q, want it as typed", got)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM users"); n != 2 {
			t.Errorf("panel users = %d, want the typed one and john", n)
		}
	})
}

func TestPasswordIsStoredSoPHPVerifiesIt(t *testing.T) {
	php, err := exec.LookPath("php")
	if err != nil {
		t.Fatal("php not found: the hash check needs php-cli; install it with `apt-get install php-cli`")
	}
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		u, err := f.store.CreateUser(ctx, jane(), testHash(t, "first password 1"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.store.SetPasswordHash(ctx, u.UUID, testHash(t, "second password 2")); err != nil {
			t.Fatal(err)
		}
		stored := f.str(t, "SELECT password FROM users WHERE uuid = ?", u.UUID)
		if !strings.HasPrefix(stored, "$2y$") {
			t.Fatal("stored hash lacks the $2y$ prefix")
		}
		check := func(cleartext string) string {
			// Cleartext and hash go through stdin, never the command line or the test output.
			cmd := exec.Command(php, "-r", `$in = explode("\n", stream_get_contents(STDIN));
echo (password_verify($in[0], $in[1]) ? "verified" : "rejected"), " ", password_get_info($in[1])["algoName"];`)
			cmd.Stdin = strings.NewReader(cleartext + "\n" + stored)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("php failed: %v", err)
			}
			return string(out)
		}
		if got := check("second password 2"); got != "verified bcrypt" {
			t.Errorf("php on the new password: %q, want \"verified bcrypt\"", got)
		}
		if got := check("first password 1"); got != "rejected bcrypt" {
			t.Errorf("php on the old password: %q, want \"rejected bcrypt\"", got)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM activity_logs WHERE model_new_data LIKE '%$2%' OR model_old_data LIKE '%$2%'"); n != 0 {
			t.Errorf("%d activity rows hold a hash", n)
		}
		if err := f.store.SetPasswordHash(ctx, u.UUID, "not-a-hash"); !errors.Is(err, panel.ErrInvalid) {
			t.Errorf("a malformed hash: want ErrInvalid, got %v", err)
		}
	})
}

func TestEmailChangeGetsItsOwnVerificationRow(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		u, err := f.store.CreateUser(ctx, jane(), testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		d := jane()
		d.Email, d.EmailVerified = "jane@new.example.com", false
		if _, _, err := f.store.ApplyUser(ctx, u.UUID, d, nil); err != nil {
			t.Fatal(err)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM verifications WHERE user_uuid = ? AND value = ? AND `default` = 1 AND verified = 0",
			u.UUID, d.Email); n != 1 {
			t.Errorf("want the new email's row as the only default, unverified; got %d", n)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM verifications WHERE user_uuid = ? AND `default` = 1", u.UUID); n != 1 {
			t.Errorf("%d default rows, want exactly 1", n)
		}
		got, _ := f.store.GetUser(ctx, u.UUID)
		if got.EmailVerified || f.str(t, "SELECT email_verified FROM users WHERE uuid = ?", u.UUID) != "0" {
			t.Error("users.email_verified does not follow the new email's row")
		}
		d.EmailVerified = true
		if _, _, err := f.store.ApplyUser(ctx, u.UUID, d, nil); err != nil {
			t.Fatal(err)
		}
		if got, _ := f.store.GetUser(ctx, u.UUID); !got.EmailVerified {
			t.Error("verifying the new email did not show")
		}
	})
}

func TestTOTPRowGivesTheCodesOathtoolExpects(t *testing.T) {
	oathtool, err := exec.LookPath("oathtool")
	if err != nil {
		t.Fatal("oathtool not found: the TOTP check needs it; install it with `apt-get install oathtool`")
	}
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		key, err := totp.Generate(totp.GenerateOpts{Issuer: "PUQcloud", AccountName: "jane.doe@example.com", SecretSize: 20})
		if err != nil {
			t.Fatal(err)
		}
		d := jane()
		d.TwoFactor, d.DefaultMethod, d.TOTPSecret = true, panel.MethodTOTP, key.Secret()
		u, err := f.store.CreateUser(ctx, d, testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if u.DefaultMethod != panel.MethodTOTP || !u.TOTPSecretSet || !u.TwoFactor {
			t.Errorf("user = %+v", u)
		}
		seed := f.str(t, "SELECT secret FROM verifications WHERE user_uuid = ? AND type = 'totp' AND verified = 1 AND `default` = 1", u.UUID)
		if len(seed) != 32 || strings.Trim(seed, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
			t.Fatalf("stored seed is not 32 base32 characters (length %d)", len(seed))
		}
		for attempt := 0; ; attempt++ {
			now := time.Now()
			cmd := exec.Command(oathtool, "--totp", "-b", "-N", now.UTC().Format("2006-01-02 15:04:05 UTC"), seed)
			want, err := cmd.Output()
			if err != nil {
				t.Fatalf("oathtool: %v", err)
			}
			got, err := totp.GenerateCode(seed, now)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(want)) == got {
				break
			}
			if attempt > 0 {
				t.Fatal("the stored seed gives a different code than oathtool computes")
			}
		}
		// Re-applying the same seed writes nothing; a new seed replaces the row.
		if _, changed, err := f.store.ApplyUser(ctx, u.UUID, d, nil); err != nil || len(changed) != 0 {
			t.Errorf("same seed again changed %v (%v)", changed, err)
		}
		key2, _ := totp.Generate(totp.GenerateOpts{Issuer: "PUQcloud", AccountName: "jane.doe@example.com", SecretSize: 20})
		d.TOTPSecret = key2.Secret()
		if _, _, err := f.store.ApplyUser(ctx, u.UUID, d, nil); err != nil {
			t.Fatal(err)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM verifications WHERE user_uuid = ? AND type = 'totp'", u.UUID); n != 1 {
			t.Errorf("%d totp rows after a new seed, want 1", n)
		}
		if f.str(t, "SELECT secret FROM verifications WHERE user_uuid = ? AND type = 'totp'", u.UUID) == seed {
			t.Error("the old seed was kept")
		}
		// Removing it makes the email row the default again.
		d.TwoFactor, d.DefaultMethod, d.TOTPSecret, d.RemoveTOTP = false, panel.MethodEmail, "", true
		if _, _, err := f.store.ApplyUser(ctx, u.UUID, d, nil); err != nil {
			t.Fatal(err)
		}
		got, _ := f.store.GetUser(ctx, u.UUID)
		if got.TOTPSecretSet || got.DefaultMethod != panel.MethodEmail || got.TwoFactor {
			t.Errorf("after removal: %+v", got)
		}
	})
}

func TestUnsetMethodKeepsTheUsersOwnDefault(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		u, err := f.store.CreateUser(ctx, jane(), testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		// The user enrolled an app in the panel themselves.
		if _, err := f.db.Exec("UPDATE verifications SET `default` = 0 WHERE user_uuid = ?", u.UUID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.Exec("INSERT INTO verifications (uuid, user_uuid, type, secret, device_name, verified, `default`) "+
			"VALUES (?, ?, 'totp', 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', 'My phone', 1, 1)", uuid.NewString(), u.UUID); err != nil {
			t.Fatal(err)
		}
		d := jane()
		d.TwoFactor = true
		if _, _, err := f.store.ApplyUser(ctx, u.UUID, d, nil); err != nil {
			t.Fatal(err)
		}
		got, _ := f.store.GetUser(ctx, u.UUID)
		if got.DefaultMethod != panel.MethodTOTP || !got.TOTPSecretSet || !got.TwoFactor {
			t.Errorf("the user's own app was not kept as default: %+v", got)
		}
	})
}

func TestMembershipsFollowThePanelsRules(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		acme := f.insertClient(t, "Acme Hosting Ltd", "Ann", "Smith", "PL123", "active")
		alice, bob := f.aliceAndBob(t, jane())
		found, err := f.store.FindClient(ctx, "", "acme hosting ltd")
		if err != nil || found.UUID != acme || found.Name != "Ann Smith" || found.TaxID != "PL123" {
			t.Fatalf("FindClient by company = %+v, %v", found, err)
		}
		if _, err := f.store.FindClient(ctx, uuid.NewString(), ""); !errors.Is(err, panel.ErrNotFound) {
			t.Errorf("missing client: want ErrNotFound, got %v", err)
		}
		// Associate with permissions given out of order: stored in the panel's order.
		changed, err := f.store.ApplyMembership(ctx, membershipOf(alice.UUID, acme), member("manage-orders", "manage-users"), "")
		if err != nil || !changed {
			t.Fatalf("associate: %v %v", changed, err)
		}
		perms := func(user string) string {
			return f.str(t, "SELECT permissions FROM client_x_user WHERE user_uuid = ? AND client_uuid = ?", user, acme)
		}
		if got := perms(alice.UUID); got != `["manage-users","manage-orders"]` {
			t.Errorf("permissions = %s", got)
		}
		changed, err = f.store.ApplyMembership(ctx, membershipOf(alice.UUID, acme), member("manage-users", "manage-orders"), "")
		if err != nil || changed {
			t.Errorf("same permissions again changed %v (%v)", changed, err)
		}
		if _, err := f.store.ApplyMembership(ctx, membershipOf(alice.UUID, acme), member("manage-invoices"), ""); err != nil {
			t.Fatal(err)
		}
		if got := perms(alice.UUID); got != `["manage-invoices"]` {
			t.Errorf("changed permissions = %s", got)
		}
		if _, err := f.store.ApplyMembership(ctx, membershipOf(alice.UUID, acme), member("root"), ""); !errors.Is(err, panel.ErrInvalid) {
			t.Errorf("unknown permission: want ErrInvalid, got %v", err)
		}
		all := `["modify-master-profile","manage-users","manage-services","manage-domains","manage-invoices",` +
			`"manage-support-tickets","manage-affiliate","manage-orders"]`
		// Alice becomes owner; then Bob takes ownership, as updateOwner does.
		if _, err := f.store.ApplyMembership(ctx, membershipOf(alice.UUID, acme), ownerOf, ""); err != nil {
			t.Fatal(err)
		}
		if got := perms(alice.UUID); got != all {
			t.Errorf("owner permissions = %s", got)
		}
		if _, err := f.store.ApplyMembership(ctx, membershipOf(bob.UUID, acme), ownerOf, ""); err != nil {
			t.Fatal(err)
		}
		if owner, _ := f.store.ClientOwner(ctx, acme); owner != bob.UUID {
			t.Errorf("owner = %s, want bob", owner)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM client_x_user WHERE client_uuid = ? AND owner = 1", acme); n != 1 {
			t.Errorf("%d owners, want 1", n)
		}
		if got := perms(alice.UUID); got != all {
			t.Errorf("previous owner keeps every key; got %s", got)
		}
		// KeepOwner re-asserts the owner the panel has, writing no row of the client, and never
		// makes anyone owner: Alice, no longer owner, is refused with every row as it was.
		rows := func() string {
			var b strings.Builder
			for _, u := range []string{alice.UUID, bob.UUID} {
				for _, col := range []string{"owner", "permissions", "updated_at"} {
					b.WriteString(f.str(t, "SELECT "+col+" FROM client_x_user WHERE user_uuid = ? AND client_uuid = ?", u, acme) + " ")
				}
			}
			return b.String()
		}
		keep, before := panel.Membership{Owner: true, KeepOwner: true}, rows()
		if changed, err := f.store.ApplyMembership(ctx, membershipOf(bob.UUID, acme), keep, ""); err != nil || changed {
			t.Errorf("re-asserting the owner: changed %v, %v; want no change", changed, err)
		}
		if _, err := f.store.ApplyMembership(ctx, membershipOf(alice.UUID, acme), keep, ""); !errors.Is(err, panel.ErrRefused) {
			t.Errorf("KeepOwner for a user who is not the owner: want ErrRefused, got %v", err)
		}
		if after := rows(); after != before {
			t.Errorf("KeepOwner changed the client's rows:\nbefore %s\nafter  %s", before, after)
		}
		// The owner cannot be removed, nor lose the flag without a transfer, nor be deleted.
		err = f.store.RemoveMembership(ctx, membershipOf(bob.UUID, acme))
		if !errors.Is(err, panel.ErrRefused) || !strings.Contains(err.Error(), "Cannot remove owner") {
			t.Errorf("removing the owner: want ErrRefused, got %v", err)
		}
		if _, err := f.store.ApplyMembership(ctx, membershipOf(bob.UUID, acme), member(), ""); !errors.Is(err, panel.ErrRefused) {
			t.Errorf("dropping the owner flag: want ErrRefused, got %v", err)
		}
		if err := f.store.DeleteUser(ctx, alice.UUID); !errors.Is(err, panel.ErrRefused) || !strings.Contains(err.Error(), "Acme Hosting Ltd") {
			t.Errorf("deleting an associated user: want ErrRefused naming the client, got %v", err)
		}
		// The User Clients view.
		clients, err := f.store.UserClients(ctx, bob.UUID)
		if err != nil || len(clients) != 1 || !clients[0].Owner || clients[0].CompanyName != "Acme Hosting Ltd" || clients[0].Status != "active" {
			t.Errorf("UserClients = %+v, %v", clients, err)
		}
		if err := f.store.RemoveMembership(ctx, membershipOf(alice.UUID, acme)); err != nil {
			t.Fatal(err)
		}
		if err := f.store.RemoveMembership(ctx, membershipOf(alice.UUID, acme)); err != nil {
			t.Errorf("removing a row already gone: %v", err)
		}
		if err := f.store.DeleteUser(ctx, alice.UUID); err != nil {
			t.Fatalf("delete after the association is gone: %v", err)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM verifications WHERE user_uuid = ?", alice.UUID); n != 0 {
			t.Errorf("delete left %d verification rows", n)
		}
		if lvl := f.str(t, "SELECT level FROM activity_logs WHERE action = 'delete' AND model_uuid = ?", alice.UUID); lvl != "warning" {
			t.Errorf("delete activity level = %q", lvl)
		}
		if err := f.store.DeleteUser(ctx, alice.UUID); err != nil {
			t.Errorf("deleting a user already gone: %v", err)
		}
	})
}

func TestHostileStringsRoundTripOrAreRefused(t *testing.T) {
	values := []string{
		`O'Brien "the" \ back\slash`,
		`'; DROP TABLE users; --`,
		"emoji 🚀 and 中文",
		strings.Repeat("é", 255),
		`%_ like wildcards`,
	}
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		for i, v := range values {
			d := jane()
			d.Email, d.Phone = fmt.Sprintf("hostile%d@example.com", i), ""
			d.FirstName, d.LastName, d.AdminNotes = v, v, v+"\nline two"
			u, err := f.store.CreateUser(ctx, d, testHash(t, "correct horse battery"), nil)
			if err != nil {
				t.Fatalf("value %d: %v", i, err)
			}
			got, err := f.store.GetUser(ctx, u.UUID)
			if err != nil || got.FirstName != v || got.LastName != v || got.AdminNotes != v+"\nline two" {
				t.Errorf("value %d did not round-trip (%v)", i, err)
			}
		}
		if n := f.count(t, "SELECT COUNT(*) FROM users"); n != len(values) {
			t.Errorf("users = %d", n)
		}
		for name, mutate := range map[string]func(*panel.DesiredUser){
			"NUL":            func(d *panel.DesiredUser) { d.FirstName = "a\x00b" },
			"256 characters": func(d *panel.DesiredUser) { d.LastName = strings.Repeat("x", 256) },
		} {
			d := jane()
			d.Email, d.Phone = "refused@example.com", ""
			mutate(&d)
			if _, err := f.store.CreateUser(ctx, d, testHash(t, "correct horse battery"), nil); !errors.Is(err, panel.ErrInvalid) {
				t.Errorf("%s: want ErrInvalid, got %v", name, err)
			}
		}
		if n := f.count(t, "SELECT COUNT(*) FROM users"); n != len(values) {
			t.Errorf("a refused value left a row: %d users", n)
		}
	})
}

// A binding is found for the resource that holds it: by UID in this cluster (or in a row written
// before clusters were recorded), by name in the previous cluster. An earlier resource's binding of
// the same name, and another cluster's, are found for nobody, and a rebinding records the cluster.
func TestBindingsAreFoundByUIDInThisClusterAndByNameInThePreviousOne(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		uid, old := uuid.NewString(), uuid.NewString()
		bind := func(email, cluster, resourceUID string) string {
			t.Helper()
			d := jane()
			d.Email, d.Phone = email, ""
			u, err := f.store.CreateUser(ctx, d, testHash(t, "correct horse battery"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.store.Bind(ctx, panel.Binding{UserUUID: u.UUID, Namespace: "team-a", Name: "jane", ResourceUID: resourceUID,
				InstanceID: "prod", ClusterID: cluster}); err != nil {
				t.Fatal(err)
			}
			return u.UUID
		}
		own := bind("own@example.com", "cluster-b", uid)
		stale := bind("stale@example.com", "cluster-b", old)
		previous := bind("previous@example.com", "cluster-a", old)
		f.tick()
		legacy := bind("legacy@example.com", "", uid)
		if _, err := f.store.GetBinding(ctx, own); err != nil {
			t.Fatal(err)
		}
		found := func(o panel.Operator, resourceUID string) []string {
			t.Helper()
			bs, err := f.store.BindingsOf(ctx, o, "team-a", "jane", resourceUID)
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]string, 0, len(bs))
			for _, b := range bs {
				ids = append(ids, b.UserUUID)
			}
			slices.Sort(ids)
			return ids
		}
		sorted := func(ids ...string) []string { slices.Sort(ids); return ids }
		here := panel.Operator{Instance: "prod", Cluster: "cluster-b"}
		rebuilt := panel.Operator{Instance: "prod", Cluster: "cluster-b", PreviousCluster: "cluster-a"}
		for _, c := range []struct {
			what string
			o    panel.Operator
			uid  string
			want []string
		}{
			{"the resource, by UID (and the row from before clusters were recorded)", here, uid, sorted(own, legacy)},
			{"a re-created resource of the same name", here, uuid.NewString(), nil},
			{"the resource in another instance", panel.Operator{Instance: "staging", Cluster: "cluster-b"}, uid, nil},
			{"the resource, claiming the previous cluster's by name", rebuilt, uid, sorted(own, legacy, previous)},
			{"a new object of the name, claiming the previous cluster's", rebuilt, uuid.NewString(), []string{previous}},
		} {
			if got := found(c.o, c.uid); !slices.Equal(got, c.want) {
				t.Errorf("BindingsOf %s = %v, want %v (own %s, stale %s, previous %s, legacy %s)", c.what, got, c.want,
					own, stale, previous, legacy)
			}
		}
		latest, err := f.store.FindBinding(ctx, here, "team-a", "jane", uid)
		if err != nil || latest.UserUUID != legacy {
			t.Errorf("FindBinding = %+v, %v; want the most recently written of its own, %s", latest, err, legacy)
		}
		if b, err := f.store.FindBinding(ctx, here, "team-a", "jane", uuid.NewString()); !errors.Is(err, panel.ErrNotFound) {
			t.Errorf("FindBinding of a re-created resource = %+v, %v; want ErrNotFound", b, err)
		}
		// The legacy row, rebound, records the cluster.
		b, _ := f.store.GetBinding(ctx, legacy)
		b.ClusterID = "cluster-b"
		if err := f.store.Bind(ctx, b); err != nil {
			t.Fatal(err)
		}
		if got, err := f.store.GetBinding(ctx, legacy); err != nil || got != b {
			t.Errorf("after rebinding: %+v, %v; want %+v", got, err, b)
		}
		if err := f.store.Unbind(ctx, legacy); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.GetBinding(ctx, legacy); !errors.Is(err, panel.ErrNotFound) {
			t.Errorf("after Unbind: %v", err)
		}
	})
}

// CreateUser binds the new user in its own transaction: a failed create leaves no binding, a
// successful one never exists unbound.
func TestCreateUserBindsInTheSameTransaction(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		b := panel.Binding{Namespace: "team-a", Name: "jane", ResourceUID: uuid.NewString(), InstanceID: "prod", SecretVersion: "s/1"}
		u, err := f.store.CreateUser(ctx, jane(), testHash(t, "correct horse battery"), &b)
		if err != nil {
			t.Fatal(err)
		}
		b.UserUUID = u.UUID
		if got, err := f.store.GetBinding(ctx, u.UUID); err != nil || got != b {
			t.Errorf("binding = %+v, %v; want %+v", got, err, b)
		}
		dup := jane()
		dup.Phone = ""
		other := panel.Binding{Namespace: "team-b", Name: "jane", ResourceUID: uuid.NewString(), InstanceID: "prod"}
		if _, err := f.store.CreateUser(ctx, dup, testHash(t, "correct horse battery"), &other); !errors.Is(err, panel.ErrDuplicateEmail) {
			t.Fatalf("duplicate: want ErrDuplicateEmail, got %v", err)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM puq_operator_bindings"); n != 1 {
			t.Errorf("a failed create left %d bindings, want the first user's only", n)
		}
	})
}

func TestOpenUpgradesAnOlderBindingTable(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		// The first release's table, without secret_version.
		if _, err := f.db.Exec("DROP TABLE puq_operator_bindings"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.Exec("CREATE TABLE puq_operator_bindings (user_uuid VARCHAR(36) NOT NULL PRIMARY KEY, " +
			"namespace VARCHAR(253) NOT NULL, name VARCHAR(253) NOT NULL, resource_uid VARCHAR(36) NOT NULL, " +
			"instance_id VARCHAR(253) NOT NULL, created_at TEXT NULL, updated_at TEXT NULL)"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.Exec("INSERT INTO puq_operator_bindings VALUES ('u1', 'ns', 'jane', 'uid', 'default', NULL, NULL)"); err != nil {
			t.Fatal(err)
		}
		// The membership binding table before cluster_id.
		if _, err := f.db.Exec("DROP TABLE puq_operator_membership_bindings"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.Exec("CREATE TABLE puq_operator_membership_bindings (user_uuid VARCHAR(36) NOT NULL, " +
			"client_uuid VARCHAR(36) NOT NULL, namespace VARCHAR(253) NOT NULL, name VARCHAR(253) NOT NULL, " +
			"resource_uid VARCHAR(36) NOT NULL, instance_id VARCHAR(253) NOT NULL, created_at DATETIME NULL, " +
			"updated_at DATETIME NULL, PRIMARY KEY (user_uuid, client_uuid))"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.Exec("INSERT INTO puq_operator_membership_bindings VALUES ('u1', 'c1', 'ns', 'm', 'uid', 'default', " +
			"NULL, NULL)"); err != nil {
			t.Fatal(err)
		}
		if err := f.store.Close(); err != nil {
			t.Fatal(err)
		}
		reopened := reopen(t, f)
		b, err := reopened.GetBinding(ctx, "u1")
		if err != nil || b.Name != "jane" || b.SecretVersion != "" || b.ClusterID != "" {
			t.Fatalf("after the upgrade: %+v, %v", b, err)
		}
		b.ClusterID = "cluster-b"
		if err := reopened.Bind(ctx, b); err != nil {
			t.Fatal(err)
		}
		if got, err := reopened.GetBinding(ctx, "u1"); err != nil || got != b {
			t.Errorf("the upgraded table does not keep the cluster: %+v, %v", got, err)
		}
		here := panel.Operator{Instance: "default", Cluster: "cluster-b"}
		bound, err := reopened.BoundMemberships(ctx, here, "ns", "m", "uid")
		if err != nil || len(bound) != 1 || bound[0].Binding.ClusterID != "" {
			t.Errorf("the membership binding after the upgrade: %+v, %v; want the row, with no cluster", bound, err)
		}
	})
}

func TestSchemaCheckNamesWhatIsMissing(t *testing.T) {
	ctx := context.Background()
	p, err := mariadb.NewPanel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Root.Close() }()
	if _, err := p.Root.Exec("ALTER TABLE users DROP COLUMN two_factor"); err != nil {
		t.Fatal(err)
	}
	_, err = panel.Open(ctx, panel.Options{DSN: p.DSN, PasswordFile: p.PasswordFile})
	want := "table users lacks column two_factor: is this a PUQcloud database?"
	if !errors.Is(err, panel.ErrSchema) || !strings.Contains(err.Error(), want) {
		t.Errorf("want a schema error naming users.two_factor, got %v", err)
	}
	empty, err := mariadb.NewDatabase(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = empty.Root.Close() }()
	_, err = panel.Open(ctx, panel.Options{DSN: empty.DSN, PasswordFile: empty.PasswordFile})
	if !errors.Is(err, panel.ErrSchema) || !strings.Contains(err.Error(), "table users is missing") {
		t.Errorf("want a schema error naming the users table, got %v", err)
	}
	// The check never creates a panel table on MySQL.
	if n := countTables(t, empty.Root); n != 0 {
		t.Errorf("Open created %d tables in a non-panel database", n)
	}
}

func countTables(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOpenRejectsBadSettingsClearly(t *testing.T) {
	ctx := context.Background()
	cases := map[string]struct {
		opts panel.Options
		want error
		text string
	}{
		"unknown scheme":     {panel.Options{DSN: "postgres://x"}, panel.ErrInvalid, "mysql:// or sqlite://"},
		"password in DSN":    {panel.Options{DSN: "mysql://u:hunter2@tcp(127.0.0.1:1)/db"}, panel.ErrInvalid, "must not hold a password"},
		"unreachable server": {panel.Options{DSN: "mysql://u@tcp(127.0.0.1:1)/db"}, panel.ErrUnavailable, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := panel.Open(ctx, tc.opts)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("want %v containing %q, got %v", tc.want, tc.text, err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Error("the error repeats the password")
			}
		})
	}
}

func TestStoreReportsAnOutageAsUnavailable(t *testing.T) {
	ctx := context.Background()
	p, err := mariadb.NewPanel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Root.Close() }()
	s, err := panel.Open(ctx, panel.Options{DSN: p.DSN, PasswordFile: p.PasswordFile})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	u, err := s.CreateUser(ctx, jane(), testHash(t, "correct horse battery"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := mariadb.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetUser(ctx, u.UUID)
	if startErr := mariadb.Start(); startErr != nil {
		t.Fatalf("restart mariadb: %v", startErr)
	}
	if !errors.Is(err, panel.ErrUnavailable) {
		t.Errorf("with the server down: want ErrUnavailable, got %v", err)
	}
	if _, err := s.GetUser(ctx, u.UUID); err != nil {
		t.Errorf("after restart: %v", err)
	}
}

// A snapshot is the same user, binding and clients the single-purpose reads return, for many
// users in one query; a matching snapshot lets ApplyUser write nothing without a transaction, and
// a snapshot taken before a raw SQL edit does not hide the edit.
func TestSnapshotsReadWhatTheLockedPathReads(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		d := jane()
		d.TwoFactor, d.DefaultMethod, d.TOTPSecret = true, panel.MethodTOTP, "JBSWY3DPEHPK3PXP"
		alice, bob := f.aliceAndBob(t, d)
		zeta := f.insertClient(t, "Zeta Sp. z o.o.", "Zed", "Zee", "PL2", "active")
		acme := f.insertClient(t, "acme hosting", "Ann", "Smith", "PL1", "new")
		beta := f.insertClient(t, "Ätna Labs", "Bea", "Beta", "PL3", "active")
		for _, c := range []struct {
			client string
			owner  bool
		}{{acme, false}, {zeta, true}, {beta, false}} {
			if _, err := f.store.ApplyMembership(ctx, membershipOf(alice.UUID, c.client),
				panel.Membership{Owner: c.owner, Permissions: []string{"manage-users"}}, ""); err != nil {
				t.Fatal(err)
			}
		}
		bind := panel.Binding{UserUUID: alice.UUID, Namespace: "team", Name: "alice", ResourceUID: "uid-1", InstanceID: "op",
			SecretVersion: "s/1"}
		if err := f.store.Bind(ctx, bind); err != nil {
			t.Fatal(err)
		}
		missing := uuid.NewString()
		snaps, err := f.store.Snapshots(ctx, []string{alice.UUID, bob.UUID, missing})
		if err != nil {
			t.Fatal(err)
		}
		a, b, m := snaps[alice.UUID], snaps[bob.UUID], snaps[missing]
		if !a.Exists || !b.Exists || m == nil || m.Exists || m.Binding != nil {
			t.Fatalf("exists: alice %v bob %v missing %+v", a.Exists, b.Exists, m)
		}
		if a.Binding == nil || *a.Binding != bind || b.Binding != nil {
			t.Errorf("bindings: alice %+v bob %+v", a.Binding, b.Binding)
		}
		locked, err := f.store.GetUser(ctx, alice.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if a.User() != locked {
			t.Errorf("snapshot user\n got %+v\nwant %+v", a.User(), locked)
		}
		clients, err := f.store.UserClients(ctx, alice.UUID)
		if err != nil {
			t.Fatal(err)
		}
		order := make([]string, 0, len(a.Clients))
		for _, c := range a.Clients {
			order = append(order, c.CompanyName)
		}
		if strings.Join(order, ",") != "Zeta Sp. z o.o.,acme hosting,Ätna Labs" || fmt.Sprint(a.Clients) != fmt.Sprint(clients) {
			t.Errorf("snapshot clients %v, UserClients %v", a.Clients, clients)
		}
		if len(b.Clients) != 0 {
			t.Errorf("bob has clients %v", b.Clients)
		}
		// Matching: one read, no transaction, nothing written.
		f.tick()
		logs := f.count(t, "SELECT COUNT(*) FROM activity_logs")
		if _, ok := a.Matches(d); !ok {
			t.Fatal("the snapshot of an unchanged user does not match its spec")
		}
		ops, writes := f.ops.len(), f.serverWrites(t)
		if _, changed, err := f.store.ApplyUser(ctx, alice.UUID, d, a); err != nil || len(changed) != 0 {
			t.Fatalf("apply with a matching snapshot changed %v (%v)", changed, err)
		}
		if got := f.ops.since(ops); strings.Join(got, ",") != "read panel users" {
			t.Errorf("apply with a matching snapshot ran %q, want one read of the snapshot", got)
		}
		if n := f.serverWrites(t); n != writes {
			t.Errorf("apply with a matching snapshot ran %d writing or transaction statements", n-writes)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM activity_logs"); n != logs {
			t.Errorf("a matching snapshot wrote %d activity rows", n-logs)
		}
		// Every kind of difference is seen: a column, the TOTP seed, the default method, the email
		// verification.
		for name, edit := range map[string]func(*panel.DesiredUser){
			"column":   func(d *panel.DesiredUser) { d.LastName = "Smith" },
			"seed":     func(d *panel.DesiredUser) { d.TOTPSecret = "KRSXG5CTMVRXEZLU" },
			"default":  func(d *panel.DesiredUser) { d.DefaultMethod, d.RemoveTOTP, d.TOTPSecret = panel.MethodEmail, true, "" },
			"verified": func(d *panel.DesiredUser) { d.EmailVerified = false },
		} {
			changed := d
			edit(&changed)
			if _, ok := a.Matches(changed); ok {
				t.Errorf("%s: the snapshot matches a spec it differs from", name)
			}
		}
		// A raw SQL edit after the snapshot: the snapshot is stale but still matches the spec, since
		// it describes the row as it was. ApplyUser must not trust it: it finds the edit and repairs it.
		if _, err := f.db.Exec("UPDATE users SET firstname = 'Mallory' WHERE uuid = ?", alice.UUID); err != nil {
			t.Fatal(err)
		}
		if _, ok := a.Matches(d); !ok {
			t.Fatal("the stale snapshot does not match: this case would not test staleness")
		}
		_, changed, err := f.store.ApplyUser(ctx, alice.UUID, d, a)
		if err != nil || strings.Join(changed, ",") != "firstname" {
			t.Errorf("apply with a stale snapshot after a raw edit changed %v (%v), want firstname", changed, err)
		}
		if got := f.str(t, "SELECT firstname FROM users WHERE uuid = ?", alice.UUID); got != "Jane" {
			t.Errorf("firstname = %s after the repair", got)
		}
	})
}

// commits is MariaDB's count of committed transactions, server-wide; -1 on SQLite.
func (f fixture) commits(t *testing.T) int {
	t.Helper()
	if f.store.Engine() != panel.EngineMySQL {
		return -1
	}
	return f.count(t, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'COM_COMMIT'")
}

// totpRow is the user's totp verification row, column by column in table order (NULL as "NULL"),
// with the secret shown only as whether it is the seed, so no seed reaches the test output.
func (f fixture) totpRow(t *testing.T, userUUID, seed string) string {
	t.Helper()
	cols := []string{"`type`", "`value`", "CASE WHEN `secret` = ? THEN 'the seed' ELSE 'another secret' END", "`device_name`",
		"`verified`", "`default`", "`expires_at`", "`last_used_at`", "`created_at`", "`updated_at`"}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := f.db.QueryRow("SELECT "+strings.Join(cols, ", ")+" FROM verifications WHERE user_uuid = ? AND type = 'totp'",
		seed, userUUID).Scan(ptrs...); err != nil {
		t.Fatalf("read the totp row: %v", err)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = v.String
		if !v.Valid {
			out[i] = "NULL"
		}
	}
	return strings.Join(out, "|")
}

// serverStatements is MariaDB's count of each named statement kind, server-wide (COM_UPDATE ...).
func (f fixture) serverStatements(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, name := range []string{"COM_INSERT", "COM_UPDATE", "COM_DELETE"} {
		out[name] = f.count(t, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = ?", name)
	}
	return out
}

func TestTOTPRowIsWrittenAsThePanelsEnrolmentWritesIt(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		opts := f.opts
		opts.TOTPDeviceName = "PUQcloud (work)"
		s, err := panel.Open(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		d := jane()
		d.TwoFactor, d.DefaultMethod, d.TOTPSecret = true, panel.MethodTOTP, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
		u, err := s.CreateUser(ctx, d, testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := "totp|PUQcloud (work)|the seed|PUQcloud (work)|1|1|NULL|2026-11-27 10:00:00|2026-11-27 10:00:00|2026-11-27 10:00:00"
		if got := f.totpRow(t, u.UUID, d.TOTPSecret); got != want {
			t.Errorf("totp row\n got %s\nwant %s", got, want)
		}
		// A resync later writes nothing: last_used_at stays the enrolment's (or the panel's own).
		f.tick()
		snap, err := s.Snapshot(ctx, u.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := snap.Matches(d); !ok {
			t.Error("the snapshot of a user just written does not match its spec")
		}
		writes := f.serverWrites(t)
		if _, changed, err := s.ApplyUser(ctx, u.UUID, d, snap); err != nil || len(changed) != 0 {
			t.Errorf("same seed again changed %v (%v)", changed, err)
		}
		if w := f.serverWrites(t); w != writes {
			t.Errorf("the no-op apply wrote %d statements", w-writes)
		}
		if got := f.totpRow(t, u.UUID, d.TOTPSecret); got != want {
			t.Errorf("totp row after a no-op apply\n got %s\nwant %s", got, want)
		}
	})
}

func TestTOTPRowWithoutDeviceNameIsCompletedOnce(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		d := jane()
		d.TwoFactor, d.DefaultMethod, d.TOTPSecret = true, panel.MethodTOTP, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
		u, err := f.store.CreateUser(ctx, d, testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		// The row as an older operator wrote it: no value, never used.
		if _, err := f.db.Exec("UPDATE verifications SET `value` = NULL, `last_used_at` = NULL WHERE user_uuid = ? AND type = 'totp'",
			u.UUID); err != nil {
			t.Fatal(err)
		}
		f.tick()
		snap, err := f.store.Snapshot(ctx, u.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := snap.Matches(d); ok {
			t.Error("a totp row without a device name matches the spec; the resync would never complete it")
		}
		var before map[string]int
		if f.store.Engine() == panel.EngineMySQL {
			before = f.serverStatements(t)
		}
		if _, changed, err := f.store.ApplyUser(ctx, u.UUID, d, nil); err != nil || !slices.Equal(changed, []string{"totp"}) {
			t.Errorf("completing the row changed %v (%v), want [totp]", changed, err)
		}
		if before != nil {
			after := f.serverStatements(t)
			for name, want := range map[string]int{"COM_INSERT": 0, "COM_UPDATE": 1, "COM_DELETE": 0} {
				if got := after[name] - before[name]; got != want {
					t.Errorf("%s: %d statements, want %d", name, got, want)
				}
			}
		}
		want := "totp|" + panel.DefaultTOTPDeviceName + "|the seed|" + panel.DefaultTOTPDeviceName +
			"|1|1|NULL|2026-11-27 10:00:00|2026-11-27 10:00:00|2026-11-27 10:01:00"
		if got := f.totpRow(t, u.UUID, d.TOTPSecret); got != want {
			t.Errorf("completed totp row\n got %s\nwant %s", got, want)
		}
		// Once: the next resync writes nothing.
		f.tick()
		if snap, err = f.store.Snapshot(ctx, u.UUID); err != nil {
			t.Fatal(err)
		}
		writes := f.serverWrites(t)
		if _, changed, err := f.store.ApplyUser(ctx, u.UUID, d, snap); err != nil || len(changed) != 0 {
			t.Errorf("a second apply changed %v (%v)", changed, err)
		}
		if w := f.serverWrites(t); w != writes {
			t.Errorf("the second apply wrote %d statements", w-writes)
		}
		if got := f.totpRow(t, u.UUID, d.TOTPSecret); got != want {
			t.Errorf("totp row after the second apply\n got %s\nwant %s", got, want)
		}
	})
}

// An empty language leaves a person's own enabled choice alone and otherwise writes the panel's
// default client locale, the value its client-area middleware would save at the next visit: a
// NULL, empty or disabled language never survives an apply, so the two never write in turn.
func TestEmptyLanguageKeepsAnEnabledChoiceAndElseWritesTheDefault(t *testing.T) {
	engines(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		d := jane()
		d.Language = ""
		d.ClientLanguages, d.DefaultLanguage = []string{"en", "uk", "pl", "fr"}, "uk"
		u, err := f.store.CreateUser(ctx, d, testHash(t, "correct horse battery"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.str(t, "SELECT language FROM users WHERE uuid = ?", u.UUID); got != "uk" {
			t.Errorf("a new user with an empty language got %q, want the default uk", got)
		}
		for _, c := range []struct {
			name         string
			panel        any // the panel's language before the apply; nil for NULL
			spec         string
			want         string
			wantActivity int
		}{
			{"NULL becomes the default", nil, "", "uk", 1},
			{"empty becomes the default", "", "", "uk", 1},
			{"an enabled choice is kept", "pl", "", "pl", 0},
			{"a locale the panel does not offer becomes the default", "xx", "", "uk", 1},
			{"spec.language is written", "pl", "fr", "fr", 1},
		} {
			if _, err := f.db.Exec("UPDATE users SET language = ? WHERE uuid = ?", c.panel, u.UUID); err != nil {
				t.Fatal(err)
			}
			logs := f.count(t, "SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ?", u.UUID)
			want := d
			want.Language = c.spec
			if _, _, err := f.store.ApplyUser(ctx, u.UUID, want, nil); err != nil {
				t.Fatal(err)
			}
			if got := f.str(t, "SELECT language FROM users WHERE uuid = ?", u.UUID); got != c.want {
				t.Errorf("%s: language %q, want %q", c.name, got, c.want)
			}
			if n := f.count(t, "SELECT COUNT(*) FROM activity_logs WHERE model_uuid = ?", u.UUID) - logs; n != c.wantActivity {
				t.Errorf("%s: %d activity rows, want %d", c.name, n, c.wantActivity)
			}
			snaps, err := f.store.Snapshots(ctx, []string{u.UUID})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := snaps[u.UUID].Matches(want); !ok {
				t.Errorf("%s: the snapshot after the apply does not match, so the resync would write again", c.name)
			}
		}
	})
}
