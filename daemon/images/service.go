// Package images is imgprune's image service: the records of a containerd
// namespace, the dangling record per target that is their refcount, the
// usage of images by containers, and prune.
package images

import (
	"context"
	"sync"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// DefaultSnapshotter is the snapshotter images are unpacked into.
const DefaultSnapshotter = "overlayfs"

// Stores are the containerd interfaces the service works over: a daemon's
// through its client, or an embedded metadata store's.
type Stores struct {
	Images      images.Store
	Content     content.Store
	Leases      leases.Manager
	Containers  containers.Store
	Namespaces  NamespaceLister
	Snapshotter func(name string) snapshots.Snapshotter
	// Collector runs the garbage collection a prune ends with.
	Collector Collector
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

// StoresFromClient returns the stores of a containerd daemon.
func StoresFromClient(c *client.Client) Stores {
	return Stores{
		Images:      c.ImageService(),
		Content:     c.ContentStore(),
		Leases:      c.LeasesService(),
		Containers:  c.ContainerService(),
		Namespaces:  c.NamespaceService(),
		Snapshotter: c.SnapshotService,
		Collector:   imgleases.Collector{Leases: c.LeasesService()},
	}
}

// ContainerLister lists containers that use images of the namespace from a
// source other than containerd's container records, a Docker Engine say.
type ContainerLister interface {
	ListContainers(ctx context.Context) ([]Container, error)
}

// Service is the image service of one containerd namespace. It is safe for
// concurrent use; prunes run one at a time.
type Service struct {
	stores      Stores
	client      *client.Client
	namespace   string
	snapshotter string
	listers     []ContainerLister
	// root is the daemon's root directory, if it may be on this host.
	root string

	pruning sync.Mutex
}

// Opt configures a Service.
type Opt func(*Service)

// WithSnapshotter sets the snapshotter that load unpacks into.
func WithSnapshotter(name string) Opt {
	return func(s *Service) { s.snapshotter = name }
}

// WithContainerLister adds a source of containers whose images are in use.
func WithContainerLister(l ContainerLister) Opt {
	return func(s *Service) { s.listers = append(s.listers, l) }
}

// WithClient lets the service load and unpack archives through c.
func WithClient(c *client.Client) Opt {
	return func(s *Service) { s.client = c }
}

// New returns the service for namespace over stores.
func New(stores Stores, namespace string, opts ...Opt) *Service {
	s := &Service{
		stores:      stores,
		namespace:   namespace,
		snapshotter: DefaultSnapshotter,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// NewFromClient returns the service for namespace of a containerd daemon.
func NewFromClient(c *client.Client, namespace string, opts ...Opt) *Service {
	return New(StoresFromClient(c), namespace, append([]Opt{WithClient(c)}, opts...)...)
}

// Namespace is the containerd namespace the service works in.
func (s *Service) Namespace() string { return s.namespace }

func (s *Service) withNamespace(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, s.namespace)
}
