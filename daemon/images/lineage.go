package images

import (
	"slices"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
)

// lineageOf maps where each target is unpacked, from the labels a content
// walk returned: an unpacked image's config carries
// containerd.io/gc.ref.snapshot.<snapshotter> = <chain ID>. It reads no blob
// and asks nothing of the store.
func lineageOf(blobs map[digest.Digest]content.Info, targets []digest.Digest) Lineage {
	l := Lineage{}
	chains := map[digest.Digest][]snapKey{} // memo: the chains below a blob
	var below func(d digest.Digest, seen map[digest.Digest]bool) []snapKey
	below = func(d digest.Digest, seen map[digest.Digest]bool) []snapKey {
		if c, ok := chains[d]; ok {
			return c
		}
		info, ok := blobs[d]
		if !ok || seen[d] {
			return nil
		}
		seen[d] = true
		r := labelRefs(info.Labels)
		out := r.snapshots
		for _, child := range r.content {
			out = append(out, below(child, seen)...)
		}
		chains[d] = out
		return out
	}
	for _, t := range targets {
		for _, k := range below(t, map[digest.Digest]bool{}) {
			p := imgcontainers.Parent{Snapshotter: k.snapshotter, Key: k.key}
			if !slices.Contains(l[p], t) {
				l[p] = append(l[p], t)
			}
		}
	}
	return l
}
