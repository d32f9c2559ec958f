package main

import (
	"fmt"
	"io"
	"os"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
)

func newLoadCommand(g *globalOptions) *cobra.Command {
	var input, maxUnpacked string
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from an OCI or Docker archive, unpacked as docker load does",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			limit, err := parseUnpackLimit(maxUnpacked)
			if err != nil {
				return err
			}
			var r io.Reader = cmd.InOrStdin()
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return fmt.Errorf("open archive: %w", err)
				}
				defer f.Close()
				r = f
			}
			var opts []images.Opt
			if limit != 0 {
				opts = append(opts, images.WithUnpackLimit(limit))
			}
			svc, c, err := g.connect(cmd.Context(), opts...)
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
	cmd.Flags().StringVar(&maxUnpacked, "max-unpacked-size", "", `Most the archive's new compressed layers may expand to, all together, such as 20GiB; "none" for no limit (default: the free space of --root's filesystem when the daemon's root is on this host)`)
	return cmd
}

// parseUnpackLimit reads --max-unpacked-size: 0 for the default, -1 for
// none.
func parseUnpackLimit(v string) (int64, error) {
	switch v {
	case "":
		return 0, nil
	case "none":
		return -1, nil
	}
	n, err := units.RAMInBytes(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf(`invalid --max-unpacked-size %q: use a size above 0, such as 20GiB, or "none"`, v)
	}
	return n, nil
}
