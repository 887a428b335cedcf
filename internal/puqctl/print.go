package puqctl

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"
)

// Output formats of the views (-o).
const (
	outputTable = ""
	outputWide  = "wide"
	outputYAML  = "yaml"
	outputJSON  = "json"
)

// addOutputFlag adds -o/--output to a view.
func addOutputFlag(cmd *cobra.Command, into *string) {
	cmd.Flags().StringVarP(into, "output", "o", outputTable, "Output format: wide, yaml or json (default: a table)")
}

func checkOutput(format string, allowed ...string) error {
	if format == outputTable || slices.Contains(allowed, format) {
		return nil
	}
	return fmt.Errorf("unknown output format %q: use %s", format, strings.Join(allowed, ", "))
}

// Colour modes (--color).
const (
	colorAuto   = "auto"
	colorAlways = "always"
	colorNever  = "never"
)

// addColorFlag adds --color to a view.
func addColorFlag(cmd *cobra.Command, into *string) {
	cmd.Flags().StringVar(into, "color", colorAuto,
		"Colour the status badges: auto (on a terminal, unless NO_COLOR is set), always or never")
}

// useColor decides --color for out: auto colours only a terminal, and never when NO_COLOR is
// set (no-color.org), so a pipe, a file or a script reads plain text.
func useColor(mode string, out io.Writer) (bool, error) {
	switch mode {
	case colorAlways:
		return true, nil
	case colorNever:
		return false, nil
	case colorAuto, "":
		if os.Getenv("NO_COLOR") != "" {
			return false, nil
		}
		f, ok := out.(*os.File)
		return ok && term.IsTerminal(int(f.Fd())), nil
	}
	return false, fmt.Errorf("unknown --color %q: use auto, always or never", mode)
}

// colour is an ANSI SGR foreground colour; "" is none.
type colour string

const (
	noColour colour = ""
	red      colour = "31"
	green    colour = "32"
	yellow   colour = "33"
	blue     colour = "34"
	grey     colour = "90"
)

// paint wraps s in the colour when colouring is on.
func paint(on bool, c colour, s string) string {
	if !on || c == noColour || s == "" {
		return s
	}
	return "\x1b[" + string(c) + "m" + s + "\x1b[0m"
}

// The panel's statuses of users and clients.
const (
	statusNew      = "NEW"
	statusActive   = "ACTIVE"
	statusInactive = "INACTIVE"
	statusClosed   = "CLOSED"
	statusFraud    = "FRAUD"
)

// statusColour is the colour of a panel status badge (users and clients), as the panel's own
// badges: ACTIVE green, NEW blue, INACTIVE yellow, CLOSED and FRAUD red.
func statusColour(status string) colour {
	switch strings.ToUpper(status) {
	case statusActive:
		return green
	case statusNew:
		return blue
	case statusInactive:
		return yellow
	case statusClosed, statusFraud:
		return red
	}
	return noColour
}

// cell is one table cell: its text and the colour it is painted in.
type cell struct {
	text string
	c    colour
}

func plain(s string) cell { return cell{text: s} }

// table lays out rows in columns three spaces apart, as kubectl get does. Widths are measured
// on the plain text and colour is added after padding, so colour never misaligns a column.
type table struct {
	header []string
	rows   [][]cell
}

func (t *table) add(cells ...cell) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer, color bool) error {
	widths := make([]int, len(t.header))
	for i, h := range t.header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c.text))
		}
	}
	var b strings.Builder
	line := func(cells []cell) {
		for i, c := range cells {
			text := c.text
			b.WriteString(paint(color, c.c, text))
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(text)+3))
			}
		}
		b.WriteString("\n")
	}
	head := make([]cell, len(t.header))
	for i, h := range t.header {
		head[i] = plain(h)
	}
	line(head)
	for _, r := range t.rows {
		line(r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeStructured prints v as YAML or JSON.
func writeStructured(w io.Writer, format string, v any) error {
	var out []byte
	var err error
	if format == outputJSON {
		out, err = json.MarshalIndent(v, "", "    ")
		out = append(out, '\n')
	} else {
		out, err = yaml.Marshal(v)
	}
	if err != nil {
		return fmt.Errorf("cannot encode the output: %w", err)
	}
	_, err = w.Write(out)
	return err
}

// orDash is s, or "-" for an empty value, as kubectl prints one.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
