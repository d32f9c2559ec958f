package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/distribution/reference"
	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
)

func newImagesCommand(g *globalOptions) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "images [OPTIONS]",
		Short: "List images: one row per name, <none> for a target without one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("invalid --format %q: use table or json", format)
			}
			svc, c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			rows, err := svc.Images(cmd.Context())
			if err != nil {
				return err
			}
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
	return cmd
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
