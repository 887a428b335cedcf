package puqctl

import (
	"github.com/spf13/cobra"
)

// NewImportCommand returns `kubectl puq import`.
func NewImportCommand(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "import",
		Short: "Write the panel's users as User and ClientMembership YAML for git, without resetting any password",
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = f
			return nil
		},
	}
}
