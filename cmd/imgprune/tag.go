package main

import (
	"github.com/spf13/cobra"
)

func newTagCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE TARGET_IMAGE",
		Short: "Create a name TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = svc.Tag(cmd.Context(), args[0], args[1])
			return err
		},
	}
}
