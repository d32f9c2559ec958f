package containers

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// The extension containerd's CRI plugin keeps a container's metadata in,
// and the label it marks its containers' kind with (its internal cri/labels
// package).
const (
	CRIMetadataExtension = "io.cri-containerd.container.metadata"
	CRIKindLabel         = "io.cri-containerd.kind"
)

// criMetadata is the part of CRI's versioned container metadata usage needs.
type criMetadata struct {
	Version  string
	Metadata struct {
		ID string
		// ImageRef is the image config digest: CRI's image ID.
		ImageRef string
		// ImageDigest is the target digest (containerd 2.4 and later).
		ImageDigest string
		// ImageName is the name the container runs: a repo tag, else a
		// repo digest.
		ImageName string
	}
}

// CRI reads the images of containers made by containerd's CRI plugin (the
// kubelet's) from its metadata extension: the name the pod spec gave, and
// the image it resolved at creation, which is the one it runs (and the one
// the kubelet's image GC keeps) after a pull moved the name. CRI writes a
// name of the image in Container.Image too (containerd 2.4: the first its
// image store knows), which the Records source leaves to this one. Containers are recognized by that extension, in
// whatever namespace they are.
type CRI struct{}

// Containers implements Source. A record whose metadata cannot be decoded
// fails the listing, named: a prune that cannot tell which image a
// container runs must change nothing.
func (CRI) Containers(_ context.Context, records []containers.Container) ([]plan.Container, error) {
	var out []plan.Container
	for _, r := range records {
		ext, ok := r.Extensions[CRIMetadataExtension]
		if !ok || ext == nil {
			continue
		}
		c, err := decodeCRI(ext.GetValue())
		if err != nil {
			return nil, fmt.Errorf("container %s: cannot tell which image it runs: %w: %w", r.ID, err, errdefs.ErrDataLoss)
		}
		c.ID = r.ID
		out = append(out, c)
	}
	return out, nil
}

// decodeCRI decodes CRI's versioned container metadata.
func decodeCRI(data []byte) (plan.Container, error) {
	var m criMetadata
	if err := json.Unmarshal(data, &m); err != nil {
		return plan.Container{}, fmt.Errorf("decode CRI container metadata: %w", err)
	}
	if m.Version != "v1" {
		return plan.Container{}, fmt.Errorf("decode CRI container metadata: unsupported version %q", m.Version)
	}
	c := plan.Container{Source: "cri", Image: m.Metadata.ImageName, RunsRecorded: true}
	if d, err := digest.Parse(m.Metadata.ImageDigest); err == nil {
		c.ImageID = d
	}
	if d, err := digest.Parse(m.Metadata.ImageRef); err == nil {
		c.ConfigID = d
	}
	if c.Image == "" && c.ImageID == "" && c.ConfigID == "" {
		return plan.Container{}, fmt.Errorf("decode CRI container metadata: it names no image")
	}
	return c, nil
}
