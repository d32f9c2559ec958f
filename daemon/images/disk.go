package images

import (
	"context"

	"github.com/containerd/log"
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
	root, err := s.daemonRoot(ctx)
	if err != nil {
		log.G(ctx).WithError(err).Debug("not checking the disk")
	}
	return root
}

// daemonRoot returns the daemon's root directory, or "" with the reason why
// it is not this host's to look at.
func (s *Service) daemonRoot(ctx context.Context) (string, error) {
	if err := s.stores.CheckRoot(ctx, s.root); err != nil {
		return "", err
	}
	return s.root, nil
}
