package testengine

import (
	"context"
	"sync/atomic"

	dockerclient "github.com/moby/moby/client"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
)

// CountingClient is a client of the Engine API that counts its container
// listings, each of which costs an Engine about containers × images.
type CountingClient struct {
	imgcontainers.DockerClient
	Listed *atomic.Int32
}

// ContainerList counts the listing and passes it on.
func (c CountingClient) ContainerList(ctx context.Context, opts dockerclient.ContainerListOptions) (dockerclient.ContainerListResult, error) {
	c.Listed.Add(1)
	return c.DockerClient.ContainerList(ctx, opts)
}
