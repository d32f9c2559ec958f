package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// EnsureDangling makes sure target has its dangling record in is, and
// writes only when it has none: a write the image service's verbs and the
// prune share. created, when known, is when the target entered the store.
func EnsureDangling(ctx context.Context, is images.Store, target ocispec.Descriptor, created time.Time) error {
	_, err := is.Get(ctx, plan.DanglingName(target.Digest))
	if errdefs.IsNotFound(err) {
		return CreateDangling(ctx, is, images.Image{Name: plan.DanglingName(target.Digest), Target: target, Labels: plan.CreatedLabel(created)})
	}
	if err != nil {
		return fmt.Errorf("look up dangling record of %s: %w", target.Digest, err)
	}
	return nil
}

// CreateDangling creates r in is, the dangling record of a target that a plan saw
// lack one; one another client made since is as good.
func CreateDangling(ctx context.Context, is images.Store, r images.Image) error {
	_, err := is.Create(ctx, r)
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("create dangling record for %s: %w", r.Target.Digest, err)
	}
	return nil
}

// lastUseResolution is how old a last-use stamp gets before it is written
// again: the kubelet's image collector notices use every 5 minutes too, and
// a listing run every few seconds then writes nothing.
const lastUseResolution = 5 * time.Minute

// StampLastUse records now as the last use of each target in used whose
// stamp is older than lastUseResolution: on its count record, or, when
// another tool named it and no prune adopted it yet, on its first name (a
// prune that adopts it carries the stamp over). It creates no record. It
// returns how many stamps it wrote, at most inFlight at once.
func StampLastUse(ctx context.Context, is images.Store, byTarget map[digest.Digest][]images.Image, used []digest.Digest, now time.Time, inFlight int) (int, error) {
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
	g.SetLimit(max(inFlight, 1))
	errs := make([]error, len(stale))
	for i, r := range stale {
		g.Go(func() error {
			_, err := is.Update(gctx, r, "labels."+plan.LastUsedLabel)
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
