package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgprune/imgprune/internal/testctrd"
)

// The probe: another writer beside a prune, as a pull or a tag is.
const (
	cProbeIdle    = "an idle daemon"
	cProbePrune   = "imgprune prune -a"
	cProbePerName = "the per-name pattern, first %d names"
	// probeMin is the least workload the probe runs on.
	probeMin = 10000
	// probeInterval is how often the probe writes.
	probeInterval = 10 * time.Millisecond
	// probeIdleFor is how long the probe runs beside an idle daemon.
	probeIdleFor = 5 * time.Second
	// probeLead is how long the probe runs before and after what it is
	// beside.
	probeLead = 200 * time.Millisecond
	// perNameSample is how many names the per-name pattern deletes beside
	// the probe: its total blocking is extrapolated from them to every name
	// imgprune removed, since all would take many minutes.
	perNameSample = 100
	// probeNamespace holds the probe's records, apart from the workload's.
	probeNamespace = "bench-probe"
)

// probeRun is what the probe saw beside one contender.
type probeRun struct {
	// waits are the probe's writes, each one record created or deleted.
	waits []time.Duration
	// between are the writes that overlapped no collection: what the
	// contender's own writes made them wait.
	between []time.Duration
	// gcs are the collections the daemon logged while the contender ran:
	// how long each held the metadata store's write lock, during which no
	// write anywhere in the daemon commits.
	gcs []time.Duration
	// names is how many names the contender removed, and all how many the
	// whole pattern would: per name, its blocking scales by all/names.
	names, all int
}

func (p probeRun) longest() time.Duration { return longestOf(p.waits) }

func (p probeRun) p99() time.Duration { return p99(p.waits) }

// longestBetween is the longest wait that overlapped no collection.
func (p probeRun) longestBetween() time.Duration { return longestOf(p.between) }

// longestCollection is the longest hold of the write lock.
func (p probeRun) longestCollection() time.Duration { return longestOf(p.gcs) }

// last is the hold of the collection that finished last while the
// contender ran: imgprune's own, which it asks for after its deletions.
func (p probeRun) last() time.Duration {
	if len(p.gcs) == 0 {
		return 0
	}
	return p.gcs[len(p.gcs)-1]
}

// longestOf is the longest of ds, 0 for none.
func longestOf(ds []time.Duration) time.Duration {
	return slices.Max(append([]time.Duration{0}, ds...))
}

