package images

import (
	"context"
	"time"
)

// DefaultPhaseTimeout bounds each phase of a prune, a removal or a check:
// the listings, the deletions, the collection, the accounting. A daemon
// that stops answering fails the phase then instead of hanging the caller
// (and a watch's health) forever; a prune of a hundred thousand images
// takes a few minutes all told.
const DefaultPhaseTimeout = 15 * time.Minute

// WithPhaseTimeout sets how long each phase of a prune, removal or check
// may take (DefaultPhaseTimeout when d is not above 0).
func WithPhaseTimeout(d time.Duration) Opt {
	return func(s *Service) {
		if d > 0 {
			s.phaseTimeout = d
		}
	}
}

// phase bounds one phase of work on ctx.
func (s *Service) phase(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.phaseTimeout)
}

// finishing is for the work that keeps content safe and counts what went:
// it runs to its end when ctx is cancelled (an interrupted prune still
// gives back and collects), but no longer than one phase.
func (s *Service) finishing(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.phaseTimeout)
}
