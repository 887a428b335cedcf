package panel_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
)

// FuzzPanelHashIsPanelForm: the store's check of a hash before it writes one decides as
// password.PanelForm does (FuzzPanelFormAcceptsWhatPHPAccepts proves that against PHP's rules),
// returns the same $2y$ form, and refuses with an error that is both panel.ErrInvalid (so the
// controller waits for a change instead of retrying) and password.ErrMalformedHash, with the same
// text for every refused value: nothing of the value in it.
func FuzzPanelHashIsPanelForm(f *testing.F) {
	_, baseline := panel.PanelHash("")
	f.Fuzz(func(t *testing.T, h string) {
		want, wantErr := password.PanelForm(h)
		got, err := panel.PanelHash(h)
		if (err == nil) != (wantErr == nil) || got != want {
			t.Fatalf("PanelHash(%q) = %q, %v; PanelForm says %q, %v", h, got, err, want, wantErr)
		}
		if err == nil {
			if !strings.HasPrefix(got, "$2y$") {
				t.Fatalf("PanelHash(%q) = %q, not $2y$", h, got)
			}
			return
		}
		if !errors.Is(err, panel.ErrInvalid) || !errors.Is(err, password.ErrMalformedHash) {
			t.Fatalf("PanelHash(%q) refused with %v; want ErrInvalid and ErrMalformedHash", h, err)
		}
		if err.Error() != baseline.Error() {
			t.Fatalf("PanelHash's error depends on the value: %q, for an empty value %q", err, baseline)
		}
	})
}
