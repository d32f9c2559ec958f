package server

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgprune/imgprune/daemon/store"
)

// releaseTimeout bounds the release of a container's creation lease, which
// runs when the request is gone too; a lease not released expires by
// itself.
const releaseTimeout = time.Minute

// records writes the containers the server serves as containerd records,
// as a real container is recorded; nothing runs them.
type records struct {
	stores store.Stores
	// snapshotter is the one images are unpacked into, where a
	// container's rootfs is prepared.
	snapshotter string
}

// create records c, a container of target whose config is imageConfig: when
// target's layers are unpacked in the snapshotter, its rootfs is a
// snapshot prepared on them (c.ID its key), which the record references. A
// lease keeps the snapshot until the record does.
func (rs records) create(ctx context.Context, c containers.Container, target ocispec.Descriptor, imageConfig []byte) (containers.Container, error) {
	l, err := rs.stores.Leases.Create(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour))
	if err != nil {
		return containers.Container{}, fmt.Errorf("create container %s: %w", c.ID, err)
	}
	defer func() {
		// Not synchronous: the record keeps the snapshot now.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		if err := rs.stores.Leases.Delete(dctx, l); err != nil {
			log.G(ctx).WithError(err).Warn("release a lease; it expires by itself")
		}
	}()
	if sn := rs.stores.Snapshotter(rs.snapshotter); sn != nil {
		if chain := topLayer(imageConfig); chain != "" {
			_, err := sn.Prepare(leases.WithLease(ctx, l.ID), c.ID, chain.String())
			switch {
			case err == nil:
				c.Snapshotter, c.SnapshotKey = rs.snapshotter, c.ID
			case !errdefs.IsNotFound(err):
				return containers.Container{}, fmt.Errorf("prepare the rootfs of container %s: %w", c.ID, err)
			}
		}
	}
	created, err := rs.stores.Containers.Create(ctx, c)
	if err != nil {
		return containers.Container{}, fmt.Errorf("create container %s: %w", c.ID, err)
	}
	// From here the record keeps the image; a prune may have taken it
	// before.
	if _, err := rs.stores.Content.Info(ctx, target.Digest); errdefs.IsNotFound(err) {
		if rerr := rs.remove(ctx, c.ID); rerr != nil {
			log.G(ctx).WithError(rerr).Warn("remove a container whose image went")
		}
		return containers.Container{}, fmt.Errorf("the image %s went while container %s was created: %w", target.Digest, c.ID, errdefs.ErrNotFound)
	}
	return created, nil
}

// topLayer is the chain ID of an image config's layers: the snapshot its
// containers' rootfs is prepared on; "" when there is none.
func topLayer(config []byte) digest.Digest {
	var cfg ocispec.Image
	if json.Unmarshal(config, &cfg) != nil || len(cfg.RootFS.DiffIDs) == 0 {
		return ""
	}
	return identity.ChainID(cfg.RootFS.DiffIDs)
}

// remove removes the record of container id and its rootfs.
func (rs records) remove(ctx context.Context, id string) error {
	c, err := rs.stores.Containers.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := rs.stores.Containers.Delete(ctx, id); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	if c.SnapshotKey == "" {
		return nil
	}
	if sn := rs.stores.Snapshotter(c.Snapshotter); sn != nil {
		if err := sn.Remove(ctx, c.SnapshotKey); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove the rootfs of container %s: %w", id, err)
		}
	}
	return nil
}

// size is what the rootfs of container record c takes beyond its image:
// its snapshot's usage, none when it has no snapshot.
func (rs records) size(ctx context.Context, c containers.Container) int64 {
	if c.SnapshotKey == "" {
		return 0
	}
	sn := rs.stores.Snapshotter(c.Snapshotter)
	if sn == nil {
		return 0
	}
	usage, err := sn.Usage(ctx, c.SnapshotKey)
	if err != nil {
		return 0
	}
	return usage.Size
}
