package reach

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/imgprune/imgprune/daemon/store"
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
func Predict(ctx context.Context, st store.Stores, g *Graph, records []images.Image) (Reclaim, error) {
	return NewPredictor(st, g).Predict(ctx, records)
}

// Predictor predicts what several sets of records each keep of one graph,
// as Predict does: it asks a snapshot's usage, and the other namespaces'
// content, once for all its predictions. Safe for concurrent use.
type Predictor struct {
	st store.Stores
	g  *Graph

	mu    sync.Mutex
	usage map[Snapshot]int64
	// shared is the content other namespaces hold, nil until listed.
	shared map[digest.Digest]bool
}

// NewPredictor returns a Predictor over g.
func NewPredictor(st store.Stores, g *Graph) *Predictor {
	return &Predictor{st: st, g: g, usage: map[Snapshot]int64{}}
}

// Predict computes what a collection frees when only records stay.
func (p *Predictor) Predict(ctx context.Context, records []images.Image) (Reclaim, error) {
	kept := p.g.keep(records)
	r := NewReclaim()
	if gone := len(p.g.Content) - len(kept); gone > 0 {
		// Made at about their size: a prune of every image frees almost
		// every blob.
		r.Content = make(map[digest.Digest]int64, gone)
		r.Unreachable = make(map[digest.Digest]bool, gone)
	}
	for d, info := range p.g.Content {
		if !kept[contentNode(d)] {
			r.Content[d] = info.Size
			r.Unreachable[d] = true
		}
	}
	if len(r.Content) > 0 {
		shared, err := p.sharedContent(ctx)
		if err != nil {
			return Reclaim{}, err
		}
		for d := range r.Content {
			if shared[d] {
				delete(r.Content, d)
			}
		}
	}
	var gone, ask []Snapshot
	p.mu.Lock()
	for k := range p.g.Snapshots {
		if !kept[snapshotNode(k)] {
			gone = append(gone, k)
			if _, known := p.usage[k]; !known {
				ask = append(ask, k)
			}
		}
	}
	p.mu.Unlock()
	sizes, err := usages(ctx, p.st, ask)
	if err != nil {
		return Reclaim{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, k := range ask {
		p.usage[k] = sizes[i]
	}
	for _, k := range gone {
		r.Snapshots[k] = p.usage[k]
	}
	return r, nil
}

// sharedContent lists, once, the content other namespaces hold.
func (p *Predictor) sharedContent(ctx context.Context) (map[digest.Digest]bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shared != nil {
		return p.shared, nil
	}
	shared, err := sharedContent(ctx, p.st)
	if err != nil {
		return nil, err
	}
	p.shared = shared
	return shared, nil
}

// usageInFlight bounds the snapshot usages asked at once: each is one
// round trip, and a snapshotter answers many side by side.
const usageInFlight = 8

// usages asks the size of each snapshot.
func usages(ctx context.Context, st store.Stores, keys []Snapshot) ([]int64, error) {
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
func DropShared(ctx context.Context, st store.Stores, blobs map[digest.Digest]int64) error {
	if len(blobs) == 0 {
		return nil
	}
	shared, err := sharedContent(ctx, st)
	if err != nil {
		return err
	}
	for d := range shared {
		delete(blobs, d)
	}
	return nil
}

// sharedContent lists the content namespaces other than ctx's hold.
func sharedContent(ctx context.Context, st store.Stores) (map[digest.Digest]bool, error) {
	shared := map[digest.Digest]bool{}
	if st.Namespaces == nil {
		return shared, nil
	}
	self, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	all, err := st.Namespaces.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	for _, ns := range all {
		if ns == self {
			continue
		}
		g, err := ListContent(namespaces.WithNamespace(ctx, ns), st.Content)
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
		for d := range g.Content {
			shared[d] = true
		}
	}
	return shared, nil
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
