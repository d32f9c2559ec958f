// Command bench measures imgprune's prune against the least any prune must
// do, on stores seeded the same way each time, and writes the results.
//
// For each workload it seeds a private containerd once, then gives every
// contender its own copy of the store and its own daemon: imgprune prune -a
// with and without the disk check, its dry run and its offline prune, the
// floor (the names imgprune removed, deleted one by one, then one
// collection) and, up to 1,000 names, the per-name pattern (a synchronous
// collection per name). On a Kubernetes node's store (kind cri) it times
// imgprune against crictl rmi --prune, and on a Docker Engine's (kind
// docker, up to 3,000 images) against docker image prune -a. It needs root,
// the containerd of make containerd, and for those two kinds the tools of
// make node-deps and make e2e-deps.
//
//	go run ./bench [-names 1000,10000] [-kinds content,unpacked,cri,docker] [-huge] [-o bench/RESULTS.md]
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// contender names.
const (
	cFloor     = "floor: delete the same names, one GC"
	cPrune     = "imgprune prune -a"
	cNoDisk    = "imgprune prune -a, no disk check"
	cDry       = "imgprune prune -a --dry-run"
	cGoal      = "imgprune prune -a --dry-run --until-free 100%"
	cOffline   = "imgprune prune -a --offline"
	cPerName   = "per-name synchronous GC"
	cInFlight  = "floor, %d deletions in flight"
	perNameMax = 1000
	criMax     = 1000
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == measureFlag {
		measureChild(os.Args[2:])
		return
	}
	var (
		names   = flag.String("names", "1000,10000", "workload sizes, in image names; empty for none")
		kinds   = flag.String("kinds", "content,unpacked,cri,docker", "content (blobs only), unpacked (into overlayfs), cri (a Kubernetes node's store, up to 1,000 images), docker (a Docker Engine's store, up to 3,000 images), any of them")
		huge    = flag.Bool("huge", false, "also time the dry run over 100,000 names")
		out     = flag.String("o", "bench/RESULTS.md", "where to write the results")
		binary  = flag.String("imgprune", "_output/bin/imgprune", "the imgprune binary to measure")
		verbose = flag.Bool("v", false, "log each step")
		keep    = flag.Bool("keep", false, "keep each seeded store (its daemon directory), to profile against")
		runs    = flag.Int("runs", 3, "runs of each contender; the median is kept, since a disk's sync times vary")
	)
	flag.Parse()
	if !*verbose {
		_ = log.SetLevel("warn")
	}
	var ws []workload
	for _, n := range strings.FieldsFunc(*names, func(r rune) bool { return r == ',' }) {
		size, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || size < 10 {
			fatalf("invalid -names %q: want sizes of at least 10", *names)
		}
		for _, k := range strings.Split(*kinds, ",") {
			switch {
			case k != "content" && k != "unpacked" && k != "cri" && k != "docker":
				fatalf("invalid -kinds %q: want content, unpacked, cri, docker or some of them", *kinds)
			case k == "cri" && size > criMax:
				continue // crictl's prune of 10,000 images takes too long to repeat
			case k == "docker" && size > dockerMax:
				continue // so do seeding an Engine and its prune
			}
			ws = append(ws, workload{names: size, unpacked: k == "unpacked", cri: k == "cri", docker: k == "docker"})
		}
	}
	if *huge {
		ws = append(ws, workload{names: 100000, dryOnly: true})
	}
	if len(ws) == 0 {
		fatalf("nothing to measure: give -names or -huge")
	}
	// The daemons' directories are removed by the benchmark itself.
	os.Setenv("KEEP", "1")
	ctx := context.Background()
	var results []result
	for _, w := range ws {
		if *runs < 1 {
			fatalf("invalid -runs %d: want at least 1", *runs)
		}
		r, err := measure(ctx, *binary, w, *keep, *runs)
		if err != nil {
			fatalf("%v: %v", w, err)
		}
		results = append(results, r)
		r.print(os.Stdout)
	}
	md, err := render(ctx, results, *out)
	if err != nil {
		fatalf("%v", err)
	}
	fmt.Println(md)
	if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

// result is one workload's measurements.
type result struct {
	w     workload
	s     seeded
	runs  map[string]run
	order []string
	// reps is how many times each contender ran.
	reps int
	// agree tells whether the dry run reported the same removals and bytes
	// as the prune.
	agree string
	// probes are what another writer saw beside each contender, in
	// probeOrder.
	probes     map[string]probeRun
	probeOrder []string
	// same tells, on an Engine's store, whether imgprune's prune left the
	// images docker's did, every container's image among them.
	same string
}

func (r *result) add(name string, x run) {
	r.runs[name] = x
	r.order = append(r.order, name)
}

// seedDir is where w is seeded. A content-only store is seeded in memory
// where the machine has a tmpfs, since the local content store syncs every
// blob it commits and seeding is not what is measured. An unpacked store is
// seeded on disk: the snapshotter records each snapshot's usage as the
// disk under it counts it. Each contender's copy is on disk.
func seedDir(w workload) string {
	if w.unpacked || w.cri || w.docker {
		return ""
	}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() && unix.Access("/dev/shm", unix.W_OK) == nil {
		return "/dev/shm"
	}
	return ""
}

// measure seeds w and runs the contenders on it.
func measure(ctx context.Context, bin string, w workload, keep bool, runs int) (result, error) {
	dir, err := os.MkdirTemp(seedDir(w), "bench")
	if err != nil {
		return result{}, err
	}
	if keep {
		fmt.Fprintf(os.Stderr, "%v: the seeded store stays in %s (start a daemon on it with hack/containerd-up.sh %s)\n", w, dir, dir)
	} else {
		defer os.RemoveAll(dir)
	}
	fmt.Fprintf(os.Stderr, "%v: seeding\n", w)
	res := result{w: w, runs: map[string]run{}, reps: runs}
	step := func(name string, f func() (run, error)) error {
		var xs []run
		for i := range runs {
			fmt.Fprintf(os.Stderr, "%v: %s (%d of %d)\n", w, name, i+1, runs)
			x, err := f()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			xs = append(xs, x)
		}
		res.add(name, median(xs))
		return nil
	}
	if w.cri {
		cn, err := measureCRI(ctx, bin, w, step, dir)
		res.s = cn.seeded
		if cn.reg != nil {
			cn.reg.Stop()
		}
		res.agree = agree(res.runs[cCRIDry].report, res.runs[cCRIPrune].report)
		return res, err
	}
	if w.docker {
		es, err := measureDocker(ctx, bin, w, step, dir)
		res.s = es.seeded
		res.agree = agree(res.runs[cDockerDry].report, res.runs[cDockerPrune].report)
		res.same = sameLeft(res.runs[cDocker], res.runs[cDockerPrune])
		return res, err
	}
	s, err := w.seed(ctx, dir)
	if err != nil {
		return result{}, err
	}
	res.s = s
	fmt.Fprintf(os.Stderr, "%v: seeded %d names, %d blobs, %d snapshots, %d containers in %v\n", w, len(s.names), s.blobs, s.snaps, s.ctrs, s.took.Round(time.Second))
	all := []string{"prune", "-a", "--force", "--format", "json"}
	if err := step(cDry, func() (run, error) {
		return imgprune(ctx, bin, s, false, append(all, "--dry-run", "--root", "")...)
	}); err != nil {
		return res, err
	}
	// A goal no prune reaches: the search for the fewest images goes the
	// whole way, its worst case, and chooses every image the dry run does.
	if err := step(cGoal, func() (run, error) {
		return imgprune(ctx, bin, s, false, append(all, "--dry-run", "--until-free", "100%", "--root", "")...)
	}); err != nil || w.dryOnly {
		return res, err
	}
	if err := step(cPrune, func() (run, error) { return imgprune(ctx, bin, s, false, append(all, "--root", "")...) }); err != nil {
		return res, err
	}
	gone := res.runs[cPrune].removed
	res.agree = agree(res.runs[cDry].report, res.runs[cPrune].report)
	steps := []contender{
		{cNoDisk, func() (run, error) { return imgprune(ctx, bin, s, false, append(all, "--root=")...) }},
		{cFloor, func() (run, error) { return floor(ctx, s, gone) }},
		{cOffline, func() (run, error) { return imgprune(ctx, bin, s, true, all...) }},
	}
	if !w.unpacked {
		for _, n := range []int{4, 16} {
			steps = append(steps, contender{fmt.Sprintf(cInFlight, n), func() (run, error) { return floorInFlight(ctx, s, gone, n) }})
		}
	}
	if len(s.names) <= perNameMax {
		steps = append(steps, contender{cPerName, func() (run, error) { return perName(ctx, s, gone) }})
	}
	for _, st := range steps {
		if err := step(st.name, st.f); err != nil {
			return res, err
		}
	}
	if len(s.names) >= probeMin {
		res.probes, res.probeOrder, err = measureProbe(ctx, bin, s, gone, runs)
	}
	return res, err
}

// contender is one way to remove the names, measured.
type contender struct {
	name string
	f    func() (run, error)
}

// median is the run of median wall time, with the highest peak RSS of all.
func median(xs []run) run {
	slices.SortFunc(xs, func(a, b run) int { return cmp.Compare(a.wall, b.wall) })
	m := xs[len(xs)/2]
	for _, x := range xs {
		m.rss = max(m.rss, x.rss)
	}
	return m
}

// agree compares a dry run's report with a prune's.
func agree(dry, done report) string {
	key := func(r report) []string {
		var out []string
		for _, e := range r.ImagesDeleted {
			out = append(out, e.Untagged+"|"+e.Deleted)
		}
		slices.Sort(out)
		return out
	}
	switch {
	case !slices.Equal(key(dry), key(done)):
		return fmt.Sprintf("no: %d entries predicted, %d done", len(dry.ImagesDeleted), len(done.ImagesDeleted))
	case dry.SpaceReclaimed != done.SpaceReclaimed:
		return fmt.Sprintf("no: %d bytes predicted, %d freed", dry.SpaceReclaimed, done.SpaceReclaimed)
	}
	return fmt.Sprintf("yes: %d entries, %d bytes", len(done.ImagesDeleted), done.SpaceReclaimed)
}

// ratio is a run's time over the baseline's: the floor's, on a CRI node
// crictl's prune, on an Engine's store the Engine's prune.
func (r result) ratio(name string) (float64, bool) {
	base := cFloor
	switch {
	case r.w.cri:
		base = cCrictl
	case r.w.docker:
		base = cDocker
	}
	f, ok := r.runs[base]
	x, ok2 := r.runs[name]
	if !ok || !ok2 || f.wall == 0 {
		return 0, false
	}
	return x.wall.Seconds() / f.wall.Seconds(), true
}

func (r result) print(w io.Writer) {
	fmt.Fprintf(w, "\n%v (%d blobs, %d snapshots, %d containers; seeded in %v)\n", r.w, r.s.blobs, r.s.snaps, r.s.ctrs, r.s.took.Round(time.Second))
	for _, name := range r.order {
		x := r.runs[name]
		fmt.Fprintf(w, "  %-40s %8.2f s", name, x.wall.Seconds())
		if q, ok := r.ratio(name); ok {
			fmt.Fprintf(w, "  %5.2f× baseline", q)
		}
		if x.rss > 0 {
			fmt.Fprintf(w, "  peak RSS %4d MiB", x.rss>>20)
		}
		fmt.Fprintln(w)
	}
	if r.agree != "" {
		fmt.Fprintf(w, "  dry run agrees with the prune: %s\n", r.agree)
	}
	for _, name := range r.probeOrder {
		p := r.probes[name]
		fmt.Fprintf(w, "  probe beside %-36s %5d writes, p99 %v, longest %v, longest between collections %v; %d collections, last %v, longest %v, blocking %v\n",
			name, len(p.waits), ms(p.p99()), ms(p.longest()), ms(p.longestBetween()), len(p.gcs), ms(p.last()), ms(p.longestCollection()), ms(p.blocking()))
	}
	if r.same != "" {
		fmt.Fprintf(w, "  docker and imgprune leave the same images: %s\n", r.same)
	}
}

// ms rounds d for a table.
func ms(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }

// markdown renders the results with the machine and the versions.
func markdown(ctx context.Context, results []result) string {
	results, engines := splitEngines(results)
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmark results\n\nWritten by `make bench` (`go run ./bench`) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s, %d cores, %s, kernel %s\n", cpuModel(), runtime.NumCPU(), memTotal(), command("uname", "-r"))
	fmt.Fprintf(&b, "- Versions: %s, containerd %s, imgprune %s\n", runtime.Version(), command(containerdBinary(), "--version"), command("git", "describe", "--always", "--dirty"))
	b.WriteString("- Workloads: names over 80 % as many targets, 3 layers each (2 from a shared pool), every fourth target with a second name, one target in ten used by a container record (by name, full ID, short ID or digest in turn), no dangling records. Unpacked stores have every image unpacked into overlayfs and each container a rootfs snapshot.\n")
	fmt.Fprintf(&b, "- Each contender runs on its own copy of the seeded store with its own daemon, timed once that daemon's startup collection is over (on a host it ran long before), %d times; the table gives the median time and the highest peak RSS. The floor deletes exactly the names imgprune removed, then runs one collection, in-process; imgprune is timed as a whole process, from start to exit.\n\n", results[0].reps)
	b.WriteString("- CRI node: images pulled with crictl from a local registry into containerd's CRI plugin (`k8s.io`, three records each), a pod on one image in ten whose container was created by tag, repo@digest or image ID in turn, and a tag pulled again onto a new image after a container was made from it; the pods stopped. The baseline there is `crictl rmi --prune` (one `RemoveImage`, with its own synchronous collection, per unused image), timed as a whole process.\n\n")
	b.WriteString("| workload | contender | seconds | × baseline | peak RSS |\n|---|---|---:|---:|---:|\n")
	for _, r := range results {
		for _, name := range r.order {
			x := r.runs[name]
			q := "–"
			if v, ok := r.ratio(name); ok {
				q = fmt.Sprintf("%.2f", v)
			}
			rss := "–"
			if x.rss > 0 {
				rss = fmt.Sprintf("%d MiB", x.rss>>20)
			}
			fmt.Fprintf(&b, "| %v | %s | %.2f | %s | %s |\n", r.w, name, x.wall.Seconds(), q, rss)
		}
	}
	b.WriteString("\n| workload | store | dry run agrees with the prune |\n|---|---|---|\n")
	for _, r := range results {
		agree := r.agree
		if agree == "" {
			agree = "– (dry run only)"
		}
		fmt.Fprintf(&b, "| %v | %d blobs, %d snapshots, %d containers | %s |\n", r.w, r.s.blobs, r.s.snaps, r.s.ctrs, agree)
	}
	writeProbes(&b, results)
	b.WriteString("\n## Targets\n\n| target | measured | met |\n|---|---|---|\n")
	for _, t := range targets(results) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.name, t.measured, yes(t.met))
	}
	if len(engines) > 0 {
		b.WriteString("\n" + engineSection(engines))
	}
	return b.String()
}

