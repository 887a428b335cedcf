// Package puqctl is the kubectl plugin `kubectl puq`: import a panel into git, and the admin's views of it.
package puqctl

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// NewRootCommand returns `kubectl puq` with the standard kubectl connection flags
// (--kubeconfig, --context, -n, ...) and every subcommand.
func NewRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	f := &Factory{ConfigFlags: flags, IOStreams: streams}
	cmd := &cobra.Command{
		Use:           "kubectl-puq",
		Short:         "Import a PUQcloud panel into git and view its users from the cluster",
		SilenceUsage:  true,
		SilenceErrors: false,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl puq"},
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	flags.AddFlags(cmd.PersistentFlags())

	cmd.AddCommand(NewImportCommand(f), NewUsersCommand(f), NewClientsCommand(f), NewTOTPCommand(f), NewWhyCommand(f))
	return cmd
}
