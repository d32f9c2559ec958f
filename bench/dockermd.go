package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/imgprune/imgprune/internal/testcmd"
	"github.com/imgprune/imgprune/internal/testengine"
)

// engineHeading starts the section of the results on Engine stores.
const engineHeading = "## A Docker Engine's store (kind `docker`)"

// dockerTargets are how many times faster than docker image prune -a
// imgprune's prune must be, by store size.
var dockerTargets = map[int]int{1000: 8, 3000: 25}

// render is what the results file becomes: written whole, or, when only
// Engine stores were measured, the file at path as it was with its Engine
// section replaced (added at its end when it had none), so that measuring
// that kind alone keeps the other kinds' figures.
func render(ctx context.Context, results []result, path string) (string, error) {
	if others, engines := splitEngines(results); len(others) > 0 || len(engines) == 0 {
		return markdown(ctx, results), nil
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read the results to keep: %w", err)
	}
	return spliceSection(string(old), engineSection(results)), nil
}

// splitEngines separates the results on Engine stores from the others.
func splitEngines(results []result) (others, engines []result) {
	for _, r := range results {
		if r.w.docker {
			engines = append(engines, r)
		} else {
			others = append(others, r)
		}
	}
	return others, engines
}

// spliceSection replaces doc's Engine section, from its heading to the
// next heading of its level, by section, or appends section.
func spliceSection(doc, section string) string {
	start := strings.Index(doc, engineHeading)
	if start < 0 {
		if doc != "" {
			doc = strings.TrimRight(doc, "\n") + "\n\n"
		}
		return doc + section
	}
	rest := doc[start+len(engineHeading):]
	if end := strings.Index(rest, "\n## "); end >= 0 {
		return doc[:start] + strings.TrimRight(section, "\n") + "\n" + rest[end:]
	}
	return doc[:start] + section
}

// engineSection renders the results on Engine stores: the contenders'
// times, whether both prunes left the same images, the targets.
func engineSection(results []result) string {
	var b strings.Builder
	b.WriteString(engineHeading + "\n\n")
	fmt.Fprintf(&b, "Written by `go run ./bench %s` on %s (%s, %d cores, kernel %s), imgprune %s, dockerd %s, %s, %d runs each, median.\n",
		strings.Join(os.Args[1:], " "), time.Now().UTC().Format("2006-01-02 15:04 MST"), cpuModel(), runtime.NumCPU(), command("uname", "-r"),
		command("git", "describe", "--always", "--dirty"), dockerdVersion(), dockerCLIVersion(), results[0].reps)
	b.WriteString("The store: a Docker Engine (dockerd, containerd image store, on a private containerd) with the images `docker load`ed from one archive and unpacked by it, distinct images of 4 layers (the pause binary's, shared by all; 2 of 512 bytes from a shared pool; 1 of their own), every fourth with a second name; a container created with `docker create` on one image in ten, by name, full ID, short ID or repo@digest in turn, one in ten of those started and stopped again. ")
	b.WriteString("Each contender runs on its own copy of the stopped Engine's store (containerd's root and dockerd's data root, at the path they were made at) with its own Engine, timed as a whole process once its containerd's startup collection is over. The baseline is `docker image prune -a -f` (the docker CLI against the Engine); imgprune runs with `--docker-host` (it asks the Engine about its containers) and `--root`.\n\n")
	b.WriteString("| workload | contender | seconds | × baseline | peak RSS |\n|---|---|---:|---:|---:|\n")
	for _, r := range results {
		for _, name := range r.order {
			x := r.runs[name]
			q, rss := "–", "–"
			if v, ok := r.ratio(name); ok {
				q = fmt.Sprintf("%.2f", v)
			}
			if x.rss > 0 {
				rss = fmt.Sprintf("%d MiB", x.rss>>20)
			}
			fmt.Fprintf(&b, "| %v | %s | %.2f | %s | %s |\n", r.w, name, x.wall.Seconds(), q, rss)
		}
	}
	b.WriteString("\n| workload | store | dry run agrees with the prune | docker and imgprune leave the same images |\n|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %v | %d names, %d blobs, %d snapshots, %d containers | %s | %s |\n", r.w, len(r.s.names), r.s.blobs, r.s.snaps, r.s.ctrs, r.agree, r.same)
	}
	b.WriteString("\n| target | measured | met |\n|---|---|---|\n")
	for _, t := range targets(results) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.name, t.measured, yes(t.met))
	}
	return b.String()
}

// dockerdVersion is what the Engine's dockerd says it is.
func dockerdVersion() string {
	bin, err := testengine.Bin()
	if err != nil {
		return "unknown"
	}
	return command(filepath.Join(bin, "dockerd"), "--version")
}

// dockerCLIVersion is what the docker CLI the bench drives says it is.
func dockerCLIVersion() string {
	bin, err := testcmd.DockerCLI()
	if err != nil {
		return "docker CLI unknown"
	}
	return command(bin, "--version")
}
