package puqctl

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	"github.com/puqcloud/puq-user-operator/internal/testdb"
	"github.com/puqcloud/puq-user-operator/internal/testenv"
	"github.com/puqcloud/puq-user-operator/internal/totp"
)

// decodeQR reads back the code renderQR drew without colour: each character is two modules,
// top and bottom; a block is light over light, a space dark over dark.
func decodeQR(t *testing.T, drawn string) [][]bool {
	t.Helper()
	lines := strings.Split(strings.TrimRight(drawn, "\n"), "\n")
	rows := make([][]bool, 0, 2*len(lines))
	for _, line := range lines {
		var top, bottom []bool
		for _, r := range line {
			switch r {
			case '█':
				top, bottom = append(top, false), append(bottom, false)
			case '▀':
				top, bottom = append(top, false), append(bottom, true)
			case '▄':
				top, bottom = append(top, true), append(bottom, false)
			case ' ':
				top, bottom = append(top, true), append(bottom, true)
			default:
				t.Fatalf("unexpected %q in the QR code", r)
			}
		}
		rows = append(rows, top, bottom)
	}
	// Strip the quiet zone (and the padding row of an odd size).
	n := len(rows[0]) - 2*quietZone
	grid := make([][]bool, n)
	for y := range grid {
		grid[y] = rows[y+quietZone][quietZone : quietZone+n]
	}
	return grid
}

// qrOf is the QR code part of totp's output: the lines between the heading and the URL.
func qrOf(out string) string {
	lines := strings.Split(out, "\n")
	return strings.Join(lines[2:len(lines)-3], "\n") + "\n"
}

func TestTOTPPrintsTheIssuedURLAndAQRCodeOfIt(t *testing.T) {
	ns := namespace(t, "views-totp-show")
	u := user(t, ns, "jane", v1.UserSpec{Email: "jane@example.com", TwoFactor: totpOn}, nil)
	s := totpSecretFor(t, u, true)
	r := run(t, ns, NewTOTPCommand, "jane")
	if r.err != nil {
		t.Fatal(r.err)
	}
	url := string(s.Data[totp.SecretKeyURL])
	if !strings.HasSuffix(r.out, "\n"+url+"\n") {
		t.Fatalf("the output does not end with the Secret's otpauth URL:\n%s", r.out)
	}
	want, err := qrModules(url)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeQR(t, qrOf(r.out))
	if len(got) != len(want) {
		t.Fatalf("the drawn QR code is %d modules wide, the URL's is %d", len(got), len(want))
	}
	for y := range want {
		for x := range want[y] {
			if got[y][x] != want[y][x] {
				t.Fatalf("the drawn QR code differs from the URL's at module (%d,%d)", x, y)
			}
		}
	}
	if !strings.Contains(r.errOut, "Warning: this shows the authenticator seed of jane@example.com") {
		t.Errorf("no warning on stderr: %q", r.errOut)
	}
	if strings.Contains(r.errOut, string(s.Data["secret"])) {
		t.Error("the seed is on stderr")
	}
}

func TestTOTPOfAUserWithoutAnAuthenticatorRefuses(t *testing.T) {
	ns := namespace(t, "views-totp-none")
	user(t, ns, "bob", v1.UserSpec{Email: "bob@example.com"}, nil)
	r := run(t, ns, NewTOTPCommand, "bob")
	if r.err == nil || !strings.Contains(r.err.Error(), "does not use an authenticator app") || r.out != "" {
		t.Errorf("err %v, out %q; want a refusal and nothing printed", r.err, r.out)
	}
}

func TestTOTPResetRefusesASecretTheOperatorDidNotIssue(t *testing.T) {
	ns := namespace(t, "views-totp-foreign")
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Secret)
		want   string
	}{
		{"unlabelled", func(s *corev1.Secret) { s.Labels = nil }, "it has no label app.kubernetes.io/managed-by=puq-user-operator"},
		{"not-controlled", func(s *corev1.Secret) { s.OwnerReferences = nil }, "it is not controlled by the User"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := user(t, ns, tc.name, v1.UserSpec{Email: tc.name + "@example.com", TwoFactor: totpOn}, nil)
			s := totpSecretFor(t, u, true)
			tc.mutate(s)
			if err := k8s.Update(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{tc.name, "--reset"}, {tc.name}} {
				r := run(t, ns, NewTOTPCommand, args...)
				if r.err == nil || !strings.Contains(r.err.Error(), tc.want) || !strings.Contains(r.err.Error(), "nothing was changed") {
					t.Errorf("%v: err %v, want a refusal saying %q", args, r.err, tc.want)
				}
				if r.out != "" {
					t.Errorf("%v printed %q", args, r.out)
				}
			}
			still := &corev1.Secret{}
			if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(s), still); err != nil || still.UID != s.UID {
				t.Errorf("the Secret is gone or replaced after a refused reset: %v", err)
			}
		})
	}
}

