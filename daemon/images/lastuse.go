package images

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// lastUseResolution is how old a last-use stamp gets before it is written
// again: the kubelet's image collector notices use every 5 minutes too, and
// a listing run every few seconds then writes nothing.
const lastUseResolution = 5 * time.Minute

// stampLastUse records now as the last use of each target in used whose
// stamp is older than lastUseResolution: on its count record, or, when
// another tool named it and no prune adopted it yet, on its first name (a
// prune that adopts it carries the stamp over). It creates no record. It
// returns how many stamps it wrote.
func (s *Service) stampLastUse(ctx context.Context, byTarget map[digest.Digest][]images.Image, used []digest.Digest, now time.Time) (int, error) {
	var stale []images.Image
	for _, target := range used {
		recs := byTarget[target]
		if len(recs) == 0 || now.Sub(plan.LastUsed(recs)) < lastUseResolution {
			continue
		}
		tr := plan.SortRecords(recs)
		stamped := tr.CountRecord()
		if stamped == nil {
			stamped = &tr.Names[0]
		}
		stale = append(stale, images.Image{Name: stamped.Name, Labels: plan.LastUsedLabels(now)})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.deletesInFlight)
	errs := make([]error, len(stale))
	for i, r := range stale {
		g.Go(func() error {
			_, err := s.stores.Images.Update(gctx, r, "labels."+plan.LastUsedLabel)
			if err != nil && !errdefs.IsNotFound(err) {
				// Gone meanwhile is no failure: there is nothing to stamp.
				errs[i] = fmt.Errorf("record the last use of %s: %w", r.Name, err)
			}
			return nil
		})
	}
	g.Wait()
	written := len(stale)
	for _, err := range errs {
		if err != nil {
			written--
		}
	}
	return written, errors.Join(errs...)
}

// StampLastUse records, on the count record of every target a container
// uses now, that it is in use: what a watch does as containers are made.
func (s *Service) StampLastUse(ctx context.Context) (int, error) {
	ctx = s.withNamespace(ctx)
	u, err := s.listInUse(ctx)
	if err != nil {
		return 0, err
	}
	return s.stampLastUse(ctx, plan.ByTarget(u.records), slices.Sorted(maps.Keys(u.users)), time.Now())
}
