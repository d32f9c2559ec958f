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

// inventory is what the namespace holds besides image records, listed once:
// content, snapshots and the garbage collector's other roots (containers,
// unexpired leases, objects labelled as roots) and back references.
type inventory struct {
	content   map[digest.Digest]content.Info
	snapshots map[snapKey]snapshots.Info
	roots     refs
	// flat are held by flat leases: kept, but not what they reference.
	flat refs
	// backRefs lists, for an object, the objects that say it references them.
	backRefs map[node][]node
}

// takeInventory lists content, snapshots and roots of the namespace in ctx;
// ctrs are its container records.
func (s *Service) takeInventory(ctx context.Context, ctrs []containers.Container) (*inventory, error) {
	inv, err := s.listContent(ctx)
	if err != nil {
		return nil, err
	}
	snapshotters := map[string]bool{s.snapshotter: true}
	for d, info := range inv.content {
		if isRoot(info.Labels) {
			inv.roots.content = append(inv.roots.content, d)
		}
		inv.addBackRefs(contentNode(d), info.Labels)
		for _, k := range labelRefs(info.Labels).snapshots {
			snapshotters[k.snapshotter] = true
		}
	}
	for _, c := range ctrs {
		if c.SnapshotKey != "" {
			inv.roots.snapshots = append(inv.roots.snapshots, snapKey{c.Snapshotter, c.SnapshotKey})
			snapshotters[c.Snapshotter] = true
		}
		inv.roots.add(labelRefs(c.Labels))
	}
	if err := s.leaseRoots(ctx, inv, snapshotters); err != nil {
		return nil, err
	}
	for name := range snapshotters {
		if err := s.walkSnapshots(ctx, name, inv); err != nil {
			return nil, err
		}
	}
	return inv, nil
}

// listContent starts an inventory with the namespace's content alone.
func (s *Service) listContent(ctx context.Context) (*inventory, error) {
	inv := &inventory{content: map[digest.Digest]content.Info{}, snapshots: map[snapKey]snapshots.Info{}, backRefs: map[node][]node{}}
	err := s.stores.Content.Walk(ctx, func(info content.Info) error {
		inv.content[info.Digest] = info
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list content: %w", err)
	}
	return inv, nil
}

// listPresent lists what is left of the namespace's content and of the
// snapshots of snapshotters: all a prune's accounting needs afterwards.
func (s *Service) listPresent(ctx context.Context, snapshotters map[string]bool) (*inventory, error) {
	inv, err := s.listContent(ctx)
	if err != nil {
		return nil, err
	}
	for name := range snapshotters {
		if err := s.walkSnapshots(ctx, name, inv); err != nil {
			return nil, err
		}
	}
	return inv, nil
}

// leaseRoots adds what unexpired leases hold: the garbage collector keeps it,
// and, unless the lease is flat, what it references.
func (s *Service) leaseRoots(ctx context.Context, inv *inventory, snapshotters map[string]bool) error {
	ls, err := s.stores.Leases.List(ctx)
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	now := time.Now()
	for _, l := range ls {
		if exp, err := time.Parse(time.RFC3339, l.Labels[gcExpire]); err == nil && now.After(exp) {
			continue
		}
		r := &inv.roots
		if _, flat := l.Labels[gcFlat]; flat {
			r = &inv.flat
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
		if isRoot(info.Labels) {
			inv.roots.snapshots = append(inv.roots.snapshots, k)
		}
		inv.addBackRefs(snapshotNode(k), info.Labels)
		return nil
	})
	// A snapshotter this daemon does not run holds nothing to count; the
	// daemon answers InvalidArgument for one it has not loaded.
	if err != nil && !errdefs.IsNotFound(err) && !errdefs.IsNotImplemented(err) && !errdefs.IsInvalidArgument(err) {
		return fmt.Errorf("list snapshots of %s: %w", name, err)
	}
	return nil
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
