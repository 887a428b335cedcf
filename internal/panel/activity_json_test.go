package panel_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// phpModelJSON is what the panel's ModelActivityLogger writes for a User model: PHP's own
// json_encode over the values the model hands it. The row comes from the database as text (NULL
// as nil) with its columns in table order; view is toArray (create, delete: dates as stored),
// original (an update's old side: created_at and updated_at as Carbon's ISO-8601 UTC form) or
// changes (an update's new side: the named columns, raw). The model casts only disable to a
// boolean; PDO hands the other flags over as integers; password and remember_token are hidden.
const phpModelJSON = `
$in = json_decode(stream_get_contents(STDIN), true);
$out = [];
foreach ($in["columns"] as $c) {
    if (in_array($c, ["password", "remember_token"], true)) continue;
    if ($in["view"] === "changes" && !in_array($c, $in["changed"], true)) continue;
    $v = $in["row"][$c];
    if ($v !== null) {
        if ($c === "disable") $v = (bool)(int)$v;
        elseif (in_array($c, ["two_factor", "email_verified", "phone_verified"], true)) $v = (int)$v;
        elseif ($in["view"] === "original" && in_array($c, ["created_at", "updated_at"], true))
            $v = (new DateTime($v, new DateTimeZone($in["tz"])))->setTimezone(new DateTimeZone("UTC"))->format("Y-m-d\TH:i:s.u\Z");
    }
    $out[$c] = $v;
}
echo json_encode($out);
`

// activityTimezone is the panel's APP_TIMEZONE in the activity test: not UTC, so a date in the
// wrong zone or form shows.
const activityTimezone = "America/Winnipeg"

func phpJSON(t *testing.T, view string, columns []string, r map[string]*string, changed ...string) string {
	t.Helper()
	php, err := exec.LookPath("php")
	if err != nil {
		t.Fatal("php not found: the activity JSON is checked against PHP's own json_encode; install php-cli (`apt-get install php-cli`)")
	}
	in, err := json.Marshal(map[string]any{"view": view, "tz": activityTimezone, "columns": columns, "row": r, "changed": changed})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(php, "-n", "-r", phpModelJSON)
	cmd.Stdin = strings.NewReader(string(in))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("php json_encode: %v", err)
	}
	return string(out)
}

// userRow reads a users row as the panel's PDO would see it: every column, in table order, NULL as
// nil. The password column is read too (PHP drops it), but never printed.
func userRow(t *testing.T, f fixture, id string) ([]string, map[string]*string) {
	t.Helper()
	rows, err := f.db.Query("SELECT * FROM users WHERE uuid = ?", id)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	columns, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatalf("no users row %s", id)
	}
	vals := make([]sql.NullString, len(columns))
	ptrs := make([]any, len(columns))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	r := make(map[string]*string, len(columns))
	for i, c := range columns {
		if vals[i].Valid {
			v := vals[i].String
			if strings.HasSuffix(c, "_at") {
				v = panelTime(v)
			}
			r[c] = &v
		} else {
			r[c] = nil
		}
	}
	return columns, r
}

// panelTime is a timestamp column as Laravel reads it: "Y-m-d H:i:s" (drivers may hand over other
// layouts of the same wall time).
func panelTime(v string) string {
	for _, layout := range []string{time.DateTime, time.RFC3339, "2006-01-02T15:04:05Z"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.Format(time.DateTime)
		}
	}
	return v
}

// The activity rows of a create, an update and a delete are byte for byte what the panel's
// ModelActivityLogger writes (PHP's json_encode: "\/", "\u00e9", NULL columns present, dates
// as the model serialises them in the panel's timezone, disable as a boolean), never with the hash.
func TestActivityJSONIsThePanelsJSONEncode(t *testing.T) {
	loc, err := time.LoadLocation(activityTimezone)
	if err != nil {
		t.Fatal(err)
	}
	enginesWith(t, panel.Options{Location: loc}, func(t *testing.T, f fixture) {
		ctx := context.Background()
		activity := func(action, column, id string) string {
			return f.str(t, "SELECT "+column+" FROM activity_logs WHERE action = ? AND model_uuid = ?", action, id)
		}
		d := jane()
		d.FirstName = "Zoë 😀"
		d.LastName = "O'Brien/Ødegård"
		d.Phone = ""
		d.AdminNotes = "<b>\"VIP\"</b> & a/b \\ tab\there\nline 2 \u2028 ü"
		b := panel.Binding{Namespace: "ns", Name: "zoe", ResourceUID: uuid.NewString(), InstanceID: "prod"}
		u, err := f.store.CreateUser(ctx, d, testHash(t, "correct horse battery"), &b)
		if err != nil {
			t.Fatal(err)
		}
		b.UserUUID = u.UUID
		columns, created := userRow(t, f, u.UUID)
		if got, want := activity("create", "model_new_data", u.UUID), phpJSON(t, "toArray", columns, created); got != want {
			t.Errorf("create: model_new_data\n got %s\nwant %s", got, want)
		}

		f.tick()
		d.FirstName = "Zoé"
		d.Phone = "+48123456789"
		d.AdminNotes = ""
		if _, _, err := f.store.ApplyUser(ctx, u.UUID, d, nil); err != nil {
			t.Fatal(err)
		}
		_, updated := userRow(t, f, u.UUID)
		if got, want := activity("update", "model_old_data", u.UUID), phpJSON(t, "original", columns, created); got != want {
			t.Errorf("update: model_old_data\n got %s\nwant %s", got, want)
		}
		changed := []string{"phone_number", "firstname", "admin_notes", "updated_at"}
		if got, want := activity("update", "model_new_data", u.UUID), phpJSON(t, "changes", columns, updated, changed...); got != want {
			t.Errorf("update: model_new_data\n got %s\nwant %s", got, want)
		}

		f.tick()
		if r, err := f.store.Release(ctx, b, panel.ReleaseDelete); err != nil || !r.Deleted {
			t.Fatalf("release = %+v, %v; want deleted", r, err)
		}
		if got, want := activity("delete", "model_old_data", u.UUID), phpJSON(t, "toArray", columns, updated); got != want {
			t.Errorf("delete: model_old_data\n got %s\nwant %s", got, want)
		}
		if n := f.count(t, "SELECT COUNT(*) FROM activity_logs WHERE model_new_data LIKE '%$2%' OR model_old_data LIKE '%$2%'"); n != 0 {
			t.Errorf("%d activity rows hold a hash", n)
		}
	})
}
