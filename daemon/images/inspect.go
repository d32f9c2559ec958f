package images

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// Detail is what the store knows of one target.
type Detail struct {
	Target ocispec.Descriptor
	// Names are the target's names, sorted; CRI's ID records and the
	// dangling record are not names.
	Names []string
	// Created is when the target first entered the store; LastTagged, when
	// its newest name did.
	Created, LastTagged time.Time
	// Config is the config of the platform this host runs (or, failing
	// that, the first present), as stored; nil when none is present.
	Config     []byte
	ConfigDesc ocispec.Descriptor
	// Size is the content the target reaches, in bytes; Unpacked, what
	// its layers' snapshots take.
	Size, Unpacked int64
}

// Resolve returns the target that ref (a name, a digest reference, an image
// ID or a unique prefix of one) means, and the name it matched ("" for an
// ID). It writes nothing.
func (s *Service) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, string, error) {
	img, err := s.resolveImage(s.withNamespace(ctx), ref)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	name := img.Name
	if plan.IsDangling(name) || plan.IsCRIImageID(img) {
		name = ""
	}
	return img.Target, name, nil
}

// Inspect tells what the store knows of the target ref means. It writes
// nothing.
func (s *Service) Inspect(ctx context.Context, ref string) (Detail, error) {
	ctx = s.withNamespace(ctx)
	img, err := s.resolveImage(ctx, ref)
	if err != nil {
		return Detail{}, err
	}
	records, err := s.listRecords(ctx)
	if err != nil {
		return Detail{}, fmt.Errorf("list images: %w", err)
	}
	var mine []images.Image
	for _, r := range records {
		if r.Target.Digest == img.Target.Digest {
			mine = append(mine, r)
		}
	}
	d := Detail{Target: img.Target}
	tr := plan.SortRecords(mine)
	for _, r := range tr.Names {
		d.Names = append(d.Names, r.Name)
		if r.CreatedAt.After(d.LastTagged) {
			d.LastTagged = r.CreatedAt
		}
	}
	if len(mine) > 0 {
		d.Created = plan.CreatedAt(slices.MinFunc(mine, func(a, b images.Image) int { return plan.CreatedAt(a).Compare(plan.CreatedAt(b)) }))
	}
	if d.ConfigDesc, d.Config, err = readConfig(ctx, s.stores.Content, img.Target); err != nil {
		return Detail{}, fmt.Errorf("inspect %s: %w", ref, err)
	}
	if d.Size, err = contentSize(ctx, s.stores.Content, img.Target); err != nil {
		return Detail{}, fmt.Errorf("inspect %s: %w", ref, err)
	}
	if d.Unpacked, err = s.unpackedSize(ctx, img.Target); err != nil {
		return Detail{}, fmt.Errorf("inspect %s: %w", ref, err)
	}
	return d, nil
}

// readConfig reads the config of the host's platform under target, or of
// the first platform present; none when no config is present.
func readConfig(ctx context.Context, cs content.Store, target ocispec.Descriptor) (ocispec.Descriptor, []byte, error) {
	for _, m := range []platforms.MatchComparer{platforms.Default(), platforms.All} {
		desc, err := images.Config(ctx, cs, target, m)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		blob, err := content.ReadBlob(ctx, cs, desc)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		return desc, blob, nil
	}
	return ocispec.Descriptor{}, nil, nil
}

// contentSize is the size of the content present under target, each blob
// once.
func contentSize(ctx context.Context, cs content.Store, target ocispec.Descriptor) (int64, error) {
	seen := map[digest.Digest]bool{}
	var size int64
	handler := images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if seen[desc.Digest] {
			return nil, images.ErrSkipDesc
		}
		seen[desc.Digest] = true
		info, err := cs.Info(ctx, desc.Digest)
		if errdefs.IsNotFound(err) {
			return nil, images.ErrSkipDesc
		}
		if err != nil {
			return nil, err
		}
		size += info.Size
		children, err := images.Children(ctx, cs, desc)
		if errdefs.IsNotFound(err) {
			return nil, nil
		}
		return children, err
	})
	if err := images.Walk(ctx, handler, target); err != nil {
		return 0, err
	}
	return size, nil
}

// unpackedSize is what the snapshots of target's layers take in the
// service's snapshotter (the host's platform), as docker counts an image's
// unpacked size: each layer's snapshot, shared ones too.
func (s *Service) unpackedSize(ctx context.Context, target ocispec.Descriptor) (int64, error) {
	u, err := s.unpacked(ctx, target)
	var size int64
	for _, n := range u.layers {
		size += n
	}
	return size, err
}

// unpacking is what the config of a target's host platform says of it.
type unpacking struct {
	// layers is the usage of each snapshot its layers are unpacked into,
	// by chain ID.
	layers map[digest.Digest]int64
	// created is the config's creation time, zero when it has none.
	created time.Time
}

// unpacked reads target's config and asks the usage of its layers'
// snapshots.
func (s *Service) unpacked(ctx context.Context, target ocispec.Descriptor) (unpacking, error) {
	var u unpacking
	_, blob, err := readConfig(ctx, s.stores.Content, target)
	if err != nil || blob == nil {
		return u, err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob, &cfg); err != nil {
		return u, nil
	}
	if cfg.Created != nil {
		u.created = *cfg.Created
	}
	sn := s.stores.Snapshotter(s.snapshotter)
	if sn == nil {
		return u, nil
	}
	u.layers = map[digest.Digest]int64{}
	for _, chain := range identity.ChainIDs(slices.Clone(cfg.RootFS.DiffIDs)) {
		usage, err := sn.Usage(ctx, chain.String())
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return u, fmt.Errorf("usage of snapshot %s: %w", chain, err)
		}
		u.layers[chain] = usage.Size
	}
	return u, nil
}
