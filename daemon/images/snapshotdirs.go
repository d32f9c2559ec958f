package images

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/continuity/fs"

	"github.com/imgprune/imgprune/daemon/reach"
)

// snapshotDirs is, per snapshotter, what a daemon's root holds of its
// snapshots: the entries of its snapshots directory and the snapshot
// records of every namespace. The native and overlayfs snapshotters keep
// one directory a snapshot there; containerd's collector only logs one they
// cannot remove. A collection removes the snapshots of every namespace, so
// directories are weighed against the records of all of them.
type snapshotDirs map[string]snapshotState

type snapshotState struct {
	entries map[string]bool
	records int
}

// listSnapshotDirs reads the state of snapshotters under root before a
// collection: the directories, then the records of every namespace. A
// collection the daemon runs by itself meanwhile can only make the records
// fewer than the directories, never the other way round: a removal it made
// is not taken for one that stayed on disk. (The records listed earlier for
// the plan may predate such a collection: they are not used here.) A
// snapshotter whose directory or records cannot be read is left out:
// nothing is checked of it.
func (s *Service) listSnapshotDirs(ctx context.Context, root string, snapshotters map[string]bool) snapshotDirs {
	dirs := snapshotDirs{}
	for name := range snapshotters {
		entries, err := readNames(snapshotsDir(root, name))
		if err != nil {
			continue
		}
		records, err := s.countSnapshots(ctx, name)
		if err != nil {
			continue
		}
		dirs[name] = snapshotState{entries: entries, records: records}
	}
	return dirs
}

// countSnapshots counts the snapshot records of a snapshotter in every
// namespace.
func (s *Service) countSnapshots(ctx context.Context, name string) (int, error) {
	all := []string{s.namespace}
	if s.stores.Namespaces != nil {
		var err error
		if all, err = s.stores.Namespaces.List(ctx); err != nil {
			return 0, err
		}
	}
	n := 0
	sn := s.stores.Snapshotter(name)
	if sn == nil {
		return 0, fmt.Errorf("no snapshotter %s", name)
	}
	for _, ns := range all {
		err := sn.Walk(namespaces.WithNamespace(ctx, ns), func(context.Context, snapshots.Info) error {
			n++
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// snapshotDir prefixes the directory a snapshotter keeps its state in,
// below a daemon's root.
const snapshotDir = "io.containerd.snapshotter.v1."

func snapshotsDir(root, snapshotter string) string {
	return filepath.Join(root, snapshotDir+snapshotter, "snapshots")
}

func readNames(dir string) (map[string]bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make(map[string]bool, len(entries))
	for _, e := range entries {
		names[e.Name()] = true
	}
	return names, nil
}

// checkSnapshotDirs compares each snapshotter's state now with before, for the
// snapshots this prune freed, and sets what their bytes fall short of:
//   - a directory the native snapshotter failed to remove stays as
//     "rm-<id>": its bytes are not counted;
//   - fewer directories gone than snapshot records gone, in all namespaces,
//     means some removed snapshot stayed on disk, and which is unknown: none
//     of that snapshotter's freed bytes are counted.
func (s *Service) checkSnapshotDirs(ctx context.Context, before snapshotDirs, root string, freed *reach.Reclaim) []Failure {
	var failures []Failure
	for name := range freed.Snapshotters() {
		was, ok := before[name]
		if !ok {
			continue
		}
		now := s.listSnapshotDirs(ctx, root, map[string]bool{name: true})[name]
		if now.entries == nil {
			continue
		}
		var left []string
		var leftBytes int64
		var unmeasured error
		for e := range now.entries {
			if strings.HasPrefix(e, "rm-") && !was.entries[e] {
				left = append(left, e)
				n, err := diskUsage(ctx, filepath.Join(snapshotsDir(root, name), e))
				unmeasured = cmp.Or(unmeasured, err)
				leftBytes += n
			}
		}
		if unmeasured != nil {
			// What is left cannot be told from what left: none of the
			// snapshotter's bytes count.
			freed.Shortfall[name] = freed.SnapshotBytes(name)
			failures = append(failures, Failure{Name: "snapshots/" + name, Error: fmt.Sprintf("the snapshotter left %d removed snapshots on disk (%s) whose size cannot be read: %v; none of its freed bytes are counted", len(left), strings.Join(left, ", "), unmeasured)})
			continue
		}
		dirsGone := countLive(was.entries) - countLive(now.entries)
		recordsGone := was.records - now.records
		switch {
		case len(left) > 0:
			freed.Shortfall[name] += leftBytes
			failures = append(failures, Failure{Name: "snapshots/" + name, Error: fmt.Sprintf("the snapshotter left %d removed snapshots on disk (%s); their %d bytes are not counted", len(left), strings.Join(left, ", "), leftBytes)})
		case dirsGone < recordsGone:
			freed.Shortfall[name] = freed.SnapshotBytes(name)
			failures = append(failures, Failure{Name: "snapshots/" + name, Error: fmt.Sprintf("%d snapshots were removed but only %d directories left the disk; no snapshot bytes of %s are counted", recordsGone, dirsGone, name)})
		}
	}
	return failures
}

// countLive counts the entries that are snapshots, not removals under way.
func countLive(entries map[string]bool) int {
	n := 0
	for e := range entries {
		if !strings.HasPrefix(e, "rm-") {
			n++
		}
	}
	return n
}

// diskUsage is the space the files below path take on disk, each inode
// once, as du counts it.
func diskUsage(ctx context.Context, path string) (int64, error) {
	u, err := fs.DiskUsage(ctx, path)
	if err != nil {
		return 0, fmt.Errorf("disk usage of %s: %w", path, err)
	}
	return u.Size, nil
}
