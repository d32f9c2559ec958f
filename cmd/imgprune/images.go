package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
)

func newImagesCommand(g *globalOptions) *cobra.Command {
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:   "images [OPTIONS]",
		Short: "List images: one row per name, <none> for a target without one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("invalid --format %q: use table or json", format)
			}
			match, err := rowFilter(filters)
			if err != nil {
				return err
			}
			svc, c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			all, err := svc.Images(cmd.Context())
			if err != nil {
				return err
			}
			rows := slices.DeleteFunc(all, func(r images.Summary) bool { return !match(r) })
			if format == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(rows)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 3, ' ', 0)
			fmt.Fprintln(w, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tCONTAINERS")
			now := time.Now()
			for _, r := range rows {
				repo, tag := splitName(r.Name)
				fmt.Fprintf(w, "%s\t%s\t%s\t%s ago\t%s\t%d\n", repo, tag, r.ID.Encoded()[:12],
					units.HumanDuration(now.Sub(r.Created)), units.HumanSizeWithPrecision(float64(r.Size), 3), r.Containers)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "Output format: table or json")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, `Filter the rows: dangling=true|false, reference=PATTERN and reference!=PATTERN (docker's globs, e.g. "busybox:1.*")`)
	return cmd
}

// rowFilter reads the filters images takes, and returns the test a row must
// pass: a name the reference filters let through, or no name when dangling.
func rowFilter(flags []string) (func(images.Summary) bool, error) {
	args, err := plan.ParseFilterFlags(flags)
	if err != nil {
		return nil, err
	}
	for key := range args {
		if key != "dangling" && key != "reference" && key != "reference!" {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter '%s': images takes dangling, reference and reference!", key))
		}
	}
	f, err := plan.ParseFilters(args, time.Now())
	if err != nil {
		return nil, err
	}
	_, byDangling := args["dangling"]
	return func(r images.Summary) bool {
		if r.Name == "" {
			return (!byDangling || f.DanglingOnly) && f.MatchNameless()
		}
		return (!byDangling || !f.DanglingOnly) && f.MatchName(r.Name)
	}, nil
}

// splitName splits a name into docker's REPOSITORY and TAG columns.
func splitName(name string) (string, string) {
	if name == "" {
		return "<none>", "<none>"
	}
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return name, "<none>"
	}
	tag := "<none>"
	if t, ok := ref.(reference.Tagged); ok {
		tag = t.Tag()
	}
	return reference.FamiliarName(ref), tag
}
