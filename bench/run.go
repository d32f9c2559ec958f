package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
	"golang.org/x/sync/errgroup"

	"github.com/imgprune/imgprune/internal/testctrd"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// run is one contender's measurement.
type run struct {
	wall time.Duration
	// rss is the peak resident set of the imgprune process, in bytes; 0 for
	// contenders that run in this process.
	rss    int64
	report report
	usage  childUsage
	// removed are the records the run removed.
	removed []string
	// left are the images an Engine lists after the run, and lost the IDs
	// of its containers' images it no longer has.
	left, lost []string
}

// report is the part of imgprune's JSON report the benchmark checks.
type report struct {
	ImagesDeleted []struct {
		Untagged string `json:",omitempty"`
		Deleted  string `json:",omitempty"`
	}
	SpaceReclaimed uint64
	Failures       []struct{ Name, Error string }
}

// daemonOn starts a daemon (with opts) on a copy of s, runs f against it
// and removes the copy.
func daemonOn(ctx context.Context, s seeded, f func(d *testctrd.Daemon, c *client.Client) error, opts ...testctrd.Option) error {
	dir, err := copyStore(s)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	return withDaemon(ctx, dir, f, opts...)
}

// withDaemon starts a daemon (with opts) on the store in dir, runs f
// against it and stops it.
func withDaemon(ctx context.Context, dir string, f func(d *testctrd.Daemon, c *client.Client) error, opts ...testctrd.Option) error {
	d, err := testctrd.Start(dir, opts...)
	if err != nil {
		return err
	}
	defer d.Stop()
	c, err := d.Client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := startupCollected(ctx, c, namespace); err != nil {
		return err
	}
	return f(d, c)
}

// startupCollectionDelay is when a daemon runs its first collection after
// it starts (the gc scheduler's startup_delay, 100 ms by default).
const startupCollectionDelay = 100 * time.Millisecond

// startupCollected waits until the daemon's startup collection is over. A
// host's daemon ran it long before a prune; here it would take cores from
// whatever ran first. A collection holds the metadata store's write lock,
// so a write made after it began returns once it is over.
func startupCollected(ctx context.Context, c *client.Client, ns string) error {
	time.Sleep(2 * startupCollectionDelay)
	start := time.Now()
	// Clearing a label the namespace lacks writes nothing, and marks
	// nothing for collection, but waits for the lock like any write.
	if err := c.NamespaceService().SetLabel(ctx, ns, "org.imgprune.bench", ""); err != nil {
		return fmt.Errorf("wait for the startup collection: %w", err)
	}
	log.G(ctx).Infof("the startup collection was over %v later", time.Since(start).Round(time.Millisecond))
	return nil
}

// imgprune runs the binary with args on its own copy of s: through a daemon,
// or, offline, on the copy's root with no daemon.
func imgprune(ctx context.Context, bin string, s seeded, offline bool, args ...string) (run, error) {
	if offline {
		dir, err := copyStore(s)
		if err != nil {
			return run{}, err
		}
		defer os.RemoveAll(dir)
		return exe(ctx, bin, append([]string{"--offline", "--root", filepath.Join(dir, "root")}, args...))
	}
	var r run
	err := daemonOn(ctx, s, func(d *testctrd.Daemon, c *client.Client) error {
		var err error
		args = slices.Clone(args)
		for i, a := range args {
			if a == "--root" {
				args[i+1] = filepath.Join(d.Dir, "root")
			}
		}
		if r, err = exe(ctx, bin, append([]string{"--address", d.Address}, args...)); err != nil || slices.Contains(args, "--dry-run") {
			return err
		}
		r.removed, err = removed(ctx, c, s.names)
		return err
	})
	return r, err
}

// exe runs imgprune on the benchmark's namespace and reads its report.
func exe(ctx context.Context, bin string, args []string) (run, error) {
	return exeIn(ctx, bin, append([]string{"--namespace", namespace}, args...))
}

