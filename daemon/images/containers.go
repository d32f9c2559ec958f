package images

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	"github.com/imgprune/imgprune/daemon/images/plan"
)

// listContainers lists the namespace's container records once and what every
// source says of the images they use.
func (s *Service) listContainers(ctx context.Context) ([]plan.Container, []containers.Container, error) {
	return imgcontainers.List(ctx, s.stores.Containers, s.sources...)
}

// CreateContainer records c, a container of target, as a real container
// is: when target's layers are unpacked in the service's snapshotter, its
// rootfs is a snapshot prepared on them (c.ID its key), which the record
// references. Nothing runs it. A lease keeps the snapshot until the record
// does.
func (s *Service) CreateContainer(ctx context.Context, c containers.Container, target ocispec.Descriptor) (containers.Container, error) {
	ctx = s.withNamespace(ctx)
	l, err := s.stores.Leases.Create(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour))
	if err != nil {
		return containers.Container{}, fmt.Errorf("create container %s: %w", c.ID, err)
	}
	defer func() {
		// Not synchronous: the record keeps the snapshot now.
		dctx, cancel := s.finishing(ctx)
		defer cancel()
		if err := s.stores.Leases.Delete(dctx, l); err != nil {
			log.G(ctx).WithError(err).Warn("release a lease; it expires by itself")
		}
	}()
	if chain, err := s.topLayer(ctx, target); err == nil && chain != "" && s.stores.Snapshotter(s.snapshotter) != nil {
		sn := s.stores.Snapshotter(s.snapshotter)
		_, err := sn.Prepare(leases.WithLease(ctx, l.ID), c.ID, chain.String())
		switch {
		case err == nil:
			c.Snapshotter, c.SnapshotKey = s.snapshotter, c.ID
		case !errdefs.IsNotFound(err):
			return containers.Container{}, fmt.Errorf("prepare the rootfs of container %s: %w", c.ID, err)
		}
	}
	created, err := s.stores.Containers.Create(ctx, c)
	if err != nil {
		return containers.Container{}, fmt.Errorf("create container %s: %w", c.ID, err)
	}
	// From here the record keeps the image; a prune may have taken it
	// before.
	if _, err := s.stores.Content.Info(ctx, target.Digest); errdefs.IsNotFound(err) {
		if rerr := s.RemoveContainer(ctx, c.ID); rerr != nil {
			log.G(ctx).WithError(rerr).Warn("remove a container whose image went")
		}
		return containers.Container{}, fmt.Errorf("the image %s went while container %s was created: %w", target.Digest, c.ID, errdefs.ErrNotFound)
	}
	return created, nil
}

// topLayer is the chain ID of target's layers on this host's platform: the
// snapshot its containers' rootfs is prepared on; "" when there is none.
func (s *Service) topLayer(ctx context.Context, target ocispec.Descriptor) (digest.Digest, error) {
	cfg, err := hostConfig(ctx, s.stores.Content, target)
	if err != nil || len(cfg.parsed.RootFS.DiffIDs) == 0 {
		return "", err
	}
	return identity.ChainID(cfg.parsed.RootFS.DiffIDs), nil
}

// RemoveContainer removes the record of container id and its rootfs.
func (s *Service) RemoveContainer(ctx context.Context, id string) error {
	ctx = s.withNamespace(ctx)
	c, err := s.stores.Containers.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := s.stores.Containers.Delete(ctx, id); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	if c.SnapshotKey == "" {
		return nil
	}
	if sn := s.stores.Snapshotter(c.Snapshotter); sn != nil {
		if err := sn.Remove(ctx, c.SnapshotKey); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove the rootfs of container %s: %w", id, err)
		}
	}
	return nil
}

// ContainerSize is what the rootfs of container record c takes beyond its
// image: its snapshot's usage, none when it has no snapshot.
func (s *Service) ContainerSize(ctx context.Context, c containers.Container) int64 {
	if c.SnapshotKey == "" {
		return 0
	}
	sn := s.stores.Snapshotter(c.Snapshotter)
	if sn == nil {
		return 0
	}
	usage, err := sn.Usage(s.withNamespace(ctx), c.SnapshotKey)
	if err != nil {
		return 0
	}
	return usage.Size
}
