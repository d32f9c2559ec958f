package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/imgprune/imgprune/daemon/images/check"
)

type checkOptions struct {
	delete     bool
	format     string
	olderThan  time.Duration
	leases     []string
	unexpiring bool
}

func newCheckCommand(g *globalOptions) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check [OPTIONS]",
		Short: "Find, and with --delete remove, what holds disk space that no image accounts for",
		Long: `Find what holds or wastes disk space that no image accounts for: leases that
expired, or that are older than --older-than, have no expiry and hold something;
ingests (partial writes) no writer touched for longer than --older-than;
snapshots and blobs that no container, image or lease reaches; and, when --root
is the daemon's root on this host, blobs on disk that no namespace's metadata
knows and directories that failed snapshot removals left. It changes nothing
unless --delete is given; then it removes them through containerd (one
collection sweeps the blobs and has the snapshotters clean up) and reports the
bytes that left the disk. A directory the native snapshotter left is removed
only with --offline, with containerd stopped. It exits non-zero when anything
it meant to remove is still there.

A lease with no expiry is its creator's statement that it is still in use (a
Docker Engine holds each container's files that way, BuildKit its cache): it is
listed, with what it holds and who likely made it, but removed only when named
with --lease or with --unexpiring-leases, and never while a container owns it
(by its ID, or because it holds a container's writable snapshot).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd, g, o)
		},
	}
	flags := cmd.Flags()
	flags.BoolVar(&o.delete, "delete", false, "Remove what is found")
	flags.StringVar(&o.format, "format", "text", "Output format: text or json")
	flags.DurationVar(&o.olderThan, "older-than", check.DefaultOlderThan, "How long an ingest, or a lease with no expiry, must be left alone to count as abandoned")
	flags.StringArrayVar(&o.leases, "lease", nil, "Also remove this lease with no expiry (repeatable); never one a container owns")
	flags.BoolVar(&o.unexpiring, "unexpiring-leases", false, "Also remove every lease with no expiry that is older than --older-than, but those containers own")
	return cmd
}

func runCheck(cmd *cobra.Command, g *globalOptions, o checkOptions) error {
	if o.format != "text" && o.format != "json" {
		return fmt.Errorf("invalid --format %q: use text or json", o.format)
	}
	if o.olderThan < 0 {
		return fmt.Errorf("invalid --older-than %v: use a duration of zero or more", o.olderThan)
	}
	svc, closer, err := g.connect(cmd.Context())
	if err != nil {
		return err
	}
	defer closer.Close()
	opts := []check.Opt{check.OlderThan(o.olderThan), check.DeleteLeases(o.leases...)}
	if o.unexpiring {
		opts = append(opts, check.DeleteUnexpiring())
	}
	if o.delete {
		opts = append(opts, check.DeleteFound())
	}
	report, err := svc.Check(cmd.Context(), opts...)
	if err != nil {
		return err
	}
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if o.format == "json" {
		if err := json.NewEncoder(stdout).Encode(report); err != nil {
			return err
		}
	} else {
		printCheck(stdout, report)
	}
	if !report.DiskChecked {
		fmt.Fprintln(stderr, "warning: the disk was not checked for blobs and directories no record knows: --root is not the connected daemon's root on this host")
	}
	return failed(stderr, report.Failures, report.Err())
}

// printCheck prints the report as OpenShift's hard prune does: a line per
// item, a count per kind, then the space.
func printCheck(w io.Writer, r check.Report) {
	verb, freed := "Would delete", "Would free up"
	if r.Deleted {
		verb, freed = "Deleted", "Freed up"
	}
	counts := map[string]int{}
	kept := 0
	for _, f := range r.Found {
		if f.Kept {
			kept++
			fmt.Fprintf(w, "Kept %s: %s (%s; %s)\n", f.Kind, f.Name, units.HumanSize(float64(f.Size)), f.Why)
			continue
		}
		if r.Deleted && !f.Gone {
			continue
		}
		counts[f.Kind]++
		fmt.Fprintf(w, "%s %s: %s (%s; %s)\n", verb, f.Kind, f.Name, units.HumanSize(float64(f.Size)), f.Why)
	}
	for _, kind := range []string{check.KindLease, check.KindIngest, check.KindBlob, check.KindSnapshot, check.KindDir} {
		if n := counts[kind]; n > 0 {
			fmt.Fprintf(w, "%s %d %s\n", verb, n, plural(n, kind))
		}
	}
	if len(r.Found) == kept {
		fmt.Fprintln(w, "Nothing to delete")
	}
	fmt.Fprintf(w, "%s %s of disk space\n", freed, units.HumanSize(float64(r.Space)))
	if !r.Deleted && len(r.Found) > kept {
		fmt.Fprintln(w, "Use --delete to delete them")
	}
}

func plural(n int, word string) string {
	switch {
	case n == 1:
		return word
	case strings.HasSuffix(word, "y"):
		return strings.TrimSuffix(word, "y") + "ies"
	}
	return word + "s"
}
