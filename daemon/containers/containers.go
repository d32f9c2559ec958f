// Package containers tells which images containers use, whoever made them:
// one Source per kind of creator, each reading what that creator records
// into a plan.Container. A container is protected if any source says so.
package containers

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/containers"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// Source lists the containers that one kind of creator made.
type Source interface {
	// Containers returns the containers the source knows of, in every
	// state. records are the namespace's containerd container records,
	// listed once for all sources; a source that knows containers from
	// elsewhere ignores them.
	Containers(ctx context.Context, records []containers.Container) ([]plan.Container, error)
}

// List lists the namespace's container records once and every source's
// containers. A source that fails fails the listing: a prune that cannot
// know the containers must change nothing.
func List(ctx context.Context, store containers.Store, sources ...Source) ([]plan.Container, []containers.Container, error) {
	records, err := store.List(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list containers: %w", err)
	}
	var out []plan.Container
	for _, s := range sources {
		more, err := s.Containers(ctx, records)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, more...)
	}
	return out, records, nil
}
