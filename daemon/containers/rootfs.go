package containers

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// labelExpire is the label by which a lease expires.
const labelExpire = "containerd.io/gc.expire"

// maxCommittedHops bounds the walk from a container's snapshot down
// through committed snapshots that are not an image's layers (a Docker
// Engine's "<id>-init") to the image's chain.
const maxCommittedHops = 8

// Rootfs reads the image a container runs from its root filesystem: below
// its snapshot, the first snapshot named by a chain ID is the top of the
// image it was unpacked from, whatever its creator recorded and wherever
// its tag has moved since. Containers are known by their records' rootfs
// and, where a lease holds a writable snapshot, by that lease: a Docker
// Engine's created and stopped containers have no record, only the lease
// named after them that holds their files.
type Rootfs struct {
	// Snapshotter returns a snapshotter by name, or nil when the store has
	// none of that name.
	Snapshotter func(name string) snapshots.Snapshotter
	// Leases, when set, are read for the writable snapshots they hold.
	Leases leases.Manager
}

// Containers implements Source. It walks the snapshots that are not
// committed (containers' are active or views; images' are committed) once
// per snapshotter the containers use, and stats the committed snapshots
// between a container's and its image's: the cost never grows with the
// images.
func (r Rootfs) Containers(ctx context.Context, records []containers.Container) ([]plan.Container, error) {
	w := rootfsWalk{r: r, uncommitted: map[string]map[string]string{}}
	var out []plan.Container
	recorded := map[string]bool{}
	for _, rec := range records {
		if rec.SnapshotKey == "" || rec.Snapshotter == "" {
			continue
		}
		recorded[rec.Snapshotter+"/"+rec.SnapshotKey] = true
		c, err := w.container(ctx, rec.ID, rec.Snapshotter, rec.SnapshotKey)
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", rec.ID, err)
		}
		if c != nil {
			out = append(out, *c)
		}
	}
	if r.Leases == nil {
		return out, nil
	}
	held, err := r.leaseHeld(ctx, w, recorded)
	if err != nil {
		return nil, err
	}
	return append(out, held...), nil
}

// leaseHeld are the containers known by a writable snapshot a lease holds,
// but those a record knows already.
func (r Rootfs) leaseHeld(ctx context.Context, w rootfsWalk, recorded map[string]bool) ([]plan.Container, error) {
	ls, err := r.Leases.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list leases, to see which images their snapshots run: %w", err)
	}
	var out []plan.Container
	for _, l := range ls {
		if _, expires := l.Labels[labelExpire]; expires {
			// A writer's lease for the time of a write (a pull, a
			// load): a container's files are held for good, by a lease
			// with no expiry (a Docker Engine's) or by its record.
			continue
		}
		resources, err := r.Leases.ListResources(ctx, l)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list the resources of lease %s: %w", l.ID, err)
		}
		for _, res := range resources {
			name, ok := strings.CutPrefix(res.Type, "snapshots/")
			if !ok || recorded[name+"/"+res.ID] {
				continue
			}
			byKey, err := w.walk(ctx, name)
			if err != nil {
				return nil, fmt.Errorf("lease %s (ctr -n <namespace> leases delete %s removes it): %w", l.ID, l.ID, err)
			}
			if _, active := byKey[res.ID]; !active {
				continue
			}
			c, err := w.container(ctx, l.ID, name, res.ID)
			if err != nil {
				return nil, fmt.Errorf("lease %s: %w", l.ID, err)
			}
			if c != nil {
				c.Source = "lease"
				out = append(out, *c)
			}
		}
	}
	return out, nil
}

// rootfsWalk is what one listing learned of the snapshotters.
type rootfsWalk struct {
	r Rootfs
	// uncommitted maps snapshotter -> key -> parent of the snapshots that
	// are not committed.
	uncommitted map[string]map[string]string
}

// container reads the image below the snapshot key of snapshotter name, or
// is nil when the snapshot is not an uncommitted one on an image.
func (w rootfsWalk) container(ctx context.Context, id, name, key string) (*plan.Container, error) {
	byKey, err := w.walk(ctx, name)
	if err != nil {
		return nil, err
	}
	parent := byKey[key]
	for hop := 0; parent != "" && !isChainID(parent) && hop < maxCommittedHops; hop++ {
		// A committed snapshot between the container's and the image's
		// (a Docker Engine's "<id>-init"): look below it.
		info, err := w.r.Snapshotter(name).Stat(ctx, parent)
		if errdefs.IsNotFound(err) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("look below snapshot %s/%s for the image it runs: %w", name, parent, err)
		}
		parent = info.Parent
	}
	if parent == "" {
		return nil, nil
	}
	return &plan.Container{ID: id, Source: "rootfs", Rootfs: &plan.Parent{Snapshotter: name, Key: parent}}, nil
}

// isChainID tells the key of an unpacked layer: containerd's unpacker
// commits each under its chain ID.
func isChainID(key string) bool {
	return digest.Digest(key).Validate() == nil
}

// walk maps the keys of a snapshotter's uncommitted snapshots to their
// parents, once per listing. A snapshotter the store lacks fails: the
// rootfs of a container in it cannot be read, so a prune cannot know what
// it runs.
func (w rootfsWalk) walk(ctx context.Context, name string) (map[string]string, error) {
	if byKey, ok := w.uncommitted[name]; ok {
		return byKey, nil
	}
	unreadable := func(err error) error {
		return fmt.Errorf("its snapshot is in snapshotter %s, which cannot be read (%w), so which image it runs is unknown: run containerd with that snapshotter, or remove it", name, err)
	}
	sn := w.r.Snapshotter(name)
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
	w.uncommitted[name] = byKey
	return byKey, nil
}
