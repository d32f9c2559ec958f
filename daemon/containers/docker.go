package containers

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// DockerClient is the part of moby's client Docker needs.
type DockerClient interface {
	ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(context.Context, string, client.ContainerInspectOptions) (client.ContainerInspectResult, error)
}

// Docker lists a Docker Engine's containers, in every state. A Docker Engine
// keeps a containerd container record only while a container runs, so on a
// Docker host its created and stopped containers are known only to the
// engine.
type Docker struct {
	Client DockerClient
}

// Containers implements Source. The engine's list shows the image ID instead
// of the reference a container was created with once that name has moved to
// another image; only those containers are inspected for the reference as
// typed, which docker's own prune keeps.
func (d Docker) Containers(ctx context.Context, _ []containers.Container) ([]plan.Container, error) {
	res, err := d.Client.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list Docker's containers, which may use the images (if no Docker Engine uses this store, say so with --docker-host none): %w", err)
	}
	out := make([]plan.Container, 0, len(res.Items))
	for _, c := range res.Items {
		ctr := plan.Container{ID: c.ID, Source: dockerSource, Image: c.Image}
		if id, err := digest.Parse(c.ImageID); err == nil {
			ctr.ImageID = id
		}
		if listedByID(c.Image, ctr.ImageID) {
			typed, err := d.typedImage(ctx, c.ID)
			if err != nil {
				return nil, err
			}
			if typed != "" {
				ctr.Image = typed
			}
		}
		out = append(out, ctr)
	}
	return out, nil
}

// dockerSource names the containers Docker reports.
const dockerSource = "docker"

// Recall implements Recalled: a container the Engine creates has its
// writable snapshot and lease before the Engine lists it, so a second look
// that reads the leases sees it without asking the Engine again.
func (Docker) Recall(first []plan.Container) []plan.Container {
	var out []plan.Container
	for _, c := range first {
		if c.Source == dockerSource {
			out = append(out, c)
		}
	}
	return out
}

// listedByID reports whether the engine listed a container's image by its
// full ID, which it substitutes for a name that moved (or that the
// container was created with).
func listedByID(image string, id digest.Digest) bool {
	return image == "" || (id != "" && image == id.String())
}

// typedImage is the reference a container was created with.
func (d Docker) typedImage(ctx context.Context, id string) (string, error) {
	res, err := d.Client.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if errdefs.IsNotFound(err) {
		// Removed since the listing: what the listing said is enough.
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("inspect Docker container %s for the image it was created with: %w", id, err)
	}
	if res.Container.Config == nil {
		return "", nil
	}
	return res.Container.Config.Image, nil
}
