// Package prune is imgprune's prune: one plan of what goes, the deletions
// in one batch with the last look before content goes, one collection, and
// the report of the bytes that left the disk; to a free-space goal when
// one is given, and finishing first what a prune that died left.
package prune

import (
	"context"
	"time"

	"github.com/containerd/errdefs"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	"github.com/imgprune/imgprune/daemon/store"
)

// Store is the store a prune works on, as the image service sees it.
type Store struct {
	Stores store.Stores
	// Root is the daemon's root directory as given; it is looked at only
	// once proven the daemon's own on this host (store.Stores.CheckRoot).
	Root string
	// Exclusive is set when no other client can write the store: a prune
	// then neither holds what it lets go nor looks at the containers again.
	Exclusive bool
	// Snapshotter is the one images are unpacked into.
	Snapshotter string
	// DanglingRecords is set where the store follows Moby's convention: a
	// dangling record per target is its refcount, which the prune keeps.
	DanglingRecords bool
	// DeletesInFlight is how many deletions (and creations) the prune
	// sends at once.
	DeletesInFlight int
	// PhaseTimeout bounds each phase of the prune; it must be above 0.
	PhaseTimeout time.Duration
	// Sources tell which images containers use; a prune refuses to run
	// without one.
	Sources []imgcontainers.Source
	// Lock makes this prune the only one of the namespace; held tells,
	// before content goes, that it still is; release lets it go. Only a
	// dry run runs without it.
	Lock func(ctx context.Context) (held func() error, release func(), err error)
}

// complete refuses a store a prune cannot run safely over.
func (st Store) complete(dryRun bool) error {
	switch {
	case st.PhaseTimeout <= 0:
		return errdefs.ErrInvalidArgument.WithMessage("prune: no phase timeout set")
	case len(st.Sources) == 0:
		// It could not tell which images are in use.
		return errdefs.ErrInvalidArgument.WithMessage("prune: no source of containers set")
	case st.Lock == nil && !dryRun:
		return errdefs.ErrInvalidArgument.WithMessage("prune: no lock set")
	}
	return nil
}

// pruner is one prune over its store.
type pruner struct {
	Store
}

// phase bounds one phase of work on ctx.
func (s *pruner) phase(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.PhaseTimeout)
}

// finishing is for the work that keeps content safe and counts what went:
// it runs to its end when ctx is cancelled (an interrupted prune still
// gives back and collects), but no longer than one phase.
func (s *pruner) finishing(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.PhaseTimeout)
}
