// Package images is imgprune's image service: the records of a containerd
// namespace, the dangling record per target that is their refcount, the
// usage of images by containers, and the Docker verbs over them (images,
// inspect, tag, load, remove, last use). Its Prune and Check give its
// store, settings and prune lock to daemon/images/prune and
// daemon/images/check, which import nothing of it.
package images

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/daemon/store"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// DefaultSnapshotter is the snapshotter images are unpacked into.
const DefaultSnapshotter = "overlayfs"

// Service is the image service of one containerd namespace. It is safe for
// concurrent use; prunes run one at a time.
type Service struct {
	stores      store.Stores
	client      *client.Client
	namespace   string
	snapshotter string
	// sources tell which images containers use: containerd's records, CRI's
	// metadata and the rootfs lineage always, a Docker Engine's when added.
	sources []imgcontainers.Source
	// root is the daemon's root directory, if it may be on this host.
	root string

	pruning  sync.Mutex
	lockOpts []imgleases.LockOpt
	// exclusive is set when no other client can write the store.
	exclusive bool
	// deletesInFlight is how many deletions (and creations) a prune sends
	// at once.
	deletesInFlight int
	// unpackLimit bounds what a load's compressed blobs expand to; nil is
	// the free space of the daemon's root.
	unpackLimit *int64
	// danglingRecords is set where the store follows Moby's convention: a
	// dangling record per target is its refcount.
	danglingRecords *bool
	// phaseTimeout bounds each phase of a prune, removal or check.
	phaseTimeout time.Duration
}

// Opt configures a Service.
type Opt func(*Service)

// WithSnapshotter sets the snapshotter that load unpacks into.
func WithSnapshotter(name string) Opt {
	return func(s *Service) { s.snapshotter = name }
}

// WithContainerSource adds a source of containers whose images are in use,
// such as a Docker Engine's containers.
func WithContainerSource(src imgcontainers.Source) Opt {
	return func(s *Service) { s.sources = append(s.sources, src) }
}

// WithDeletesInFlight sets how many deletions a prune sends at once: 4 by
// default; 1 deletes in plan order, one after the other. More go faster
// and make the daemon's other writers wait longer.
func WithDeletesInFlight(n int) Opt {
	return func(s *Service) { s.deletesInFlight = max(n, 1) }
}

// MobyNamespace is the namespace of a Docker Engine's image store, where
// every target has its dangling record.
const MobyNamespace = "moby"

// WithDanglingRecords sets whether the store follows Moby's convention, a
// dangling record per target as its refcount, which the service then keeps
// (creates upfront, adopts for targets other tools named). By default only
// namespace moby does: in others (nerdctl's and ctr's default, CRI's
// k8s.io) no tool knows the convention, the names are the refcount, and
// the service writes no dangling record but for an archive's nameless
// image, which has no other name.
func WithDanglingRecords(on bool) Opt {
	return func(s *Service) { s.danglingRecords = &on }
}

// DanglingRecords reports whether the service keeps a dangling record per
// target.
func (s *Service) DanglingRecords() bool {
	if s.danglingRecords != nil {
		return *s.danglingRecords
	}
	return s.namespace == MobyNamespace
}

// WithClient lets the service load and unpack archives through c.
func WithClient(c *client.Client) Opt {
	return func(s *Service) { s.client = c }
}

// New returns the service for namespace over stores.
func New(stores store.Stores, namespace string, opts ...Opt) *Service {
	s := &Service{
		stores:          stores,
		namespace:       namespace,
		snapshotter:     DefaultSnapshotter,
		deletesInFlight: prune.DefaultDeletesInFlight,
		phaseTimeout:    DefaultPhaseTimeout,
		sources: []imgcontainers.Source{
			imgcontainers.Records{},
			imgcontainers.CRI{},
			imgcontainers.Rootfs{Snapshotter: stores.Snapshotter, Leases: stores.Leases},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// NewOffline returns the service of namespace over a store this process
// has alone (daemon/store/embedded's), checking the disk below root. A
// prune lock found in such a store was left by a prune that died.
func NewOffline(stores store.Stores, root, namespace string, opts ...Opt) *Service {
	return New(stores, namespace, append([]Opt{WithContainerdRoot(root), WithExclusiveStore()}, opts...)...)
}

// NewFromClient returns the service for namespace of a containerd daemon.
func NewFromClient(c *client.Client, namespace string, opts ...Opt) *Service {
	return New(store.FromClient(c), namespace, append([]Opt{WithClient(c)}, opts...)...)
}

// Namespace is the containerd namespace the service works in.
func (s *Service) Namespace() string { return s.namespace }

// Snapshotter is the snapshotter images are unpacked into.
func (s *Service) Snapshotter() string { return s.snapshotter }

// Events are the connected daemon's events, or nil for an embedded store,
// which has none.
func (s *Service) Events() events.Subscriber {
	if s.client == nil {
		return nil
	}
	return s.client.EventService()
}

// Stores are the containerd interfaces of the service's store: where
// imgprune serve keeps the container records it serves, whose images the
// service keeps.
func (s *Service) Stores() store.Stores { return s.stores }

// collect runs containerd's garbage collector once for the whole batch.
func (s *Service) collect(ctx context.Context) error {
	return s.stores.Collector.Collect(ctx)
}

func (s *Service) withNamespace(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, s.namespace)
}
