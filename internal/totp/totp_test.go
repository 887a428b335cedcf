package totp_test

import (
	"bytes"
	"image/png"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

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
	code, err := totp.GenerateCode(k.Secret, time.Now())
	if err != nil || !totp.Validate(code, k.Secret) {
		t.Errorf("the seed does not produce valid codes: %v", err)
	}
	other, _ := issue.Issue("PUQcloud", "jane@example.com")
	if other.Secret == k.Secret {
		t.Error("two issues gave the same seed")
	}
}
