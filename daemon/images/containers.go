package images

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// ImageIDLabel is a container label holding the image ID (target digest) its
// creator resolved, for creators that record it.
const ImageIDLabel = "org.imgprune.image.id"

// listContainers lists the containers of every source: the namespace's
// containerd container records and the configured listers.
func (s *Service) listContainers(ctx context.Context) ([]Container, error) {
	records, err := s.stores.Containers.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]Container, 0, len(records))
	for _, r := range records {
		c := Container{ID: r.ID, Image: r.Image}
		if id, err := digest.Parse(r.Labels[ImageIDLabel]); err == nil {
			c.ImageID = id
		}
		out = append(out, c)
	}
	for _, l := range s.listers {
		more, err := l.ListContainers(ctx)
		if err != nil {
			return nil, fmt.Errorf("list containers: %w", err)
		}
		out = append(out, more...)
	}
	return out, nil
}
