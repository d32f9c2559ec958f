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

// Containers implements Source. It walks the snapshots that are not
// committed (containers' are active or views; images' are committed) once
// per snapshotter the containers use: the cost never grows with the images.
func (r Rootfs) Containers(ctx context.Context, records []containers.Container) ([]plan.Container, error) {
	parents := map[string]map[string]string{} // snapshotter -> key -> parent
	var out []plan.Container
	for _, rec := range records {
		if rec.SnapshotKey == "" || rec.Snapshotter == "" {
			continue
		}
		byKey, ok := parents[rec.Snapshotter]
		if !ok {
			var err error
			if byKey, err = r.uncommitted(ctx, rec.Snapshotter); err != nil {
				return nil, fmt.Errorf("container %s: %w", rec.ID, err)
			}
			parents[rec.Snapshotter] = byKey
		}
		if parent := byKey[rec.SnapshotKey]; parent != "" {
			out = append(out, plan.Container{ID: rec.ID, Source: "rootfs", Rootfs: &plan.Parent{Snapshotter: rec.Snapshotter, Key: parent}})
		}
	}
	return out, nil
}

// uncommitted maps the keys of a snapshotter's uncommitted snapshots to
// their parents. A snapshotter the store lacks fails: the rootfs of a
// container in it cannot be read, so a prune cannot know what it runs.
func (r Rootfs) uncommitted(ctx context.Context, name string) (map[string]string, error) {
	unreadable := func(err error) error {
		return fmt.Errorf("its rootfs is in snapshotter %s, which cannot be read (%w), so which image it runs is unknown: run containerd with that snapshotter, or remove the container", name, err)
	}
	sn := r.Snapshotter(name)
	if sn == nil {
		return nil, unreadable(errdefs.ErrNotFound.WithMessage("the store has no such snapshotter"))
	}
	byKey := map[string]string{}
	err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		byKey[info.Name] = info.Parent
		return nil
	}, "kind!=committed")
	switch {
	// A daemon answers InvalidArgument for a snapshotter it has not loaded.
	case errdefs.IsNotFound(err), errdefs.IsInvalidArgument(err), errdefs.IsNotImplemented(err):
		return nil, unreadable(errdefs.ErrFailedPrecondition.WithMessage(err.Error()))
	case err != nil:
		return nil, fmt.Errorf("list the snapshots of %s, to see which images containers run: %w", name, err)
	}
	return byKey, nil
}
