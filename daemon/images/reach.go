package images

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// The labels containerd's garbage collector follows (core/metadata/gc.go).
const (
	gcRoot        = "containerd.io/gc.root"
	gcRefContent  = "containerd.io/gc.ref.content"
	gcRefSnap     = "containerd.io/gc.ref.snapshot."
	gcBRefContent = "containerd.io/gc.bref.content"
	gcBRefSnap    = "containerd.io/gc.bref.snapshot."
	gcExpire      = "containerd.io/gc.expire"
	gcFlat        = "containerd.io/gc.flat"
)

// snapKey names a snapshot: its snapshotter and key.
type snapKey struct{ snapshotter, key string }

// node is a content blob or a snapshot of the namespace.
type node struct {
	content digest.Digest
	snap    snapKey
}

func contentNode(d digest.Digest) node { return node{content: d} }
func snapshotNode(k snapKey) node      { return node{snap: k} }

// refs are references to content and snapshots.
type refs struct {
	content   []digest.Digest
	snapshots []snapKey
}

func (r *refs) add(o refs) {
	r.content = append(r.content, o.content...)
	r.snapshots = append(r.snapshots, o.snapshots...)
}

// hasRefPrefix reports whether key is prefix itself or prefix followed by
// "." or "/", as containerd reads reference labels.
func hasRefPrefix(key, prefix string) bool {
	rest, ok := strings.CutPrefix(key, prefix)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '/')
}

// snapRef reads a snapshot reference label "<prefix><snapshotter>[/…]".
func snapRef(key, prefix, value string) (snapKey, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok || rest == "" {
		return snapKey{}, false
	}
	name, _, _ := strings.Cut(rest, "/")
	return snapKey{name, value}, true
}

// labelRefs are the references labels carry for the garbage collector.
func labelRefs(labels map[string]string) refs {
	var r refs
	for k, v := range labels {
		if hasRefPrefix(k, gcRefContent) {
			if d, err := digest.Parse(v); err == nil {
				r.content = append(r.content, d)
			}
		} else if sk, ok := snapRef(k, gcRefSnap, v); ok {
			r.snapshots = append(r.snapshots, sk)
		}
	}
	return r
}

// addBackRefs records that n is referenced by whatever its back reference
// labels name: n is kept when they are.
func (inv *inventory) addBackRefs(n node, labels map[string]string) {
	for k, v := range labels {
		if hasRefPrefix(k, gcBRefContent) {
			if d, err := digest.Parse(v); err == nil {
				inv.backRefs[contentNode(d)] = append(inv.backRefs[contentNode(d)], n)
			}
		} else if sk, ok := snapRef(k, gcBRefSnap, v); ok {
			inv.backRefs[snapshotNode(sk)] = append(inv.backRefs[snapshotNode(sk)], n)
		}
	}
}

// isRoot reports whether labels make an object a root, as containerd reads
// them: any key starting with the root label.
func isRoot(labels map[string]string) bool {
	for k := range labels {
		if strings.HasPrefix(k, gcRoot) {
			return true
		}
	}
	return false
}

// expired reports whether a record carries an expiry that has passed: the
// garbage collector does not count it as a root.
func expired(img images.Image, now time.Time) bool {
	exp, err := time.Parse(time.RFC3339, img.Labels[gcExpire])
	return err == nil && now.After(exp)
}

// mark returns what the garbage collector keeps when records are the image
// records left: what they, the containers, unexpired leases and root labels
// reach, following references, snapshot parents and back references.
func (inv *inventory) mark(records []images.Image) map[node]bool {
	kept := map[node]bool{}
	var queue []node
	push := func(r refs) {
		for _, d := range r.content {
			queue = append(queue, contentNode(d))
		}
		for _, k := range r.snapshots {
			queue = append(queue, snapshotNode(k))
		}
	}
	now := time.Now()
	for _, img := range records {
		if !expired(img, now) {
			push(refs{content: []digest.Digest{img.Target.Digest}})
			push(labelRefs(img.Labels))
		}
	}
	push(inv.roots)
	for len(queue) > 0 {
		n := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if kept[n] || !inv.has(n) {
			continue
		}
		kept[n] = true
		queue = append(queue, inv.backRefs[n]...)
		if n.content != "" {
			push(labelRefs(inv.content[n.content].Labels))
			continue
		}
		info := inv.snapshots[n.snap]
		if info.Parent != "" {
			push(refs{snapshots: []snapKey{{n.snap.snapshotter, info.Parent}}})
		}
		push(labelRefs(info.Labels))
	}
	// What flat leases hold is kept, and nothing more.
	for _, d := range inv.flat.content {
		kept[contentNode(d)] = kept[contentNode(d)] || inv.has(contentNode(d))
	}
	for _, k := range inv.flat.snapshots {
		// A flat snapshot keeps its parents, not what its labels name.
		for n := snapshotNode(k); inv.has(n); n = snapshotNode(snapKey{k.snapshotter, inv.snapshots[n.snap].Parent}) {
			kept[n] = true
		}
	}
	return kept
}

func (inv *inventory) has(n node) bool {
	if n.content != "" {
		_, ok := inv.content[n.content]
		return ok
	}
	_, ok := inv.snapshots[n.snap]
	return ok
}

// reclaim is what a collection frees.
type reclaim struct {
	// content and snapshots are what leaves the disk, with their sizes.
	content   map[digest.Digest]int64
	snapshots map[snapKey]int64
	// unreachable is the content that leaves the namespace, whether or not
	// another namespace keeps it on disk.
	unreachable map[digest.Digest]bool
	// shortfall is what the snapshots' bytes fall short of because a
	// snapshotter failed to remove some from the disk.
	shortfall int64
}

func (r reclaim) bytes() int64 {
	var n int64
	for _, size := range r.content {
		n += size
	}
	for _, size := range r.snapshots {
		n += size
	}
	return n - r.shortfall
}

// snapshotters are those whose snapshots the collection frees.
func (r reclaim) snapshotters() map[string]bool {
	names := map[string]bool{}
	for k := range r.snapshots {
		names[k.snapshotter] = true
	}
	return names
}

// snapshotBytes is what the snapshots of one snapshotter take.
func (r reclaim) snapshotBytes(snapshotter string) int64 {
	var n int64
	for k, size := range r.snapshots {
		if k.snapshotter == snapshotter {
			n += size
		}
	}
	return n
}

// predict computes what a collection frees when only records stay: content
// and snapshots nothing keeps, less blobs another namespace holds.
func (s *Service) predict(ctx context.Context, inv *inventory, records []images.Image) (reclaim, error) {
	kept := inv.mark(records)
	r := reclaim{content: map[digest.Digest]int64{}, snapshots: map[snapKey]int64{}, unreachable: map[digest.Digest]bool{}}
	for d, info := range inv.content {
		if !kept[contentNode(d)] {
			r.content[d] = info.Size
			r.unreachable[d] = true
		}
	}
	if err := s.dropShared(ctx, r.content); err != nil {
		return reclaim{}, err
	}
	for k := range inv.snapshots {
		if kept[snapshotNode(k)] {
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
