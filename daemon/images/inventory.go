package images

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// The labels containerd's garbage collector follows.
const (
	gcRoot       = "containerd.io/gc.root"
	gcRefContent = "containerd.io/gc.ref.content"
	gcRefSnap    = "containerd.io/gc.ref.snapshot."
	gcExpire     = "containerd.io/gc.expire"
)

// snapKey names a snapshot: its snapshotter and key.
type snapKey struct{ snapshotter, key string }

// inventory is what the namespace holds besides image records, listed once:
// content, snapshots and the garbage collector's other roots (containers,
// unexpired leases, objects labelled as roots).
type inventory struct {
	content   map[digest.Digest]content.Info
	snapshots map[snapKey]snapshots.Info
	roots     refs
}

// refs are references to content and snapshots.
type refs struct {
	content   []digest.Digest
	snapshots []snapKey
}

// addLabels adds the references that labels carry for the garbage collector.
func (r *refs) addLabels(labels map[string]string) {
	for k, v := range labels {
		switch {
		case strings.HasPrefix(k, gcRefContent):
			if d, err := digest.Parse(v); err == nil {
				r.content = append(r.content, d)
			}
		case strings.HasPrefix(k, gcRefSnap):
			name, _, _ := strings.Cut(strings.TrimPrefix(k, gcRefSnap), "/")
			r.snapshots = append(r.snapshots, snapKey{name, v})
		}
	}
}

// takeInventory lists content, snapshots and roots of the namespace in ctx;
// ctrs are its container records.
func (s *Service) takeInventory(ctx context.Context, ctrs []containers.Container) (*inventory, error) {
	inv := &inventory{content: map[digest.Digest]content.Info{}, snapshots: map[snapKey]snapshots.Info{}}
	snapshotters := map[string]bool{s.snapshotter: true}
	err := s.stores.Content.Walk(ctx, func(info content.Info) error {
		inv.content[info.Digest] = info
		if _, ok := info.Labels[gcRoot]; ok {
			inv.roots.content = append(inv.roots.content, info.Digest)
		}
		for k := range info.Labels {
			if name, ok := strings.CutPrefix(k, gcRefSnap); ok {
				name, _, _ = strings.Cut(name, "/")
				snapshotters[name] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list content: %w", err)
	}
	for _, c := range ctrs {
		if c.SnapshotKey != "" {
			inv.roots.snapshots = append(inv.roots.snapshots, snapKey{c.Snapshotter, c.SnapshotKey})
			snapshotters[c.Snapshotter] = true
		}
		inv.roots.addLabels(c.Labels)
	}
	if err := s.leaseRoots(ctx, &inv.roots, snapshotters); err != nil {
		return nil, err
	}
	for name := range snapshotters {
		if err := s.walkSnapshots(ctx, name, inv); err != nil {
			return nil, err
		}
	}
	return inv, nil
}

// leaseRoots adds what unexpired leases hold: the garbage collector keeps it.
func (s *Service) leaseRoots(ctx context.Context, r *refs, snapshotters map[string]bool) error {
	ls, err := s.stores.Leases.List(ctx)
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	now := s.now()
	for _, l := range ls {
		if exp, err := time.Parse(time.RFC3339, l.Labels[gcExpire]); err == nil && exp.Before(now) {
			continue
		}
		resources, err := s.stores.Leases.ListResources(ctx, l)
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("list resources of lease %s: %w", l.ID, err)
		}
		for _, res := range resources {
			switch {
			case res.Type == "content":
				if d, err := digest.Parse(res.ID); err == nil {
					r.content = append(r.content, d)
				}
			case strings.HasPrefix(res.Type, "snapshots/"):
				name := strings.TrimPrefix(res.Type, "snapshots/")
				r.snapshots = append(r.snapshots, snapKey{name, res.ID})
				snapshotters[name] = true
			}
		}
	}
	return nil
}

func (s *Service) walkSnapshots(ctx context.Context, name string, inv *inventory) error {
	if s.stores.Snapshotter == nil {
		return nil
	}
	sn := s.stores.Snapshotter(name)
	if sn == nil {
		// An embedded store has only the snapshotters found on disk.
		return nil
	}
	err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		k := snapKey{name, info.Name}
		inv.snapshots[k] = info
		if _, ok := info.Labels[gcRoot]; ok {
			inv.roots.snapshots = append(inv.roots.snapshots, k)
		}
		return nil
	})
	// A snapshotter this daemon does not run holds nothing to count.
	if err != nil && !errdefs.IsNotFound(err) && !errdefs.IsNotImplemented(err) {
		return fmt.Errorf("list snapshots of %s: %w", name, err)
	}
	return nil
}

