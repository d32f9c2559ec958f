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
	err = measureStore(ctx, bin, w, step, dir, &res)
	return res, err
}

// measureStore seeds a content or unpacked store in dir and measures each
// contender on it, into res.
func measureStore(ctx context.Context, bin string, w workload, step func(string, func() (run, error)) error, dir string, res *result) error {
	s, err := w.seed(ctx, dir)
	if err != nil {
		return err
	}
	res.s = s
	fmt.Fprintf(os.Stderr, "%v: seeded %d names, %d blobs, %d snapshots, %d containers in %v\n", w, len(s.names), s.blobs, s.snaps, s.ctrs, s.took.Round(time.Second))
	all := []string{"prune", "-a", "--force", "--format", "json"}
	if err := step(cDry, func() (run, error) {
		return imgprune(ctx, bin, s, false, append(all, "--dry-run", "--root", "")...)
	}); err != nil {
		return err
	}
	// A goal no prune reaches: the search for the fewest images goes the
	// whole way, its worst case, and chooses every image the dry run does.
	if err := step(cGoal, func() (run, error) {
		return imgprune(ctx, bin, s, false, append(all, "--dry-run", "--until-free", "100%", "--root", "")...)
	}); err != nil || w.dryOnly {
		return err
	}
	if err := step(cPrune, func() (run, error) { return imgprune(ctx, bin, s, false, append(all, "--root", "")...) }); err != nil {
		return err
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
			return err
		}
	}
	if len(s.names) >= probeMin {
		res.probes, res.probeOrder, err = measureProbe(ctx, bin, s, gone, res.reps)
	}
	return err
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
