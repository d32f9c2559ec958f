package containers

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/reach"
)

// lineageOf maps where each target is unpacked, from the labels a content
// walk returned: an unpacked image's config carries
// containerd.io/gc.ref.snapshot.<snapshotter> = <chain ID>. It reads no blob
// and asks nothing of the store.
func lineageOf(blobs map[digest.Digest]content.Info, targets []digest.Digest) plan.Lineage {
	l := plan.Lineage{}
	chains := map[digest.Digest][]reach.Snapshot{} // memo: the chains below a blob
	var below func(d digest.Digest, seen map[digest.Digest]bool) []reach.Snapshot
	below = func(d digest.Digest, seen map[digest.Digest]bool) []reach.Snapshot {
		if c, ok := chains[d]; ok {
			return c
		}
		info, ok := blobs[d]
		if !ok || seen[d] {
			return nil
		}
		seen[d] = true
		r := reach.LabelRefs(info.Labels)
		out := r.Snapshots
		for _, child := range r.Content {
			out = append(out, below(child, seen)...)
		}
		chains[d] = out
		return out
	}
	for _, t := range targets {
		for _, k := range below(t, map[digest.Digest]bool{}) {
			p := plan.Parent{Snapshotter: k.Snapshotter, Key: k.Key}
			if !slices.Contains(l[p], t) {
				l[p] = append(l[p], t)
			}
		}
	}
	return l
}

// Lineage maps where each of targets is unpacked, when a container is known
// by its rootfs; blobs are a content walk's infos, and cs reads configs. Configs carry the
// chain ID as a label; where a container's rootfs names a chain no label
// matched (an image unpacked without labels, or labels removed since), the
// chain IDs of the targets without a label for that snapshotter are computed
// from their configs' diff IDs: only then are configs read.
func Lineage(ctx context.Context, cs content.Provider, blobs map[digest.Digest]content.Info, targets []digest.Digest, ctrs []plan.Container) (plan.Lineage, error) {
	// Only a container known by its rootfs asks the lineage anything.
	if !slices.ContainsFunc(ctrs, func(c plan.Container) bool { return c.Rootfs != nil }) {
		return plan.Lineage{}, nil
	}
	l := lineageOf(blobs, targets)
	unmatched := map[string]bool{}
	for _, c := range ctrs {
		if c.Rootfs != nil && len(l[*c.Rootfs]) == 0 {
			unmatched[c.Rootfs.Snapshotter] = true
		}
	}
	if len(unmatched) == 0 {
		return l, nil
	}
	chains := map[digest.Digest]digest.Digest{} // config -> chain ID
	for _, t := range targets {
		for _, cfg := range configsBelow(blobs, t) {
			chain, ok := chains[cfg]
			if !ok {
				var err error
				if chain, err = chainID(ctx, cs, ocispec.Descriptor{Digest: cfg, Size: blobs[cfg].Size}); err != nil {
					return nil, err
				}
				chains[cfg] = chain
			}
			for sn := range unmatched {
				p := plan.Parent{Snapshotter: sn, Key: chain.String()}
				if _, labelled := blobs[cfg].Labels[reach.LabelRefSnapshot+sn]; chain != "" && !labelled && !slices.Contains(l[p], t) {
					l[p] = append(l[p], t)
				}
			}
		}
	}
	return l, nil
}

// configsBelow lists the image configs a target reaches through manifests'
// config labels.
func configsBelow(blobs map[digest.Digest]content.Info, target digest.Digest) []digest.Digest {
	var out []digest.Digest
	seen := map[digest.Digest]bool{}
	queue := []digest.Digest{target}
	for len(queue) > 0 {
		d := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		info, ok := blobs[d]
		if !ok || seen[d] {
			continue
		}
		seen[d] = true
		for k, v := range info.Labels {
			child, err := digest.Parse(v)
			switch {
			case err != nil:
			case k == reach.LabelRefConfig:
				out = append(out, child)
			case reach.HasRefPrefix(k, reach.LabelRefContent+".m"):
				queue = append(queue, child)
			}
		}
	}
	return out
}

// chainID computes the chain ID of an image config's layers, or "" when the
// config is not there or has no layers.
func chainID(ctx context.Context, cs content.Provider, config ocispec.Descriptor) (digest.Digest, error) {
	blob, err := content.ReadBlob(ctx, cs, config)
	if errdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read config %s: %w", config.Digest, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob, &cfg); err != nil || len(cfg.RootFS.DiffIDs) == 0 {
		// Not an image config, or one without layers: no chain.
		return "", nil
	}
	return identity.ChainID(cfg.RootFS.DiffIDs), nil
}
