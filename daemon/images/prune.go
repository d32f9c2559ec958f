package images

import (
	"context"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
)

// Prune removes the images f selects that no container uses, in the
// service's namespace (prune.Run), under the service's prune lock, which
// removals take too.
func (s *Service) Prune(ctx context.Context, f plan.Filters, opts ...prune.Opt) (prune.Report, error) {
	return prune.Run(s.withNamespace(ctx), prune.Store{
		Stores:          s.stores,
		Root:            s.root,
		Exclusive:       s.exclusive,
		Snapshotter:     s.snapshotter,
		DanglingRecords: s.DanglingRecords(),
		DeletesInFlight: s.deletesInFlight,
		PhaseTimeout:    s.phaseTimeout,
		Sources:         s.sources,
		Lock:            s.lock,
	}, f, opts...)
}
