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

// keepCounted makes sure target has its dangling record where the store
// keeps them; elsewhere its names are its refcount, and nothing is written.
func (s *Service) keepCounted(ctx context.Context, target ocispec.Descriptor, created time.Time) error {
	if !s.DanglingRecords() {
		return nil
	}
	return s.ensureDangling(ctx, target, created)
}

// ensureDangling makes sure target has its dangling record, and writes only
// when it has none. created, when known, is when the target entered the
// store.
func (s *Service) ensureDangling(ctx context.Context, target ocispec.Descriptor, created time.Time) error {
	_, err := s.stores.Images.Get(ctx, plan.DanglingName(target.Digest))
	if errdefs.IsNotFound(err) {
		return s.createDangling(ctx, images.Image{Name: plan.DanglingName(target.Digest), Target: target, Labels: plan.CreatedLabel(created)})
	}
	if err != nil {
		return fmt.Errorf("look up dangling record of %s: %w", target.Digest, err)
	}
	return nil
}

// createDangling creates r, the dangling record of a target that a plan saw
// lack one; one another client made since is as good.
func (s *Service) createDangling(ctx context.Context, r images.Image) error {
	_, err := s.stores.Images.Create(ctx, r)
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("create dangling record for %s: %w", r.Target.Digest, err)
	}
	return nil
}

// lastNameInUse reports, where names are the refcount (no dangling
// records), the container that uses target when name is its last record:
// moving or dropping that name would leave the image's content to the
// collector. It is "" otherwise, and always in a store with dangling
// records. records are the namespace's, as the caller listed them.
func (s *Service) lastNameInUse(ctx context.Context, records []images.Image, name string, target ocispec.Descriptor) (string, error) {
	if s.DanglingRecords() {
		return "", nil
	}
	var mine []images.Image
	for _, r := range records {
		if r.Target.Digest == target.Digest {
			mine = append(mine, r)
		}
	}
	if len(mine) != 1 || mine[0].Name != name {
		return "", nil
	}
	ctrs, _, err := s.listContainers(ctx)
	if err != nil {
		return "", err
	}
	users, err := s.users(ctx, records, selection{target: target, mine: mine}, ctrs)
	if err != nil || len(users) == 0 {
		return "", err
	}
	return users[0], nil
}
