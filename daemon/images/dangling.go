package images

import (
	"context"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgprune/imgprune/daemon/store"
)

// keepCounted makes sure target has its dangling record where the store
// keeps them; elsewhere its names are its refcount, and nothing is written.
func (s *Service) keepCounted(ctx context.Context, target ocispec.Descriptor, created time.Time) error {
	if !s.DanglingRecords() {
		return nil
	}
	return store.EnsureDangling(ctx, s.stores.Images, target, created)
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