// mark returns what the garbage collector keeps when targets are the image
// records left: everything reachable from them and from the other roots.
func (inv *inventory) mark(targets []digest.Digest) (map[digest.Digest]bool, map[snapKey]bool) {
	keptContent := map[digest.Digest]bool{}
	keptSnaps := map[snapKey]bool{}
	queue := refs{content: append(append([]digest.Digest(nil), targets...), inv.roots.content...), snapshots: append([]snapKey(nil), inv.roots.snapshots...)}
	for len(queue.content)+len(queue.snapshots) > 0 {
		if n := len(queue.content); n > 0 {
			d := queue.content[n-1]
			queue.content = queue.content[:n-1]
			info, ok := inv.content[d]
			if !ok || keptContent[d] {
				continue
			}
			keptContent[d] = true
			queue.addLabels(info.Labels)
			continue
		}
		n := len(queue.snapshots)
		k := queue.snapshots[n-1]
		queue.snapshots = queue.snapshots[:n-1]
		info, ok := inv.snapshots[k]
		if !ok || keptSnaps[k] {
			continue
		}
		keptSnaps[k] = true
		if info.Parent != "" {
			queue.snapshots = append(queue.snapshots, snapKey{k.snapshotter, info.Parent})
		}
		queue.addLabels(info.Labels)
	}
	return keptContent, keptSnaps
}

// reclaim is what leaves the disk when the garbage collector runs.
type reclaim struct {
	content   map[digest.Digest]int64
	snapshots map[snapKey]int64
}

func (r reclaim) bytes() int64 {
	var n int64
	for _, size := range r.content {
		n += size
	}
	for _, size := range r.snapshots {
		n += size
	}
	return n
}

// predict computes what leaves the disk when only kept targets stay: content
// and snapshots nothing reaches any more, less blobs another namespace holds.
func (s *Service) predict(ctx context.Context, inv *inventory, kept []digest.Digest) (reclaim, error) {
	keptContent, keptSnaps := inv.mark(kept)
	r := reclaim{content: map[digest.Digest]int64{}, snapshots: map[snapKey]int64{}}
	for d, info := range inv.content {
		if !keptContent[d] {
			r.content[d] = info.Size
		}
	}
	if err := s.dropShared(ctx, r.content); err != nil {
		return reclaim{}, err
	}
	for k := range inv.snapshots {
		if keptSnaps[k] {
			continue
		}
		usage, err := s.stores.Snapshotter(k.snapshotter).Usage(ctx, k.key)
		if err != nil && !errdefs.IsNotFound(err) {
			return reclaim{}, fmt.Errorf("usage of snapshot %s: %w", k.key, err)
		}
		r.snapshots[k] = usage.Size
	}
	return r, nil
}

// dropShared removes from blobs those another namespace holds: they stay on
// disk whatever this namespace does.
func (s *Service) dropShared(ctx context.Context, blobs map[digest.Digest]int64) error {
	if len(blobs) == 0 || s.stores.Namespaces == nil {
		return nil
	}
	all, err := s.stores.Namespaces.List(ctx)
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	for _, ns := range all {
		if ns == s.namespace {
			continue
		}
		err := s.stores.Content.Walk(namespaces.WithNamespace(ctx, ns), func(info content.Info) error {
			delete(blobs, info.Digest)
			return nil
		})
		if err != nil {
			return fmt.Errorf("list content of namespace %s: %w", ns, err)
		}
	}
	return nil
}
