package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/pkg/metrics"
	"github.com/imgprune/imgprune/pkg/progress"
)

type pruneOptions struct {
	all     bool
	filters []string
	dryRun  bool
	force   bool
	format  string
	// progress is auto, json or none; quiet is none.
	progress    string
	quiet       bool
	metricsFile string
	keepLast    int
	untilFree   string
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
	flags.StringVar(&o.progress, "progress", "auto", "Progress on stderr: auto (a live display when stderr is a terminal), json (one event per line) or none")
	flags.BoolVarP(&o.quiet, "quiet", "q", false, "Show no progress")
	flags.StringVar(&o.metricsFile, "metrics-file", "", "Add each prune's metrics to this file, in Prometheus text format for a node exporter's textfile collector")
	flags.IntVar(&o.keepLast, "keep-last", 0, "With -a, keep the N newest images of each repository (by when their name or their content arrived)")
	flags.StringVar(&o.untilFree, "until-free", "", `Remove least recently used images first (then the oldest), only until the disk holding the content store has this much free: a percentage of its size ("20%") or a size ("50GB")`)
	return cmd
}

func runPrune(cmd *cobra.Command, g *globalOptions, o pruneOptions) error {
	if o.format != "text" && o.format != "json" {
		return fmt.Errorf("invalid --format %q: use text or json", o.format)
	}
	if o.progress != "auto" && o.progress != "json" && o.progress != "none" {
		return fmt.Errorf("invalid --progress %q: use auto, json or none", o.progress)
	}
	if o.metricsFile != "" {
		if err := metrics.Check(o.metricsFile); err != nil {
			return err
		}
	}
	filters, err := o.parseFilters()
	if err != nil {
		return err
	}
	if o.keepLast < 0 || (o.keepLast > 0 && !o.all) {
		return fmt.Errorf("invalid --keep-last %d: it keeps named images among those -a removes; use it with -a and a count above 0", o.keepLast)
	}
	filters.KeepLast = o.keepLast
	var goal *prune.FreeGoal
	if o.untilFree != "" {
		g, err := prune.ParseFreeGoal(o.untilFree)
		if err != nil {
			return err
		}
		goal = &g
	}
	if !o.force && !o.dryRun {
		warning := warnDangling
		if !filters.DanglingOnly {
			warning = warnAll
		}
		ok, err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), warning)
		if err != nil || !ok {
			return err
		}
	}
	svc, closer, err := g.connect(cmd.Context())
	if err != nil {
		return err
	}
	defer closer.Close()
	sink, rec := o.progressSink(cmd.ErrOrStderr(), g.namespace)
	popts := []prune.Opt{prune.WithProgress(sink)}
	if o.dryRun {
		popts = append(popts, prune.DryRun())
	}
	if goal != nil {
		popts = append(popts, prune.UntilFree(*goal))
	}
	report, err := svc.Prune(cmd.Context(), filters, popts...)
	var merr error
	if rec != nil {
		run := rec.Run
		run.Failed = run.Failed || err != nil
		if merr = metrics.Write(o.metricsFile, run); merr != nil {
			fmt.Fprintln(cmd.ErrOrStderr(), "imgprune:", merr)
			merr = exitError{merr}
		}
	}
	if err != nil {
		return err
	}
	// The report stands whether or not the metrics could be written.
	if err := o.writeReport(cmd.OutOrStdout(), cmd.ErrOrStderr(), report); err != nil {
		return err
	}
	return merr
}

// progressSink is where the prune's events go: a live display when stderr
// is a terminal, JSON lines, or nowhere; and the metrics recorder when a
// real prune leaves metrics.
func (o pruneOptions) progressSink(stderr io.Writer, namespace string) (progress.Sink, *metrics.Recorder) {
	var sinks []progress.Sink
	switch {
	case o.quiet || o.progress == "none":
	case o.progress == "json":
		sinks = append(sinks, progress.JSON(stderr))
	case isTerminalWriter(stderr):
		sinks = append(sinks, progress.Terminal(stderr))
	}
	var rec *metrics.Recorder
	if o.metricsFile != "" && !o.dryRun {
		rec = &metrics.Recorder{Run: metrics.Run{Namespace: namespace}}
		sinks = append(sinks, rec)
	}
	return progress.Multi(sinks...), rec
}

// parseFilters reads --filter and -a as docker does: -a adds dangling=false
// and its absence dangling=true, so a contradicting dangling filter is an
// error rather than silently overridden.
func (o pruneOptions) parseFilters() (plan.Filters, error) {
	args, err := plan.ParseFilterFlags(o.filters)
	if err != nil {
		return plan.Filters{}, err
	}
	if dangling := strconv.FormatBool(!o.all); !slices.Contains(args["dangling"], dangling) {
		args["dangling"] = append(args["dangling"], dangling)
	}
	return plan.ParseFilters(args, time.Now())
}

// writeReport prints the report in the chosen format on stdout, and the
// warnings and failures on stderr. It fails when anything failed.
func (o pruneOptions) writeReport(stdout, stderr io.Writer, report prune.Report) error {
	if o.format == "json" {
		if err := json.NewEncoder(stdout).Encode(report); err != nil {
			return err
		}
	} else {
		printReport(stdout, report, o.dryRun)
	}
	for _, w := range report.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	return failed(stderr, report.Failures, report.Err())
}

// failed prints failures on stderr, and fails the command with err, their
// summary, when there are any.
func failed(stderr io.Writer, failures []prune.Failure, err error) error {
	for _, f := range failures {
		fmt.Fprintf(stderr, "failed: %s: %s\n", f.Name, f.Error)
	}
	if err != nil {
		fmt.Fprintln(stderr, "imgprune:", err)
		return exitError{err}
	}
	return nil
}

// printReport prints report as `docker image prune` does.
func printReport(w io.Writer, report prune.Report, dryRun bool) {
	if len(report.ImagesDeleted) > 0 {
		var sb strings.Builder
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
		fmt.Fprintln(w, sb.String())
	}
	total := "Total reclaimed space:"
	if dryRun {
		total = "Total reclaimable space:"
	}
	fmt.Fprintln(w, total, units.HumanSize(float64(report.SpaceReclaimed)))
	if f := report.FreeSpace; f != nil {
		free := "Free space:"
		if !f.Measured {
			free = "Free space after (predicted):"
		}
		fmt.Fprintf(w, "%s %s of %s (goal %s, before %s)\n", free, units.HumanSize(float64(f.After)), units.HumanSize(float64(f.Size)),
			units.HumanSize(float64(f.Goal)), units.HumanSize(float64(f.Before)))
	}
}

// confirm asks as docker does. Without a terminal there is nobody to ask, so
// it refuses rather than guess.
func confirm(in io.Reader, out io.Writer, warning string) (bool, error) {
	if f, ok := in.(*os.File); ok && !term.IsTerminal(int(f.Fd())) {
		return false, fmt.Errorf("refusing to prune without confirmation: standard input is not a terminal; pass --force to prune")
	}
	fmt.Fprintf(out, "%s\nAre you sure you want to continue? [y/N] ", warning)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	answer = strings.ToLower(strings.TrimSpace(answer))
	return answer == "y" || answer == "yes", nil
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
