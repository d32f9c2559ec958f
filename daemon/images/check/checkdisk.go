package check

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/reach"
	"github.com/imgprune/imgprune/daemon/store"
)

// abandonedIngests lists the namespace's ingests no writer touched for
// longer than olderThan.
func (st Store) abandonedIngests(ctx context.Context, olderThan time.Duration, now time.Time) ([]Found, error) {
	statuses, err := st.Stores.Content.ListStatuses(ctx)
	if err != nil {
		return nil, fmt.Errorf("list ingests: %w", err)
	}
	var out []Found
	for _, st := range statuses {
		if now.Sub(st.UpdatedAt) <= olderThan {
			continue
		}
		out = append(out, Found{Kind: KindIngest, Name: st.Ref, Size: st.Offset, Why: "last written " + st.UpdatedAt.UTC().Format(time.RFC3339)})
	}
	slices.SortFunc(out, func(a, b Found) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// unknownBlobs are the blobs among onDisk that no namespace's metadata
// knows. Each is asked for once more, in every namespace, so that a blob
// committed while the namespaces were walked is not called unknown.
func (st Store) unknownBlobs(ctx context.Context, onDisk map[digest.Digest]int64) ([]Found, error) {
	if len(onDisk) == 0 {
		return nil, nil
	}
	all, err := st.Stores.Namespaces.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	unknown := maps.Clone(onDisk)
	for _, ns := range all {
		g, err := reach.ListContent(namespaces.WithNamespace(ctx, ns), st.Stores.Content)
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
		for d := range g.Content {
			delete(unknown, d)
		}
	}
	var out []Found
	for d, size := range unknown {
		if st.knownAnywhere(ctx, all, d) {
			continue
		}
		out = append(out, Found{Kind: KindBlob, Name: d.String(), Size: size, Why: "on disk, in no namespace's metadata"})
	}
	slices.SortFunc(out, func(a, b Found) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// knownAnywhere tells whether a namespace's metadata knows d.
func (st Store) knownAnywhere(ctx context.Context, all []string, d digest.Digest) bool {
	for _, ns := range all {
		if _, err := st.Stores.Content.Info(namespaces.WithNamespace(ctx, ns), d); err == nil {
			return true
		}
	}
	return false
}

// leftDirs lists the directories snapshot removals left below root: a
// snapshotter renames a snapshot's directory "rm-<id>" before it removes
// it, and only logs a removal that fails. No snapshot record knows them.
func leftDirs(ctx context.Context, root string) ([]Found, error) {
	dirs, err := store.LeftSnapshotDirs(root)
	if err != nil {
		return nil, err
	}
	var out []Found
	for _, dir := range dirs {
		if !store.InsideRoot(root, dir) {
			// A link out of the tree (planted, or a folder moved
			// elsewhere): not the snapshotter's to clean, nor ours.
			log.G(ctx).WithField("path", dir).Warn("check: a directory that resolves outside the daemon's root is left alone")
			continue
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return nil, err
		}
		size, err := store.DiskUsage(ctx, dir)
		if err != nil {
			// Listed all the same: its size is what cannot be told.
			log.G(ctx).WithError(err).Warn("check: the size of a directory a snapshot removal left is not counted")
		}
		out = append(out, Found{Kind: KindDir, Name: rel, Size: size, Why: "left on disk by a snapshot removal that failed"})
	}
	return out, nil
}
