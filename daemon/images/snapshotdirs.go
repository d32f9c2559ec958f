package images

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// snapshotDirs are the entries of each snapshotter's snapshots directory
// below a daemon's root, listed before a prune, to tell afterwards which
// snapshots the snapshotter failed to remove from the disk. The native and
// overlayfs snapshotters keep one directory a snapshot there; containerd's
// collector only logs a directory they cannot remove.
type snapshotDirs map[string]map[string]bool

func listSnapshotDirs(root string, snapshotters map[string]bool) snapshotDirs {
	dirs := snapshotDirs{}
	for name := range snapshotters {
		if entries, err := readNames(snapshotsDir(root, name)); err == nil {
			dirs[name] = entries
		}
	}
	return dirs
}

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

// check compares the snapshots directories now with before. A directory the
// native snapshotter failed to remove stays as "rm-<id>": its bytes are not
// counted. Fewer directories gone than snapshots removed means overlayfs (or
// another) failed to remove some, and which is unknown: none of that
// snapshotter's bytes are counted.
func (before snapshotDirs) check(root string, freed *reclaim) []Failure {
	var failures []Failure
	for name, was := range before {
		now, err := readNames(snapshotsDir(root, name))
		if err != nil {
			continue
		}
		gone, expected := 0, 0
		for e := range was {
			if !now[e] && !strings.HasPrefix(e, "rm-") {
				gone++
			}
		}
		for k := range freed.snapshots {
			if k.snapshotter == name {
				expected++
			}
		}
		var left []string
		var leftBytes int64
		for e := range now {
			if strings.HasPrefix(e, "rm-") && !was[e] {
				left = append(left, e)
				leftBytes += diskUsage(filepath.Join(snapshotsDir(root, name), e))
			}
		}
		switch {
		case len(left) > 0:
			freed.shortfall += min(leftBytes, freed.snapshotBytes(name)-freed.shortfall)
			failures = append(failures, Failure{Name: "snapshots/" + name, Error: fmt.Sprintf("the snapshotter left %d removed snapshots on disk (%s); their %d bytes are not counted", len(left), strings.Join(left, ", "), leftBytes)})
		case gone < expected:
			freed.shortfall += freed.snapshotBytes(name)
			failures = append(failures, Failure{Name: "snapshots/" + name, Error: fmt.Sprintf("%d snapshots were removed but only %d directories left the disk; no snapshot bytes of %s are counted", expected, gone, name)})
		}
	}
	return failures
}

// diskUsage is the space the files below path take, in bytes.
func diskUsage(path string) int64 {
	var n int64
	filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}