// exeIn runs imgprune and reads its report. It runs it through this program
// started again as a small process (measureChild): a child forked from
// this big one would count its pages in its own peak RSS. Unless args name
// an Engine, imgprune asks none (not the host's, if it has one).
func exeIn(ctx context.Context, bin string, args []string) (run, error) {
	if !slices.Contains(args, "--docker-host") {
		args = append([]string{"--docker-host", "none"}, args...)
	}
	self, err := os.Executable()
	if err != nil {
		return run{}, err
	}
	usage, err := os.CreateTemp("", "bench-usage")
	if err != nil {
		return run{}, err
	}
	usage.Close()
	defer os.Remove(usage.Name())
	cmd := exec.CommandContext(ctx, self, append([]string{measureFlag, usage.Name(), bin}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return run{}, fmt.Errorf("imgprune %v: %w\n%s", args, err, stderr.String())
	}
	var r run
	b, err := os.ReadFile(usage.Name())
	if err == nil {
		err = json.Unmarshal(b, &r.usage)
	}
	if err != nil {
		return run{}, fmt.Errorf("imgprune %v: usage: %w", args, err)
	}
	r.wall, r.rss = time.Duration(r.usage.WallNanos), r.usage.MaxRSS
	if err := json.Unmarshal(stdout.Bytes(), &r.report); err != nil {
		return run{}, fmt.Errorf("imgprune %v: report: %w", args, err)
	}
	if len(r.report.Failures) > 0 {
		return run{}, fmt.Errorf("imgprune %v failed: %v", args, r.report.Failures)
	}
	return r, nil
}

// measureFlag starts this program as measureChild.
const measureFlag = "-measure-child"

// childUsage is what measureChild measures.
type childUsage struct {
	WallNanos int64
	MaxRSS    int64
}

// measureChild runs args[1:] and writes its wall time and peak RSS to the
// file args[0]; its output is the child's.
func measureChild(args []string) {
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	u := childUsage{WallNanos: int64(time.Since(start))}
	if cmd.ProcessState != nil {
		u.MaxRSS = cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024
	}
	b, _ := json.Marshal(u)
	if werr := os.WriteFile(args[0], b, 0o600); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// removed lists which of names are no longer in the store.
func removed(ctx context.Context, c *client.Client, names []string) ([]string, error) {
	records, err := c.ImageService().List(namespaces.WithNamespace(ctx, namespace))
	if err != nil {
		return nil, err
	}
	left := map[string]bool{}
	for _, r := range records {
		left[r.Name] = true
	}
	var out []string
	for _, n := range names {
		if !left[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// floor deletes exactly names and runs one collection: the least any
// prune that removes them must do through the daemon.
func floor(ctx context.Context, s seeded, names []string) (run, error) {
	return deleteEach(ctx, s, names, false, 1)
}

// floorInFlight is the floor with inFlight deletions at once: whether the
// daemon takes concurrent deletions faster.
func floorInFlight(ctx context.Context, s seeded, names []string, inFlight int) (run, error) {
	return deleteEach(ctx, s, names, false, inFlight)
}

// perName deletes names one at a time, each with a synchronous collection,
// as Moby's and nerdctl's image services do.
func perName(ctx context.Context, s seeded, names []string) (run, error) {
	return deleteEach(ctx, s, names, true, 1)
}

// deleteEach times the deletion of names, inFlight at once, each with its
// own collection or all followed by one.
func deleteEach(ctx context.Context, s seeded, names []string, collectEach bool, inFlight int) (run, error) {
	var r run
	err := daemonOn(ctx, s, func(_ *testctrd.Daemon, c *client.Client) error {
		start := time.Now()
		err := deleteNames(ctx, c, names, collectEach, inFlight)
		r.wall = time.Since(start)
		return err
	})
	return r, err
}

// deleteNames deletes names from the workload's namespace, inFlight at
// once, each with its own synchronous collection or all followed by one.
func deleteNames(ctx context.Context, c *client.Client, names []string, collectEach bool, inFlight int) error {
	var opts []images.DeleteOpt
	if collectEach {
		opts = append(opts, images.SynchronousDelete())
	}
	ctx = namespaces.WithNamespace(ctx, namespace)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(inFlight)
	for _, n := range names {
		g.Go(func() error { return c.ImageService().Delete(gctx, n, opts...) })
	}
	if err := g.Wait(); err != nil || collectEach {
		return err
	}
	return (imgleases.Collector{Leases: c.LeasesService()}).Collect(ctx)
}
