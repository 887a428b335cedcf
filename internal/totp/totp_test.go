package totp_test

import (
	"bytes"
	"image/png"
	"net/url"
	"os/exec"
	"strings"
	"testing"

	issue "github.com/puqcloud/puq-user-operator/internal/totp"
)

func TestIssueMakesThePanelsSeedForm(t *testing.T) {
	k, err := issue.Issue("PUQcloud", "jane@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Secret) != 32 || strings.Trim(k.Secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
		t.Errorf("seed is not 32 base32 characters without padding (length %d)", len(k.Secret))
	}
	u, err := url.Parse(k.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/PUQcloud:jane@example.com" || q.Get("issuer") != "PUQcloud" ||
		q.Get("secret") != k.Secret || q.Get("digits") != "6" || q.Get("period") != "30" || q.Get("algorithm") != "SHA1" {
		t.Errorf("otpauth URL has the wrong form (host %s path %s)", u.Host, u.Path)
	}
	img, err := png.Decode(bytes.NewReader(k.QRPNG))
	if err != nil || img.Bounds().Dx() != 256 {
		t.Errorf("qr.png is not a 256px PNG: %v", err)
	}
	other, err := issue.Issue("PUQcloud", "jane@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if other.Secret == k.Secret {
		t.Error("two issues gave the same seed")
	}
}

// An authenticator app enrolled from the otpauth URL shows the codes the panel accepts. Both sides
// are computed by oathtool, an implementation independent of the library the operator uses: the
// app's side from the URL's secret, algorithm, digits and period; the panel's side from the seed it
// stores, with robthree/twofactorauth's fixed rules (SHA1, 6 digits, 30 s).
func TestIssuedSeedGivesThePanelsCodesInAnAuthenticator(t *testing.T) {
	// oathtool itself, pinned to RFC 6238's SHA1 test vector (T = 59 s: 94287082, 6 digits: 287082).
	if got := oathtool(t, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "--totp=SHA1", "--digits=6", "--time-step-size=30s",
		"--now=@59"); got != "287082" {
		t.Fatalf("oathtool gives %q for RFC 6238's test vector, want 287082", got)
	}
	k, err := issue.Issue("PUQcloud", "jane@example.com")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(k.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for _, now := range []string{"--now=@1700000000", "--now=@1800000015"} {
		// Four consecutive periods each, so that one shared code cannot pass by chance.
		app := oathtool(t, q.Get("secret"), "--totp="+q.Get("algorithm"), "--digits="+q.Get("digits"),
			"--time-step-size="+q.Get("period")+"s", now, "--window=3")
		panel := oathtool(t, k.Secret, "--totp=SHA1", "--digits=6", "--time-step-size=30s", now, "--window=3")
		if app != panel || len(strings.Fields(panel)) != 4 {
			t.Errorf("at %s the app enrolled from the URL shows %q, the panel accepts %q", now, app, panel)
		}
	}
}

// oathtool runs oathtool on a base32 seed, given on its standard input (never in argv, where any
// process could read it), and returns its output; every failure fails the test.
func oathtool(t *testing.T, seed string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("oathtool")
	if err != nil {
		t.Fatal("oathtool not found: the TOTP tests check codes with it; install it with `apt-get install oathtool` " +
			"(or run `make test-deps` as root)")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(path, append(args, "-b", "-")...)
	cmd.Stdin = strings.NewReader(seed + "\n")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("oathtool failed: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.Join(strings.Fields(string(out)), " ")
}
