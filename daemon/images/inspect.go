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
	"github.com/imgprune/imgprune/daemon/store"
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

// Config returns the config of target for this host's platform (or the
// first present) as stored; nil when none is present.
func (s *Service) Config(ctx context.Context, target ocispec.Descriptor) ([]byte, error) {
	cfg, err := hostConfig(s.withNamespace(ctx), s.stores.Content, target)
	return cfg.raw, err
}

// Inspect tells what the store knows of the target ref means. It writes
// nothing.
func (s *Service) Inspect(ctx context.Context, ref string) (Detail, error) {
	ctx = s.withNamespace(ctx)
	records, err := store.ListRecords(ctx, s.stores.Images)
	if err != nil {
		return Detail{}, fmt.Errorf("list images: %w", err)
	}
	img, err := resolveIn(records, ref)
	if err != nil {
		return Detail{}, err
	}
	mine := recordsOf(records, img.Target.Digest)
	d := Detail{Target: img.Target}
	for _, r := range plan.SortRecords(mine).Names {
		d.Names = append(d.Names, r.Name)
		if r.CreatedAt.After(d.LastTagged) {
			d.LastTagged = r.CreatedAt
		}
	}
	d.Created = plan.CreatedAt(slices.MinFunc(mine, func(a, b images.Image) int { return plan.CreatedAt(a).Compare(plan.CreatedAt(b)) }))
	cfg, err := hostConfig(ctx, s.stores.Content, img.Target)
	if err != nil {
		return Detail{}, fmt.Errorf("inspect %s: %w", ref, err)
	}
	d.ConfigDesc, d.Config = cfg.desc, cfg.raw
	if d.Size, err = contentSize(ctx, s.stores.Content, img.Target); err != nil {
		return Detail{}, fmt.Errorf("inspect %s: %w", ref, err)
	}
	u, err := s.layerUsage(ctx, cfg)
	if err != nil {
		return Detail{}, fmt.Errorf("inspect %s: %w", ref, err)
	}
	for _, n := range u.layers {
		d.Unpacked += n
	}
	return d, nil
}

// imageConfig is the config of a target for this host's platform.
type imageConfig struct {
	desc ocispec.Descriptor
	// raw is the config as stored, nil when none is present.
	raw []byte
	// parsed is raw decoded; zero when raw is not an image config.
	parsed ocispec.Image
}

// hostConfig reads the config of the host's platform under target, or of
// the first platform present.
func hostConfig(ctx context.Context, cs content.Store, target ocispec.Descriptor) (imageConfig, error) {
	for _, m := range []platforms.MatchComparer{platforms.Default(), platforms.All} {
		desc, err := images.Config(ctx, cs, target, m)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return imageConfig{}, err
		}
		blob, err := content.ReadBlob(ctx, cs, desc)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return imageConfig{}, err
		}
		cfg := imageConfig{desc: desc, raw: blob}
		if json.Unmarshal(blob, &cfg.parsed) != nil {
			cfg.parsed = ocispec.Image{}
		}
		return cfg, nil
	}
	return imageConfig{}, nil
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

// unpacking is what a target's config says of it.
type unpacking struct {
	// layers is the usage of each snapshot its layers are unpacked into,
	// by chain ID.
	layers map[digest.Digest]int64
	// created is the config's creation time, zero when it has none.
	created time.Time
	labels  map[string]string
}

// unpacked reads target's config and asks the usage of its layers'
// snapshots.
func (s *Service) unpacked(ctx context.Context, target ocispec.Descriptor) (unpacking, error) {
	cfg, err := hostConfig(ctx, s.stores.Content, target)
	if err != nil {
		return unpacking{}, err
	}
	return s.layerUsage(ctx, cfg)
}

// layerUsage asks the usage of the snapshots cfg's layers are unpacked
// into, in the service's snapshotter.
func (s *Service) layerUsage(ctx context.Context, cfg imageConfig) (unpacking, error) {
	u := unpacking{labels: cfg.parsed.Config.Labels}
	if cfg.parsed.Created != nil {
		u.created = *cfg.parsed.Created
	}
	sn := s.stores.Snapshotter(s.snapshotter)
	if sn == nil {
		return u, nil
	}
	u.layers = map[digest.Digest]int64{}
	for _, chain := range identity.ChainIDs(slices.Clone(cfg.parsed.RootFS.DiffIDs)) {
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
