package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/imgprune/imgprune/daemon/images"
)

type pruneOptions struct {
	all     bool
	filters []string
	dryRun  bool
	force   bool
	format  string
}

const (
	warnDangling = "WARNING! This will remove all dangling images."
	warnAll      = "WARNING! This will remove all images without at least one container associated to them."
)

func newPruneCommand(g *globalOptions) *cobra.Command {
	var o pruneOptions
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPrune(cmd, g, o)
		},
	}
	flags := cmd.Flags()
	flags.BoolVarP(&o.all, "all", "a", false, "Remove all unused images, not just dangling ones")
	flags.StringArrayVar(&o.filters, "filter", nil, `Provide filter values (e.g. "until=<timestamp>")`)
	flags.BoolVar(&o.dryRun, "dry-run", false, "Show what would be removed and the space it would free; change nothing")
	flags.BoolVarP(&o.force, "force", "f", false, "Do not prompt for confirmation")
	flags.StringVar(&o.format, "format", "text", "Output format: text or json")
	return cmd
}

func runPrune(cmd *cobra.Command, g *globalOptions, o pruneOptions) error {
	if o.format != "text" && o.format != "json" {
		return fmt.Errorf("invalid --format %q: use text or json", o.format)
	}
	args, err := images.ParseFilterFlags(o.filters)
	if err != nil {
		return err
	}
	if o.all && !slices.Contains(args["dangling"], "false") {
		// As docker does, -a adds dangling=false to the user's filters: a
		// contradicting dangling filter is then an error, not overridden.
		args["dangling"] = append(args["dangling"], "false")
	}
	filters, err := images.ParseFilters(args, time.Now())
	if err != nil {
		return err
	}
	if !o.force && !o.dryRun {
		warning := warnDangling
		if !filters.DanglingOnly {
			warning = warnAll
		}
		ok, err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), warning)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
	}
	svc, c, err := g.connect(cmd.Context())
	if err != nil {
		return err
	}
	defer c.Close()
	var popts []images.PruneOpt
	if o.dryRun {
		popts = append(popts, images.DryRun())
	}
	report, err := svc.Prune(cmd.Context(), filters, popts...)
	if err != nil {
		return err
	}
	if o.format == "json" {
		enc := json.NewEncoder(cmd.OutOrStdout())
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		printReport(cmd.OutOrStdout(), report, o.dryRun)
	}
	for _, w := range report.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	for _, f := range report.Failures {
		fmt.Fprintf(cmd.ErrOrStderr(), "failed: %s: %s\n", f.Name, f.Error)
	}
	if err := report.Err(); err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "imgprune:", err)
		return exitError{err}
	}
	return nil
}

// printReport prints report as `docker image prune` does.
func printReport(w io.Writer, report images.Report, dryRun bool) {
	var sb strings.Builder
	if len(report.ImagesDeleted) > 0 {
		if dryRun {
			sb.WriteString("Would delete Images:\n")
		} else {
			sb.WriteString("Deleted Images:\n")
		}
		for _, e := range report.ImagesDeleted {
			if e.Untagged != "" {
				fmt.Fprintf(&sb, "untagged: %s\n", e.Untagged)
			} else {
				fmt.Fprintf(&sb, "deleted: %s\n", e.Deleted)
			}
		}
	}
	fmt.Fprintln(w, sb.String())
	if dryRun {
		fmt.Fprintln(w, "Total reclaimable space:", units.HumanSize(float64(report.SpaceReclaimed)))
		return
	}
	fmt.Fprintln(w, "Total reclaimed space:", units.HumanSize(float64(report.SpaceReclaimed)))
}

// confirm asks as docker does. Without a terminal there is nobody to ask, so
// it refuses rather than guess.
func confirm(in io.Reader, out io.Writer, warning string) (bool, error) {
	if f, ok := in.(*os.File); ok && !isTerminal(f) {
		return false, fmt.Errorf("refusing to prune without confirmation: standard input is not a terminal; pass --force to prune")
	}
	fmt.Fprintf(out, "%s\nAre you sure you want to continue? [y/N] ", warning)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	answer = strings.ToLower(strings.TrimSpace(answer))
	return answer == "y" || answer == "yes", nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
