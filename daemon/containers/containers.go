// Package containers tells which images containers use, whoever made them:
// one Source per kind of creator, each reading what that creator records
// into a plan.Container. A container is protected if any source says so.
package containers

import (
	"context"
	"fmt"
	"slices"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/images"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store"
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

// ListUsed lists the containers as List does, then the image records of
// s. Containers first: what cannot know them changes nothing.
func ListUsed(ctx context.Context, s store.Stores, sources ...Source) ([]plan.Container, []containers.Container, []images.Image, error) {
	ctrs, ctrRecords, err := List(ctx, s.Containers, sources...)
	if err != nil {
		return nil, nil, nil, err
	}
	records, err := store.ListRecords(ctx, s.Images)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list images: %w", err)
	}
	return ctrs, ctrRecords, records, nil
}

// Recalled is implemented by a source whose second listing may be taken
// from its first: every container it makes after a listing, the Rootfs
// source finds too (a Docker Engine prepares a container's writable
// snapshot, under a lease named after it, before it registers the
// container), and its own listing is dear (an Engine's costs about
// containers × images).
type Recalled interface {
	Source
	// Recall returns the containers of first that the source reported.
	Recall(first []plan.Container) []plan.Container
}

// Again returns the sources of a second listing, after first: a Recalled
// source answers from first when a Rootfs source that reads the leases is
// among sources; without one, every source lists again.
func Again(first []plan.Container, sources ...Source) []Source {
	if !slices.ContainsFunc(sources, readsLeases) {
		return sources
	}
	out := make([]Source, len(sources))
	for i, s := range sources {
		out[i] = s
		if r, ok := s.(Recalled); ok {
			out[i] = recalled{source: r, first: first}
		}
	}
	return out
}

// readsLeases reports whether s finds containers by the writable snapshots
// their leases hold.
func readsLeases(s Source) bool {
	r, ok := s.(Rootfs)
	return ok && r.Snapshotter != nil && r.Leases != nil
}

// recalled answers a second listing from the first.
type recalled struct {
	source Recalled
	first  []plan.Container
}

func (r recalled) Containers(context.Context, []containers.Container) ([]plan.Container, error) {
	return r.source.Recall(r.first), nil
}
