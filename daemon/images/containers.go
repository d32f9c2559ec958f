package images

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/opencontainers/go-digest"
)

// ImageIDLabel is a container label holding the image ID (target digest) its
// creator resolved, for creators that record it.
const ImageIDLabel = "org.imgprune.image.id"

// containerRecords lists the namespace's containerd container records.
func (s *Service) containerRecords(ctx context.Context) ([]containers.Container, error) {
	records, err := s.stores.Containers.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	return records, nil
}

// listContainers returns what usage needs of the containers of every
// source: the namespace's container records and the configured listers.
func (s *Service) listContainers(ctx context.Context, records []containers.Container) ([]Container, error) {
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
