package images

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// adopt gives every target among records that lacks one its dangling record
// (plan.Adoptions), so that records other tools made are counted like
// imgprune's own.
func (s *Service) adopt(ctx context.Context, records []images.Image) error {
	for _, r := range plan.Adoptions(records) {
		if _, err := s.ensureDangling(ctx, r.Target, plan.CreatedAt(r)); err != nil {
			return err
		}
	}
	return nil
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
