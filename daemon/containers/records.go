package containers

import (
	"context"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// ImageIDLabel is a container label holding the image ID (target digest) its
// creator resolved, for creators that record it.
const ImageIDLabel = "org.imgprune.image.id"

// Records reads the image a containerd container record names: the
// reference its creator typed in Container.Image (docker, nerdctl, ctr) and
// the image ID in ImageIDLabel. It leaves the containers whose CRI
// metadata the CRI source reads to that source: CRI writes a name of the
// image in Container.Image too (the first its image store knows, a tag,
// whatever the pod spec gave), but runs the image it resolved at creation,
// whatever that name names since.
type Records struct{}

// Containers implements Source.
func (Records) Containers(_ context.Context, records []containers.Container) ([]plan.Container, error) {
	var out []plan.Container
	for _, r := range records {
		if ext, ok := r.Extensions[CRIMetadataExtension]; ok && ext != nil {
			if _, err := decodeCRI(ext.GetValue()); err == nil {
				continue
			}
		}
		c := plan.Container{ID: r.ID, Source: "containerd", Image: r.Image}
		if id, err := digest.Parse(r.Labels[ImageIDLabel]); err == nil {
			c.ImageID = id
		}
		if c.Image != "" || c.ImageID != "" {
			out = append(out, c)
		}
	}
	return out, nil
}
