package images

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// adopt gives every target among records that lacks one its dangling record,
// so that records other tools made are counted like imgprune's own. It
// returns records with the new dangling records added. With persist unset it
// only adds them to the listing, for a dry run that must change nothing.
func (s *Service) adopt(ctx context.Context, records []images.Image, persist bool) ([]images.Image, error) {
	has := map[digest.Digest]bool{}
	entered := map[digest.Digest]images.Image{} // each target's earliest record
	for _, r := range records {
		d := r.Target.Digest
		if plan.IsDangling(r.Name) {
			has[d] = true
		} else if first, ok := entered[d]; !ok || r.CreatedAt.Before(first.CreatedAt) {
			entered[d] = r
		}
	}
	for _, d := range slices.Sorted(maps.Keys(entered)) {
		if has[d] {
			continue
		}
		r := entered[d]
		adopted := images.Image{Name: plan.DanglingName(d), Target: r.Target, CreatedAt: r.CreatedAt, Labels: plan.CreatedLabel(r.CreatedAt)}
		if persist {
			var err error
			if adopted, err = s.ensureDangling(ctx, r.Target, r.CreatedAt); err != nil {
				return nil, err
			}
		}
		records = append(records, adopted)
	}
	return records, nil
}

// ensureDangling creates target's dangling record unless it exists. created,
// when known, is when the target entered the store.
func (s *Service) ensureDangling(ctx context.Context, target ocispec.Descriptor, created time.Time) (images.Image, error) {
	img, err := s.stores.Images.Create(ctx, images.Image{Name: plan.DanglingName(target.Digest), Target: target, Labels: plan.CreatedLabel(created)})
	if errdefs.IsAlreadyExists(err) {
		img, err = s.stores.Images.Get(ctx, plan.DanglingName(target.Digest))
	}
	if err != nil {
		return images.Image{}, fmt.Errorf("create dangling record for %s: %w", target.Digest, err)
	}
	return img, nil
}
