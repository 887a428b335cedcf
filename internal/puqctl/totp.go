package puqctl

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"io"
	"strings"

	"github.com/boombuler/barcode/qr"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/totp"
)

type totpOptions struct {
	f     *Factory
	reset bool
	color string
}

// NewTOTPCommand is `kubectl puq totp USER`: the authenticator enrolment to hand to the person
// (the otpauth URL and its QR code, from the Secret the operator issued), or with --reset a new
// seed: the operator-issued Secret is deleted, and the operator issues a fresh one and writes it
// to the panel, with no spec edit for GitOps to fight.
func NewTOTPCommand(f *Factory) *cobra.Command {
	o := &totpOptions{f: f}
	cmd := &cobra.Command{
		Use:   "totp USER",
		Short: "Show a user's authenticator enrolment (otpauth URL and QR code), or --reset it",
		Long: "Print the otpauth URL and a QR code of the authenticator seed the operator issued for the User named USER\n" +
			"(spec.twoFactor.method: TOTP), to hand to that person. This prints a secret on purpose, to this terminal\n" +
			"only: do not paste it anywhere else.\n\n" +
			"With --reset, delete the seed's Secret instead (only a Secret the operator issued): the operator issues a\n" +
			"new seed, writes it to the panel, and the old authenticator stops working. Run `kubectl puq totp USER`\n" +
			"again once the User is Ready to show the new one.",
		Example: "  kubectl puq totp jane -n team-a\n  kubectl puq totp jane --reset",
		Args:    cobra.ExactArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args[0]) },
	}
	cmd.Flags().BoolVar(&o.reset, "reset", false,
		"Delete the operator-issued seed so the operator issues a new one (the old authenticator stops working)")
	cmd.Flags().StringVar(&o.color, "color", colorAuto,
		"Draw the QR code with explicit terminal colours (readable on any theme): auto (on a terminal), always or never")
	return cmd
}

func (o *totpOptions) run(ctx context.Context, name string) error {
	colored, err := useColor(o.color, o.f.IOStreams.Out)
	if err != nil {
		return err
	}
	c, user, err := o.f.User(ctx, name)
	if err != nil {
		return err
	}
	ns := user.Namespace
	if !user.Spec.TwoFactor.Enabled || user.Spec.TwoFactor.Method != v1.TwoFactorMethodTOTP {
		return fmt.Errorf("nothing to show: User %s/%s does not use an authenticator app (spec.twoFactor is not enabled with method TOTP): "+
			"the operator issued no seed for it", ns, name)
	}
	secret := &corev1.Secret{}
	key := client.ObjectKey{Namespace: ns, Name: totp.SecretName(name)}
	if err := c.Get(ctx, key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no seed yet: Secret %s/%s does not exist: the operator issues it; see `kubectl puq why %s`", ns, key.Name, name)
		}
		return fmt.Errorf("cannot read Secret %s/%s: %w", ns, key.Name, err)
	}
	if why := notOperatorIssued(secret, user); why != "" {
		return fmt.Errorf("refused: Secret %s/%s is not the seed the operator issued for this User (%s), so the panel does not use it; "+
			"nothing was changed. Rename or delete it yourself so the operator can issue one (see `kubectl puq why %s`)",
			ns, key.Name, why, name)
	}
	if o.reset {
		return o.resetSeed(ctx, c, user, secret)
	}
	return o.show(user, secret, colored)
}

// notOperatorIssued says why a Secret is not the operator-issued seed of user, or "" when it
// is: the operator's label (or the label of kubectl puq import, whose seed the operator adopted),
// and the User as its controller (the only seed the operator writes to the panel).
func notOperatorIssued(secret metav1.Object, user *v1.User) string {
	labels := secret.GetLabels()
	if labels[totp.ManagedByLabel] != totp.IssuedBy && labels[v1.LabelImported] != "true" {
		return fmt.Sprintf("it has no label %s=%s (nor %s=true)", totp.ManagedByLabel, totp.IssuedBy, v1.LabelImported)
	}
	if !metav1.IsControlledBy(secret, user) {
		return "it is not controlled by the User"
	}
	return ""
}

