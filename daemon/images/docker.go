package images

import (
	"context"
	"fmt"

	"github.com/moby/moby/client"
	"github.com/opencontainers/go-digest"
)

// DockerContainers lists a Docker Engine's containers, in every state. A
// Docker Engine keeps a containerd container record only while a container
// runs, so on a Docker host its created and stopped containers are known
// only to the engine.
type DockerContainers struct {
	Client interface {
		ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error)
	}
}

// ListContainers implements ContainerLister.
func (d DockerContainers) ListContainers(ctx context.Context) ([]Container, error) {
	res, err := d.Client.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list Docker's containers, which may use the images (if no Docker Engine uses this store, say so with --docker-host none): %w", err)
	}
	out := make([]Container, 0, len(res.Items))
	for _, c := range res.Items {
		ctr := Container{ID: c.ID, Image: c.Image}
		if id, err := digest.Parse(c.ImageID); err == nil {
			ctr.ImageID = id
		}
		out = append(out, ctr)
	}
	return out, nil
}
