package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

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
