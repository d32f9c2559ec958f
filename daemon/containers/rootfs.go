package containers

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/imgprune/imgprune/daemon/images/plan"
)

// Rootfs reads the image a container runs from its root filesystem: the
// parent of its snapshot is the chain ID of the image it was unpacked from,
// whatever its creator recorded and wherever its tag has moved since.
type Rootfs struct {
	// Snapshotter returns a snapshotter by name, or nil when the store has
	// none of that name.
	Snapshotter func(name string) snapshots.Snapshotter
}

// Containers implements Source. It asks each container's snapshot once: the
// cost grows with the containers, never with the images.
func (r Rootfs) Containers(ctx context.Context, records []containers.Container) ([]plan.Container, error) {
	var out []plan.Container
	for _, rec := range records {
		if rec.SnapshotKey == "" || rec.Snapshotter == "" {
			continue
		}
		sn := r.Snapshotter(rec.Snapshotter)
		if sn == nil {
			continue
		}
		info, err := sn.Stat(ctx, rec.SnapshotKey)
		if errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err) || errdefs.IsNotImplemented(err) {
			// No snapshot (removed, or a snapshotter the daemon lacks):
			// no rootfs to protect.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("rootfs of container %s: %w", rec.ID, err)
		}
		if info.Parent == "" {
			continue
		}
		out = append(out, plan.Container{ID: rec.ID, Source: "rootfs", Rootfs: &plan.Parent{Snapshotter: rec.Snapshotter, Key: info.Parent}})
	}
	return out, nil
}
