package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

func newLoadCommand(g *globalOptions) *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from an OCI or Docker archive, unpacked as docker load does",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r io.Reader = cmd.InOrStdin()
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return fmt.Errorf("open archive: %w", err)
				}
				defer f.Close()
				r = f
			}
			svc, c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			loaded, err := svc.Load(cmd.Context(), r)
			for _, img := range loaded {
				if name := plan.FamiliarName(img.Name); name != "" {
					fmt.Fprintln(cmd.OutOrStdout(), "Loaded image:", name)
				} else {
					fmt.Fprintln(cmd.OutOrStdout(), "Loaded image ID:", img.Target.Digest)
				}
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "Read from an archive file instead of standard input")
	return cmd
}
