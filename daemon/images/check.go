package images

import (
	"context"

	"github.com/imgprune/imgprune/daemon/images/check"
)

// Check runs the hard prune on the service's namespace (check.Run): what
// holds or wastes space that no image accounts for, removed with
// check.DeleteFound.
func (s *Service) Check(ctx context.Context, opts ...check.Opt) (check.Report, error) {
	return check.Run(s.withNamespace(ctx), check.Store{
		Stores:       s.stores,
		Root:         s.root,
		Exclusive:    s.exclusive,
		Snapshotter:  s.snapshotter,
		Containers:   s.listContainers,
		PhaseTimeout: s.phaseTimeout,
	}, opts...)
}
