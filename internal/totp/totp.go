// Package totp issues authenticator seeds in the form the PUQcloud panel uses (robthree/
// twofactorauth): 160 random bits, base32 without padding (32 characters), SHA1, 6 digits, 30 s.
package totp

import (
	"bytes"
	"fmt"
	"image/png"
	"net/url"
	"strings"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// Key is an issued seed with what a person needs to enrol it.
type Key struct {
	// Secret is the base32 seed, as stored in the panel's verifications row.
	Secret string
	// URL is the otpauth:// URL an authenticator app reads.
	URL string
	// QRPNG is a PNG QR code of URL.
	QRPNG []byte
}

// Issue makes a new seed for account (the user's email), labelled with issuer.
func Issue(issuer, account string) (Key, error) {
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer: issuer, AccountName: account, Period: 30, SecretSize: 20, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return Key{}, fmt.Errorf("cannot issue a TOTP seed: %w", err)
	}
	return keyOf(k)
}

// FromSeed is the Key of a seed the panel already holds (kubectl puq import), in the form Issue
// gives a new one: the same URL parameters and QR code, so the person's authenticator keeps
// working and the Secret reads like one the operator issued.
func FromSeed(issuer, account, seed string) (Key, error) {
	v := url.Values{}
	v.Set("secret", seed)
	v.Set("issuer", issuer)
	v.Set("period", "30")
	v.Set("algorithm", "SHA1")
	v.Set("digits", "6")
	u := url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + issuer + ":" + account,
		RawQuery: strings.ReplaceAll(v.Encode(), "+", "%20")}
	k, err := otp.NewKeyFromURL(u.String())
	if err != nil {
		// Not wrapped: the parser's error may quote the URL, which holds the seed.
		return Key{}, fmt.Errorf("cannot make an otpauth URL of the TOTP seed for %s", account)
	}
	return keyOf(k)
}

func keyOf(k *otp.Key) (Key, error) {
	img, err := k.Image(256, 256)
	if err != nil {
		return Key{}, fmt.Errorf("cannot draw the TOTP QR code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return Key{}, fmt.Errorf("cannot encode the TOTP QR code: %w", err)
	}
	return Key{Secret: k.Secret(), URL: k.URL(), QRPNG: buf.Bytes()}, nil
}

// The Secret a User's seed is kept in, `<user>-totp`: its data keys and the label of the Secrets
// the operator issues. The operator issues and reads it, kubectl puq import writes one from the
// panel's seed, and kubectl puq totp shows and resets it: one form for all.
const (
	// SecretKeySeed is the base32 seed.
	SecretKeySeed = "secret"
	// SecretKeyURL is the otpauth:// URL.
	SecretKeyURL = "otpauth-url"
	// SecretKeyQR is the PNG QR code of the URL.
	SecretKeyQR = "qr.png"
	// ManagedByLabel, set to IssuedBy, marks a Secret the operator issued.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	IssuedBy       = "puq-user-operator"
)

// SecretName is the name of the TOTP Secret of the User named user.
func SecretName(user string) string { return user + "-totp" }

// SecretData is the data of a TOTP Secret holding k.
func (k Key) SecretData() map[string][]byte {
	return map[string][]byte{SecretKeySeed: []byte(k.Secret), SecretKeyURL: []byte(k.URL), SecretKeyQR: k.QRPNG}
}
