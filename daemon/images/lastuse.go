package images

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store"
)

// StampLastUse records, on the count record of every target a container
// uses now, that it is in use: what a watch does as containers are made.
func (s *Service) StampLastUse(ctx context.Context) (int, error) {
	ctx = s.withNamespace(ctx)
	u, err := s.listInUse(ctx)
	if err != nil {
		return 0, err
	}
	return store.StampLastUse(ctx, s.stores.Images, plan.ByTarget(u.records), slices.Sorted(maps.Keys(u.users)), time.Now(), s.deletesInFlight)
}
