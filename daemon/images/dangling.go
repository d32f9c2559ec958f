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
		if isDangling(r.Name) {
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
		adopted := images.Image{Name: danglingName(d), Target: r.Target, CreatedAt: r.CreatedAt, Labels: createdLabel(r.CreatedAt)}
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

// createdAtLabel keeps, on a dangling record adopted or made after its
// target entered the store, when the target entered: containerd stamps a
// record with its own creation time, and until must not see a target that
// an interrupted prune left nameless as new.
const createdAtLabel = "org.imgprune.created"

func createdLabel(t time.Time) map[string]string {
	if t.IsZero() {
		return nil
	}
	return map[string]string{createdAtLabel: t.UTC().Format(time.RFC3339Nano)}
}

// createdAt is when a record's target entered the store, as far as the
// record tells.
func createdAt(img images.Image) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, img.Labels[createdAtLabel]); err == nil {
		return t
	}
	return img.CreatedAt
}

// ensureDangling creates target's dangling record unless it exists. created,
// when known, is when the target entered the store.
func (s *Service) ensureDangling(ctx context.Context, target ocispec.Descriptor, created time.Time) (images.Image, error) {
	img, err := s.stores.Images.Create(ctx, images.Image{Name: danglingName(target.Digest), Target: target, Labels: createdLabel(created)})
	if errdefs.IsAlreadyExists(err) {
		img, err = s.stores.Images.Get(ctx, danglingName(target.Digest))
	}
	if err != nil {
		return images.Image{}, fmt.Errorf("create dangling record for %s: %w", target.Digest, err)
	}
	return img, nil
}
