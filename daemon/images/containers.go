package images

import (
	"context"

	"github.com/containerd/containerd/v2/core/containers"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	"github.com/imgprune/imgprune/daemon/images/plan"
)

// listContainers lists the namespace's container records once and what every
// source says of the images they use.
func (s *Service) listContainers(ctx context.Context) ([]plan.Container, []containers.Container, error) {
	return imgcontainers.List(ctx, s.stores.Containers, s.sources...)
}
