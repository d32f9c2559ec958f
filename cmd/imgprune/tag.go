package main

import (
	"strings"

	"github.com/distribution/reference"
	"github.com/spf13/cobra"
)

func newTagCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE TARGET_IMAGE",
		Short: "Create a name TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, c, err := g.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = svc.Tag(cmd.Context(), args[0], args[1])
			return err
		},
	}
}

// familiar is the name as docker shows it, or "" for a dangling record.
func familiar(name string) string {
	if strings.HasPrefix(name, "moby-dangling@") {
		return ""
	}
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return name
	}
	return reference.FamiliarString(ref)
}
