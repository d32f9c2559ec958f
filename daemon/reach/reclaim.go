package reach

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

// Reclaim is what a collection frees.
type Reclaim struct {
	// Content and Snapshots are what leaves the disk, with their sizes.
	Content   map[digest.Digest]int64
	Snapshots map[Snapshot]int64
	// Unreachable is the content that leaves the namespace, whether or not
	// another namespace keeps it on disk.
	Unreachable map[digest.Digest]bool
	// Shortfall is, per snapshotter, what its snapshots' bytes fall short of
	// because it failed to remove some from the disk.
	Shortfall map[string]int64
}

// NewReclaim returns an empty Reclaim.
func NewReclaim() Reclaim {
	return Reclaim{Content: map[digest.Digest]int64{}, Snapshots: map[Snapshot]int64{}, Unreachable: map[digest.Digest]bool{}, Shortfall: map[string]int64{}}
}

// Bytes is what leaves the disk.
func (r Reclaim) Bytes() int64 {
	var n int64
	for _, size := range r.Content {
		n += size
	}
	for sn := range r.Snapshotters() {
		n += max(0, r.SnapshotBytes(sn)-r.Shortfall[sn])
	}
	return n
}

// Snapshotters are those whose snapshots the collection frees.
func (r Reclaim) Snapshotters() map[string]bool {
	names := map[string]bool{}
	for k := range r.Snapshots {
		names[k.Snapshotter] = true
	}
	return names
}

// SnapshotBytes is what the freed snapshots of one snapshotter take.
func (r Reclaim) SnapshotBytes(snapshotter string) int64 {
	var n int64
	for k, size := range r.Snapshots {
		if k.Snapshotter == snapshotter {
			n += size
		}
	}
	return n
}

// Predict computes what a collection frees when only records stay in the
// namespace of ctx: content and snapshots nothing keeps, less blobs another
// namespace holds. It asks the usage of the snapshots that go, and nothing
// of those that stay.
func Predict(ctx context.Context, st Stores, g *Graph, records []images.Image) (Reclaim, error) {
	kept := g.keep(records)
	r := NewReclaim()
	for d, info := range g.Content {
		if !kept[contentNode(d)] {
			r.Content[d] = info.Size
			r.Unreachable[d] = true
		}
	}
	if err := DropShared(ctx, st, r.Content); err != nil {
		return Reclaim{}, err
	}
	var gone []Snapshot
	for k := range g.Snapshots {
		if !kept[snapshotNode(k)] {
			gone = append(gone, k)
		}
	}
	sizes, err := usages(ctx, st, gone)
	if err != nil {
		return Reclaim{}, err
	}
	for i, k := range gone {
		r.Snapshots[k] = sizes[i]
	}
	return r, nil
}

// usageInFlight bounds the snapshot usages asked at once: each is one
// round trip, and a snapshotter answers many side by side.
const usageInFlight = 8

// usages asks the size of each snapshot.
func usages(ctx context.Context, st Stores, keys []Snapshot) ([]int64, error) {
	sizes := make([]int64, len(keys))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(usageInFlight)
	for i, k := range keys {
		g.Go(func() error {
			usage, err := st.Snapshotter(k.Snapshotter).Usage(ctx, k.Key)
			if err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("usage of snapshot %s: %w", k.Key, err)
			}
			sizes[i] = usage.Size
			return nil
		})
	}
	return sizes, g.Wait()
}

// DropShared removes from blobs those another namespace than ctx's holds:
// they stay on disk whatever this namespace does.
func DropShared(ctx context.Context, st Stores, blobs map[digest.Digest]int64) error {
	if len(blobs) == 0 || st.Namespaces == nil {
		return nil
	}
	self, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	all, err := st.Namespaces.List(ctx)
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	for _, ns := range all {
		if ns == self {
			continue
		}
		g, err := ListContent(namespaces.WithNamespace(ctx, ns), st.Content)
		if err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
		for d := range g.Content {
			delete(blobs, d)
		}
	}
	return nil
}

// Size is the content reachable from target through reference labels.
func (g *Graph) Size(target digest.Digest) int64 {
	var n int64
	for _, size := range g.Reached(target) {
		n += size
	}
	return n
}

// Reached is the content reachable from target through reference labels,
// with its sizes.
func (g *Graph) Reached(target digest.Digest) map[digest.Digest]int64 {
	seen := map[digest.Digest]int64{}
	queue := []digest.Digest{target}
	for len(queue) > 0 {
		d := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		info, ok := g.Content[d]
		if _, done := seen[d]; !ok || done {
			continue
		}
		seen[d] = info.Size
		queue = append(queue, g.contentRefs(d).Content...)
	}
	return seen
}