func p99(waits []time.Duration) time.Duration {
	if len(waits) == 0 {
		return 0
	}
	s := slices.Clone(waits)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// blocking is the collections' total hold of the write lock, scaled to
// every name for a pattern that ran on a sample of them.
func (p probeRun) blocking() time.Duration {
	var sum time.Duration
	for _, d := range p.gcs {
		sum += d
	}
	if p.names > 0 && p.all > p.names {
		sum = sum * time.Duration(p.all) / time.Duration(p.names)
	}
	return sum
}

// probeDaemon is the daemon the probe runs on: containerd's own collection
// schedule, as in production, and the trace log in which it writes how
// long each collection held the write lock.
var probeDaemon = []testctrd.Option{testctrd.WithOwnCollections(), testctrd.WithTraceLog()}

// probeContender is what the probe runs beside, on a daemon.
type probeContender struct {
	name string
	f    func(d *testctrd.Daemon, c *client.Client) error
}

// measureProbe runs the probe beside an idle daemon, imgprune's prune and
// the per-name pattern over a sample of gone, each on its own copy of s.
func measureProbe(ctx context.Context, bin string, s seeded, gone []string, runs int) (map[string]probeRun, []string, error) {
	sample := gone[:min(perNameSample, len(gone))]
	perName := fmt.Sprintf(cProbePerName, len(sample))
	contenders := []probeContender{
		{cProbeIdle, func(*testctrd.Daemon, *client.Client) error { time.Sleep(probeIdleFor); return nil }},
		{cProbePrune, func(d *testctrd.Daemon, _ *client.Client) error {
			_, err := exe(ctx, bin, []string{"--address", d.Address, "prune", "-a", "--force", "--format", "json", "--root", filepath.Join(d.Dir, "root")})
			return err
		}},
		{perName, func(_ *testctrd.Daemon, c *client.Client) error { return deleteNames(ctx, c, sample, true, 1) }},
	}
	// The floor's deletions, 16 in flight and 4 (imgprune's): what a
	// prune's writes alone make another writer wait.
	for _, n := range []int{16, 4} {
		contenders = append(contenders, probeContender{fmt.Sprintf(cInFlight, n), func(_ *testctrd.Daemon, c *client.Client) error { return deleteNames(ctx, c, gone, false, n) }})
	}
	out := map[string]probeRun{}
	var order []string
	for _, ct := range contenders {
		var xs []probeRun
		for i := range runs {
			fmt.Fprintf(os.Stderr, "probe beside %s (%d of %d)\n", ct.name, i+1, runs)
			var p probeRun
			err := daemonOn(ctx, s, func(d *testctrd.Daemon, c *client.Client) error {
				var err error
				p, err = probeBeside(ctx, d, func() error { return ct.f(d, c) })
				return err
			}, probeDaemon...)
			if err != nil {
				return nil, nil, fmt.Errorf("probe beside %s: %w", ct.name, err)
			}
			if ct.name == perName {
				p.names, p.all = len(sample), len(gone)
			}
			xs = append(xs, p)
		}
		// The run whose longest wait is the median.
		slices.SortFunc(xs, func(a, b probeRun) int { return cmp.Compare(a.longest(), b.longest()) })
		out[ct.name] = xs[len(xs)/2]
		order = append(order, ct.name)
	}
	return out, order, nil
}

// probeBeside runs the probe on d while f runs, from probeLead before it
// to probeLead after, and reads the collections d logged meanwhile.
func probeBeside(ctx context.Context, d *testctrd.Daemon, f func() error) (probeRun, error) {
	logPath := filepath.Join(d.Dir, "containerd.log")
	st, err := os.Stat(logPath)
	if err != nil {
		return probeRun{}, err
	}
	pc, err := client.New(d.Address)
	if err != nil {
		return probeRun{}, err
	}
	defer pc.Close()
	stop := make(chan struct{})
	var waits []write
	var perr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		waits, perr = probe(namespaces.WithNamespace(ctx, probeNamespace), pc.ImageService(), stop)
	}()
	began := time.Now()
	time.Sleep(probeLead)
	err = f()
	end := time.Now()
	time.Sleep(probeLead)
	close(stop)
	<-done
	if err == nil {
		err = perr
	}
	if err != nil {
		return probeRun{}, err
	}
	gcs, err := collections(logPath, st.Size(), began, end)
	if err != nil {
		return probeRun{}, err
	}
	var p probeRun
	for _, g := range gcs {
		p.gcs = append(p.gcs, g.held)
	}
	for _, w := range waits {
		p.waits = append(p.waits, w.took)
		if !slices.ContainsFunc(gcs, w.overlaps) {
			p.between = append(p.between, w.took)
		}
	}
	return p, nil
}

// write is one write of the probe.
type write struct {
	start time.Time
	took  time.Duration
}

// overlaps tells whether w was under way while c held the write lock.
func (w write) overlaps(c collection) bool {
	return w.start.Before(c.at) && w.start.Add(w.took).After(c.at.Add(-c.held))
}

// probe creates and deletes one small image record every probeInterval
// until stop, and gives how long each of those writes took. A write that
// waits longer than the interval skips the ticks it missed.
func probe(ctx context.Context, is images.Store, stop <-chan struct{}) ([]write, error) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	target := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("imgprune bench probe"), Size: 20}
	var waits []write
	timed := func(f func() error) error {
		start := time.Now()
		err := f()
		waits = append(waits, write{start, time.Since(start)})
		return err
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return waits, nil
		case <-t.C:
		}
		name := fmt.Sprintf("example.com/bench/probe:%d", i)
		if err := timed(func() error {
			_, err := is.Create(ctx, images.Image{Name: name, Target: target})
			return err
		}); err != nil {
			return nil, fmt.Errorf("probe: create: %w", err)
		}
		if err := timed(func() error { return is.Delete(ctx, name) }); err != nil {
			return nil, fmt.Errorf("probe: delete: %w", err)
		}
	}
}

// collection is one collection the daemon logged.
type collection struct {
	// at is when the collection released the write lock.
	at   time.Time
	held time.Duration
}

