package store

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// SnapshotDirs is, per snapshotter, what a daemon's root holds of its
// snapshots: the entries of its snapshots directory and the snapshot
// records of every namespace. The native and overlayfs snapshotters keep
// one directory a snapshot there; containerd's collector only logs one they
// cannot remove. A collection removes the snapshots of every namespace, so
// directories are weighed against the records of all of them.
type SnapshotDirs map[string]SnapshotState

// SnapshotState is one snapshotter's directories and records.
type SnapshotState struct {
	Entries map[string]bool
	Records int
}

// Live counts the entries that are snapshots, not removals under way.
func (st SnapshotState) Live() int {
	n := 0
	for e := range st.Entries {
		if !strings.HasPrefix(e, "rm-") {
			n++
		}
	}
	return n
}

// ListSnapshotDirs reads the state of snapshotters under root: the
// directories, then the records of every namespace (ctx's alone when the
// stores cannot list namespaces). A collection the daemon runs
// by itself meanwhile can only make the records fewer than the
// directories, never the other way round. A snapshotter whose directory or
// records cannot be read is left out.
func (s Stores) ListSnapshotDirs(ctx context.Context, root string, snapshotters map[string]bool) SnapshotDirs {
	dirs := SnapshotDirs{}
	for name := range snapshotters {
		entries, err := readNames(SnapshotsDir(root, name))
		if err != nil {
			continue
		}
		records, err := s.countSnapshots(ctx, name)
		if err != nil {
			continue
		}
		dirs[name] = SnapshotState{Entries: entries, Records: records}
	}
	return dirs
}

// countSnapshots counts the snapshot records of a snapshotter in every
// namespace.
func (s Stores) countSnapshots(ctx context.Context, name string) (int, error) {
	var all []string
	var err error
	if s.Namespaces != nil {
		all, err = s.Namespaces.List(ctx)
	} else {
		// Only the namespace at hand can be seen.
		var ns string
		ns, err = namespaces.NamespaceRequired(ctx)
		all = []string{ns}
	}
	if err != nil {
		return 0, err
	}
	n := 0
	sn := s.Snapshotter(name)
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
