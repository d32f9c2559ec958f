package images

import (
	"context"

	"github.com/imgprune/imgprune/daemon/store"
)

// WithContainerdRoot lets the service look at the disk of a daemon on this
// host: root is its root directory (/var/lib/containerd by default). A prune
// then counts a blob as freed only once it is gone from the disk, since
// containerd's collector forgets a blob whose unlink failed. The root is
// only used when it is the connected daemon's own: a remote daemon's, or
// another daemon's on this host, is ignored.
func WithContainerdRoot(root string) Opt {
	return func(s *Service) { s.root = root }
}

// diskRoot returns the daemon's root directory, or "" when the disk of the
// store is not this host's to look at.
func (s *Service) diskRoot(ctx context.Context) string {
	return s.stores.DiskRoot(ctx, s.root)
}

// ContentDisk is the disk of the filesystem that holds the content store.
// It is a FailedPrecondition when the daemon's root is not on this host.
func (s *Service) ContentDisk(ctx context.Context) (store.Disk, error) {
	return s.stores.ContentDisk(s.withNamespace(ctx), s.root)
}
