package images

import (
	"context"
	"fmt"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/store"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
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

// sweepDisk checks that the freed blobs left the disk under root. When some
// did not, containerd sweeps its content store once more; a blob still there
// after that is dropped from freed and reported.
func (s *Service) sweepDisk(ctx context.Context, root string, freed map[digest.Digest]int64) []Failure {
	left := store.OnDisk(root, freed)
	if len(left) == 0 {
		return nil
	}
	log.G(ctx).WithField("blobs", len(left)).Warn("garbage collection left blobs on disk; sweeping again")
	err := imgleases.Sweep(ctx, s.stores.Leases, s.stores.Content, s.collect)
	var failures []Failure
	for d := range store.OnDisk(root, left) {
		delete(freed, d)
		msg := "garbage collection left the blob on disk; its bytes are not counted"
		if err != nil {
			msg += fmt.Sprintf(" (sweeping again failed: %v)", err)
		}
		failures = append(failures, Failure{Name: d.String(), Error: msg})
	}
	return failures
}