// show prints the enrolment to the terminal, and the warning to stderr, where a redirect of the
// output to a file still shows it.
func (o *totpOptions) show(user *v1.User, secret *corev1.Secret, colored bool) error {
	url := strings.TrimSpace(string(secret.Data[totp.SecretKeyURL]))
	if url == "" {
		return fmt.Errorf("cannot show the seed: Secret %s/%s has no key %q; reset it with `kubectl puq totp %s --reset`",
			secret.Namespace, secret.Name, totp.SecretKeyURL, user.Name)
	}
	code, err := qrModules(url)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(o.f.IOStreams.ErrOut, "Warning: this shows the authenticator seed of %s. Hand it to that person "+
		"only; do not paste it into tickets or chat, and clear the screen afterwards.\n", user.Spec.Email); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Authenticator for %s (User %s/%s)\n\n", user.Spec.Email, user.Namespace, user.Name)
	b.WriteString(renderQR(code, colored))
	fmt.Fprintf(&b, "\n%s\n", url)
	_, err = io.WriteString(o.f.IOStreams.Out, b.String())
	return err
}

// resetSeed deletes the operator-issued Secret, on the condition that it is still the one read
// (its UID), so a seed issued in between is never deleted unseen.
func (o *totpOptions) resetSeed(ctx context.Context, c client.Client, user *v1.User, secret *corev1.Secret) error {
	uid := secret.UID
	if err := c.Delete(ctx, secret, client.Preconditions{UID: &uid}); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return errors.New("the seed's Secret changed while it was being reset (another reset?); nothing was deleted: " +
				"run the command again")
		}
		return fmt.Errorf("cannot delete Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	_, err := fmt.Fprintf(o.f.IOStreams.Out, "Deleted Secret %s/%s. The operator issues a new seed and writes it to the panel; "+
		"the old authenticator no longer works.\nOnce User %s is Ready, hand the person the new one: kubectl puq totp %s -n %s\n",
		secret.Namespace, secret.Name, user.Name, user.Name, user.Namespace)
	return err
}

// qrModules encodes url as a QR code, as a grid of dark modules.
func qrModules(url string) ([][]bool, error) {
	code, err := qr.Encode(url, qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("cannot draw the QR code: %w", err)
	}
	b := code.Bounds()
	grid := make([][]bool, b.Dy())
	for y := range grid {
		grid[y] = make([]bool, b.Dx())
		for x := range grid[y] {
			grid[y][x] = color.GrayModel.Convert(code.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y < 128
		}
	}
	return grid, nil
}

// quietZone is the light border a scanner needs around the code, in modules.
const quietZone = 2

// renderQR draws the grid two module rows per text line with half blocks. With colour it sets
// black and white explicitly, which reads on any terminal theme; without, light modules are
// drawn as blocks, which reads on the usual light-on-dark terminal.
func renderQR(grid [][]bool, colored bool) string {
	n := len(grid)
	dark := func(x, y int) bool {
		x, y = x-quietZone, y-quietZone
		return y >= 0 && y < n && x >= 0 && x < n && grid[y][x]
	}
	size := n + 2*quietZone
	var b strings.Builder
	for y := 0; y < size; y += 2 {
		for x := range size {
			top, bottom := dark(x, y), dark(x, y+1) // outside the grid is light
			if colored {
				// The upper half block in the top module's colour over the bottom module's.
				fmt.Fprintf(&b, "\x1b[%d;%dm▀", fgOf(top), fgOf(bottom)+10)
				continue
			}
			switch {
			case !top && !bottom:
				b.WriteString("█")
			case !top:
				b.WriteString("▀")
			case !bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		if colored {
			b.WriteString("\x1b[0m")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// fgOf is the ANSI foreground code of a module: black for dark, bright white for light.
func fgOf(dark bool) int {
	if dark {
		return 30
	}
	return 97
}
