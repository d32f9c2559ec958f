// Package containers tells which images containers use, whoever made them:
// one Source per kind of creator, each reading what that creator records.
// A container is protected if any source says so.
package containers

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/opencontainers/go-digest"
)

// Container is what one source knows of a container's image, in any state
// (created, stopped, running). Each field is set only when the source
// records it.
type Container struct {
	ID string
	// Source names the source that reported the container, for warnings.
	Source string
	// Image is the reference as the container's creator typed it: a name,
	// "repo:tag@digest", "repo@digest", a full or truncated image ID.
	Image string
	// ImageID is the target digest resolved at creation.
	ImageID digest.Digest
	// ConfigID is the image config digest resolved at creation: CRI's image
	// ID, the name of its `sha256:<config digest>` record.
	ConfigID digest.Digest
	// Rootfs is the snapshot the container's root filesystem was prepared
	// on: the chain ID of the image it was unpacked from.
	Rootfs *Parent
}

// Parent is a snapshot a container's snapshot was prepared on.
type Parent struct {
	Snapshotter string
	// Key is the parent snapshot's key: for an unpacked image, its chain ID.
	Key string
}

// Source lists the containers that one kind of creator made.
type Source interface {
	// Containers returns the containers the source knows of, in every
	// state. records are the namespace's containerd container records,
	// listed once for all sources; a source that knows containers from
	// elsewhere ignores them.
	Containers(ctx context.Context, records []containers.Container) ([]Container, error)
}

// List lists the namespace's container records once and every source's
// containers. A source that fails fails the listing: a prune that cannot
// know the containers must change nothing.
func List(ctx context.Context, store containers.Store, sources ...Source) ([]Container, []containers.Container, error) {
	records, err := store.List(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list containers: %w", err)
	}
	var out []Container
	for _, s := range sources {
		more, err := s.Containers(ctx, records)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, more...)
	}
	return out, records, nil
}
