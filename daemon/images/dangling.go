package images

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// adopt gives every target among records that lacks one its dangling record,
// so that records other tools made are counted like imgprune's own. It
// returns records with the new dangling records added. With persist unset it
// only adds them to the listing, for a dry run that must change nothing.
func (s *Service) adopt(ctx context.Context, records []images.Image, persist bool) ([]images.Image, error) {
	has := map[string]bool{}
	for _, r := range records {
		if isDangling(r.Name) {
			has[r.Target.Digest.String()] = true
		}
	}
	for _, r := range records {
		if has[r.Target.Digest.String()] {
			continue
		}
		created := images.Image{Name: danglingName(r.Target.Digest), Target: r.Target, CreatedAt: r.CreatedAt}
		if persist {
			var err error
			if created, err = s.ensureDangling(ctx, r.Target); err != nil {
				return nil, err
			}
		}
		has[r.Target.Digest.String()] = true
		records = append(records, created)
	}
	return records, nil
}

// ensureDangling creates target's dangling record unless it exists.
func (s *Service) ensureDangling(ctx context.Context, target ocispec.Descriptor) (images.Image, error) {
	img, err := s.stores.Images.Create(ctx, images.Image{Name: danglingName(target.Digest), Target: target})
	if errdefs.IsAlreadyExists(err) {
		img, err = s.stores.Images.Get(ctx, danglingName(target.Digest))
	}
	if err != nil {
		return images.Image{}, fmt.Errorf("create dangling record for %s: %w", target.Digest, err)
	}
	return img, nil
}