// oathtool is the code an authenticator shows for seed at at.
func oathtool(t *testing.T, seed string, at time.Time) string {
	t.Helper()
	cmd := exec.Command("oathtool", "--totp", "-b", "--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), "-")
	cmd.Stdin = strings.NewReader(seed)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("oathtool failed (install it with `apt-get install oathtool`): %v", err)
	}
	return strings.TrimSpace(string(out))
}

// startManager runs the operator's controllers for namespace ns against the panel database p.
func startManager(t *testing.T, ns string, p *testdb.Panel) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	store, err := panel.Open(ctx, panel.Options{DSN: p.DSN, PasswordFile: p.PasswordFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.GrantEverything(ctx, k8s); err != nil {
		t.Fatal(err)
	}
	skip := true
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme: testenv.Scheme(), Logger: zap.New(zap.WriteTo(t.Output())),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache:      cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Client:     client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controller.Setup(ctx, mgr, store, controller.Options{
		InstanceID: "test", BcryptCost: 4, HashCosts: password.CostRange{Min: 4, Max: 14},
		PasswordPolicy: password.Policy{MinLength: 12}, Languages: []string{"en"}, TOTPIssuer: "PUQcloud",
		ResyncPeriod: time.Hour, MaxConcurrentReconciles: 1, Namespaces: []string{ns}, NamePrefix: "puqctl-",
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done; _ = store.Close() })
}

// eventually polls cond until it returns "" or the deadline passes.
func eventually(t *testing.T, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTOTPResetMakesTheOperatorIssueAFreshSeedAndTheOldCodeNoLongerLogsIn(t *testing.T) {
	ctx := context.Background()
	p, err := mariaDB(t).NewPanel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Root.Close() })
	ns := namespace(t, "views-totp-reset")
	startManager(t, ns, p)

	const pw = "plum-Harbor-7-lantern"
	secret(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "jane-password"},
		StringData: map[string]string{"password": pw}})
	u := user(t, ns, "jane", v1.UserSpec{Email: "jane@example.com", State: v1.UserStateActive, TwoFactor: totpOn}, nil)
	key := types.NamespacedName{Namespace: ns, Name: "jane-totp"}
	// issued waits for a Secret at key other than the one with UID not, and the User Ready.
	issued := func(not types.UID) *corev1.Secret {
		s := &corev1.Secret{}
		eventually(t, 60*time.Second, func() string {
			if err := k8s.Get(ctx, key, s); err != nil {
				return err.Error()
			}
			if s.UID == not || len(s.Data["secret"]) == 0 {
				return "the TOTP Secret is not issued anew"
			}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(u), u); err != nil {
				return err.Error()
			}
			if !meta.IsStatusConditionTrue(u.Status.Conditions, v1.ConditionReady) {
				return "User jane is not Ready"
			}
			return ""
		})
		testenv.KeepSecret(string(s.Data["secret"]))
		return s
	}
	old := issued("")
	oldSeed := string(old.Data["secret"])
	login := func(seed string, at time.Time) testdb.LoginResult {
		res, err := testdb.Login{Email: "jane@example.com", Password: pw, Code: oathtool(t, seed, at), At: at}.Try(ctx, p.Root)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := login(oldSeed, time.Now()); !res.OK {
		t.Fatalf("before the reset, the issued seed does not log in: %d %s", res.Status, res.Message)
	}

	r := run(t, ns, NewTOTPCommand, "jane", "--reset")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.out, "Deleted Secret views-totp-reset/jane-totp") || strings.Contains(r.out+r.errOut, oldSeed) {
		t.Errorf("reset printed %q / %q, want the deletion named and no seed", r.out, r.errOut)
	}
	fresh := issued(old.UID)
	newSeed := string(fresh.Data["secret"])
	if newSeed == oldSeed {
		t.Fatal("the operator issued the same seed again")
	}
	// The panel row is written in the reconcile that issued the Secret, before the status patch
	// that made the User Ready; the new seed's code logs in from then on.
	eventually(t, 30*time.Second, func() string {
		if res := login(newSeed, time.Now()); !res.OK {
			return "the new seed does not log in: " + res.Message
		}
		return ""
	})
	at := time.Now()
	if oathtool(t, oldSeed, at) == oathtool(t, newSeed, at) {
		at = at.Add(30 * time.Second) // the one-in-a-million window where both seeds show the same code
	}
	if res := login(oldSeed, at); res.OK {
		t.Error("after the reset, the old authenticator still logs in")
	}
	if shown := mustRun(t, ns, NewTOTPCommand, "jane"); !strings.Contains(shown, string(fresh.Data[totp.SecretKeyURL])) {
		t.Error("totp does not show the new seed's URL after the reset")
	}
	if err := k8s.Get(ctx, key, &corev1.Secret{}); apierrors.IsNotFound(err) {
		t.Error("the TOTP Secret is gone")
	}
}