type target struct {
	name, measured string
	met            bool
}

// targets checks the results against imgprune's targets, where measured.
func targets(results []result) []target {
	var out []target
	for _, r := range results {
		w := r.w
		prune, hasPrune := r.ratio(cPrune)
		switch {
		case w.dryOnly:
			x := r.runs[cDry]
			out = append(out, target{fmt.Sprintf("%v: dry run under 3 s, peak RSS under 600 MiB", w), fmt.Sprintf("%.2f s, %d MiB", x.wall.Seconds(), x.rss>>20), x.wall < 3*time.Second && x.rss < 600<<20})
			if g, ok := r.runs[cGoal]; ok {
				out = append(out, target{fmt.Sprintf("%v: a goal no prune reaches searched within 1.5× the dry run, peak RSS under 600 MiB", w), fmt.Sprintf("%.1f× (%.2f s), %d MiB", g.wall.Seconds()/x.wall.Seconds(), g.wall.Seconds(), g.rss>>20), g.wall.Seconds() <= 1.5*x.wall.Seconds() && g.rss < 600<<20})
			}
			continue
		case w.docker:
			if prune, ok := r.ratio(cDockerPrune); ok {
				if want, ok := dockerTargets[w.names]; ok {
					out = append(out, target{fmt.Sprintf("%v: prune -a at least %d× faster than docker image prune -a", w, want), fmt.Sprintf("%.1f×", 1/prune), 1/prune >= float64(want)})
				}
			}
			continue
		case w.cri:
			if prune, ok := r.ratio(cCRIPrune); ok {
				out = append(out, target{fmt.Sprintf("%v: prune -a at least 5× faster than crictl rmi --prune", w), fmt.Sprintf("%.1f×", 1/prune), prune <= 0.2})
			}
			if dry, ok := r.ratio(cCRIDry); ok {
				out = append(out, target{fmt.Sprintf("%v: dry run under 5 %% of crictl rmi --prune", w), fmt.Sprintf("%.1f %%", 100*dry), dry < 0.05})
			}
			continue
		case !hasPrune:
			continue
		}
		if w.names >= 10000 {
			out = append(out, target{fmt.Sprintf("%v: prune -a within 1.25× of the floor", w), fmt.Sprintf("%.2f×", prune), prune <= 1.25})
			if !w.unpacked {
				dry, _ := r.ratio(cDry)
				out = append(out, target{fmt.Sprintf("%v: dry run within 10 %% of the floor's time", w), fmt.Sprintf("%.0f %%", 100*dry), dry <= 0.10})
				rss := r.runs[cPrune].rss
				out = append(out, target{fmt.Sprintf("%v: prune -a peak RSS under 150 MiB", w), fmt.Sprintf("%d MiB", rss>>20), rss < 150<<20})
				// --offline has no speed target: its worth is pruning a
				// stopped daemon's full disk. Its figure is in the table.
			}
		}
		if w.unpacked {
			with, without := r.runs[cPrune].wall, r.runs[cNoDisk].wall
			cost := (with - without).Seconds() / with.Seconds()
			out = append(out, target{fmt.Sprintf("%v: the disk check costs at most 10 %% of the prune", w), fmt.Sprintf("%.0f %%", 100*cost), cost <= 0.10})
		}
		out = append(out, probeTargets(r)...)
		if x, ok := r.runs[cPerName]; ok && w.names == 1000 && !w.unpacked {
			speed := x.wall.Seconds() / r.runs[cPrune].wall.Seconds()
			out = append(out, target{fmt.Sprintf("%v: at least 20× faster than the per-name pattern", w), fmt.Sprintf("%.1f×", speed), speed >= 20})
		}
	}
	return out
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

func command(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func containerdBinary() string {
	if bin := os.Getenv("IMGPRUNE_CONTAINERD_BIN"); bin != "" {
		return bin
	}
	return "_output/bin/containerd"
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return fmt.Sprintf("%d GiB RAM", kb>>20)
		}
	}
	return "unknown RAM"
}
