package server

import (
	"context"
	"io"

	containerdimages "github.com/containerd/containerd/v2/core/images"
	"github.com/moby/moby/api/types/image"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/daemon/store"
)

// The server consumes the image service through small interfaces, one per
// kind of route, as Moby's routers consume their backends. An
// *images.Service is all of them (Backend).

// imageLister answers the listings: /images/json, /system/df.
type imageLister interface {
	Images(ctx context.Context) ([]images.Summary, error)
	DiskUsage(ctx context.Context) ([]images.Summary, int64, error)
	Reclaimable(ctx context.Context, f plan.Filters) (int64, error)
}

// imageReader tells what a reference means and what its image holds.
type imageReader interface {
	Resolve(ctx context.Context, ref string) (ocispec.Descriptor, string, error)
	Config(ctx context.Context, target ocispec.Descriptor) ([]byte, error)
	Inspect(ctx context.Context, ref string) (images.Detail, error)
}

// imageWriter names, removes and loads images.
type imageWriter interface {
	Tag(ctx context.Context, source, target string) (containerdimages.Image, error)
	Remove(ctx context.Context, ref string, force bool) ([]image.DeleteResponse, error)
	Load(ctx context.Context, archive io.Reader) ([]containerdimages.Image, error)
}

// pruner prunes: /images/prune.
type pruner interface {
	Prune(ctx context.Context, f plan.Filters, opts ...prune.Opt) (prune.Report, error)
}

// Backend is the image service the server serves: one namespace of a
// store, its images, and its prune.
type Backend interface {
	imageLister
	imageReader
	imageWriter
	pruner
	// Namespace is the containerd namespace served.
	Namespace() string
	// Snapshotter is the one images are unpacked into, where the
	// containers' rootfs are prepared.
	Snapshotter() string
	// Stores are the store's containerd interfaces, where the server
	// keeps its container records.
	Stores() store.Stores
}

var _ Backend = (*images.Service)(nil)