// collections reads the collections logged in the daemon's log past
// offset that held the write lock between start and end: the scheduler's
// trace line "garbage collected", whose d is the time the collection held
// the lock. The line comes once the content and snapshot cleanups, which
// start as the lock is released, are over: the lock was released their
// longest d (their own trace lines, just before) earlier.
func collections(logPath string, offset int64, start, end time.Time) ([]collection, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return nil, err
	}
	var out []collection
	var cleanup time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		isCleanup := strings.Contains(line, `msg="content garbage collected"`) || strings.Contains(line, `msg="snapshot garbage collected"`)
		if !isCleanup && !strings.Contains(line, `msg="garbage collected"`) {
			continue
		}
		c, err := parseCollection(line)
		if err != nil {
			return nil, err
		}
		if isCleanup {
			cleanup = max(cleanup, c.held)
			continue
		}
		c.at = c.at.Add(-cleanup)
		cleanup = 0
		if c.at.Add(-c.held).After(start) && !c.at.After(end) {
			out = append(out, c)
		}
	}
	return out, sc.Err()
}

// parseCollection reads a line such as
// time="2026-12-03T07:01:02.123456789Z" level=trace msg="garbage collected" d=12.3ms
func parseCollection(line string) (collection, error) {
	var c collection
	for _, field := range strings.Fields(line) {
		k, v, _ := strings.Cut(field, "=")
		var err error
		switch k {
		case "time":
			c.at, err = time.Parse(time.RFC3339Nano, strings.Trim(v, `"`))
		case "d":
			c.held, err = time.ParseDuration(strings.Trim(v, `"`))
		}
		if err != nil {
			return c, fmt.Errorf("collection log line %q: %w", line, err)
		}
	}
	if c.at.IsZero() || c.held == 0 {
		return c, fmt.Errorf("collection log line %q: no time or d", line)
	}
	return c, nil
}

// writeProbes renders what the probe saw, where it ran.
func writeProbes(b *strings.Builder, results []result) {
	first := true
	for _, r := range results {
		if len(r.probes) == 0 {
			continue
		}
		if first {
			fmt.Fprintf(b, "\n## Other writers during a prune\n\n"+
				"A probe creates and deletes one image record (another namespace, a pull's or a tag's write) every %v, "+
				"from %v before what it runs beside until %v after, on a daemon with containerd's own collection schedule. "+
				"A wait is one such write. The collections are the ones the daemon logged meanwhile, with the time each held "+
				"the metadata store's write lock, while no write commits; the last is imgprune's own. "+
				"The per-name pattern (a synchronous collection per name, as Moby's image service does) runs on the first "+
				"%d names imgprune removed; its blocking is extrapolated to all of them.\n\n"+
				"| workload | beside | writes | p99 wait | longest wait | longest wait between collections | collections | last collection | longest collection | blocking |\n"+
				"|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n", probeInterval, probeLead, probeLead, perNameSample)
			first = false
		}
		for _, name := range r.probeOrder {
			p := r.probes[name]
			blocking := fmt.Sprint(ms(p.blocking()))
			if p.all > p.names && p.names > 0 {
				blocking = fmt.Sprintf("%v (%d names)", p.blocking().Round(time.Second), p.all)
			}
			fmt.Fprintf(b, "| %v | %s | %d | %v | %v | %v | %d | %v | %v | %s |\n", r.w, name, len(p.waits), ms(p.p99()), ms(p.longest()),
				ms(p.longestBetween()), len(p.gcs), ms(p.last()), ms(p.longestCollection()), blocking)
		}
	}
}

// probeTargets checks what the probe saw beside imgprune: its longest wait
// no longer than imgprune's one collection and the write's own commit after
// it (the longest wait between collections), and at least 20× shorter than
// the per-name pattern's total blocking. A write that arrives as the
// collection takes the lock waits for all of it and then commits: no prune
// that collects can make that wait shorter than the collection.
func probeTargets(r result) []target {
	pr, ok := r.probes[cProbePrune]
	if !ok {
		return nil
	}
	commit := pr.longestBetween()
	out := []target{{
		fmt.Sprintf("%v: another writer's longest wait during prune -a no longer than its one collection and one commit", r.w),
		fmt.Sprintf("%v against %v + %v", ms(pr.longest()), ms(pr.last()), ms(commit)),
		pr.last() > 0 && pr.longest() <= pr.last()+commit,
	}}
	for _, name := range r.probeOrder {
		pn := r.probes[name]
		if pn.names == 0 {
			continue
		}
		x := pn.blocking().Seconds() / pr.longest().Seconds()
		out = append(out, target{
			fmt.Sprintf("%v: that wait at least 20× shorter than the per-name pattern's total blocking", r.w),
			fmt.Sprintf("%.0f× (%v against %v)", x, ms(pr.longest()), pn.blocking().Round(time.Second)),
			x >= 20,
		})
	}
	return out
}
