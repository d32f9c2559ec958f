package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// contentDir is where containerd's local content store keeps blobs, below
// the daemon's root directory.
const contentDir = "io.containerd.content.v1.content"

// uuidFile is where a daemon keeps the UUID its introspection service
// answers with, below its root directory.
const uuidFile = "io.containerd.grpc.v1.introspection/uuid"

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
	if s.root == "" {
		return "", errdefs.ErrFailedPrecondition.WithMessage("no containerd root given")
	}
	if st, err := os.Stat(filepath.Join(s.root, contentDir)); err != nil || !st.IsDir() {
		return "", errdefs.ErrFailedPrecondition.WithMessage(s.root + " holds no content store on this host")
	}
	if s.client != nil {
		// Make sure the root is the connected daemon's: the daemon writes its
		// UUID there when first asked for it.
		info, err := s.client.Server(ctx)
		if err != nil {
			return "", fmt.Errorf("ask containerd for its UUID: %w", err)
		}
		uuid, err := os.ReadFile(filepath.Join(s.root, uuidFile))
		if err != nil || strings.TrimSpace(string(uuid)) != info.UUID {
			return "", errdefs.ErrFailedPrecondition.WithMessage(s.root + " is not the root of the containerd at the socket")
		}
	}
	return s.root, nil
}

// sweepDisk checks that the freed blobs left the disk under root. When some
// did not, containerd sweeps its content store once more; a blob still there
// after that is dropped from freed and reported.
func (s *Service) sweepDisk(ctx context.Context, root string, freed map[digest.Digest]int64) []Failure {
	dir := filepath.Join(root, contentDir)
	left := onDisk(dir, freed)
	if len(left) == 0 {
		return nil
	}
	log.G(ctx).WithField("blobs", len(left)).Warn("garbage collection left blobs on disk; sweeping again")
	err := imgleases.Sweep(ctx, s.stores.Leases, s.stores.Content, s.collect)
	var failures []Failure
	for d := range onDisk(dir, left) {
		delete(freed, d)
		msg := "garbage collection left the blob on disk; its bytes are not counted"
		if err != nil {
			msg += fmt.Sprintf(" (sweeping again failed: %v)", err)
		}
		failures = append(failures, Failure{Name: d.String(), Error: msg})
	}
	return failures
}

// onDisk returns the blobs that still have a file in dir.
func onDisk(dir string, blobs map[digest.Digest]int64) map[digest.Digest]int64 {
	left := map[digest.Digest]int64{}
	for d, size := range blobs {
		path := filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			left[d] = size
		}
	}
	return left
}
