// Package store names the containerd stores imgprune works over, a
// daemon's through its client or an embedded metadata store's, in one
// struct that every package above it shares; lists and writes image
// records through them; and tells what a daemon's root on this host holds.
// Of the project it imports only daemon/images/plan (the names and labels
// of the records it writes) and pkg/leases.
package store

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/containerd/v2/core/snapshots"

	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// Stores are the containerd interfaces of one store.
type Stores struct {
	Images     images.Store
	Content    content.Store
	Leases     leases.Manager
	Containers containers.Store
	// Sandboxes, when set, are listed for the references their labels hold.
	Sandboxes sandbox.Store
	// Namespaces, when set, tells which blobs other namespaces hold.
	Namespaces NamespaceLister
	// Snapshotter returns a snapshotter by name, or nil when there is none.
	Snapshotter func(name string) snapshots.Snapshotter
	// Collector runs the garbage collection a prune ends with.
	Collector Collector
	// Batch, when set, runs fn with one transaction in its context, so that
	// a prune's deletions commit at once: an embedded store's. A daemon's
	// API has none: each write commits on its own.
	Batch func(ctx context.Context, fn func(context.Context) error) error
	// UUID, when set, is the daemon's UUID, which it keeps below its root
	// directory: a store this process opened has none.
	UUID func(ctx context.Context) (string, error)
}

// NamespaceLister lists the namespaces of a store, to tell content other
// namespaces hold.
type NamespaceLister interface {
	List(ctx context.Context) ([]string, error)
}

// Collector runs containerd's garbage collection once and waits for it.
type Collector interface {
	Collect(ctx context.Context) error
}

// FromClient returns the stores of a containerd daemon.
func FromClient(c *client.Client) Stores {
	return Stores{
		Images:      c.ImageService(),
		Content:     c.ContentStore(),
		Leases:      c.LeasesService(),
		Containers:  c.ContainerService(),
		Sandboxes:   c.SandboxStore(),
		Namespaces:  c.NamespaceService(),
		Snapshotter: c.SnapshotService,
		Collector:   imgleases.Collector{Leases: c.LeasesService()},
		UUID: func(ctx context.Context) (string, error) {
			info, err := c.Server(ctx)
			if err != nil {
				return "", fmt.Errorf("ask containerd for its UUID: %w", err)
			}
			return info.UUID, nil
		},
	}
}
