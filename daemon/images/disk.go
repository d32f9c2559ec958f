package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
)

// contentDir is where containerd's local content store keeps blobs, below
// the daemon's root directory.
const contentDir = "io.containerd.content.v1.content"

// WithContainerdRoot lets the service look at the disk of a daemon on this
// host: root is its root directory (/var/lib/containerd by default). A prune
// then counts a blob as freed only once it is gone from the disk, since
// containerd's collector forgets a blob whose unlink failed and never
// retries it. A root that does not exist here (a remote daemon) is ignored.
func WithContainerdRoot(root string) Opt {
	return func(s *Service) {
		dir := filepath.Join(root, contentDir)
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			s.contentRoot = dir
		}
	}
}

func (s *Service) blobPath(d digest.Digest) string {
	return filepath.Join(s.contentRoot, "blobs", d.Algorithm().String(), d.Encoded())
}

// sweepDisk checks that the freed blobs left the disk. A blob the collector
// left behind is removed once more, when no namespace has taken it back;
// one that stays is dropped from freed and reported.
func (s *Service) sweepDisk(ctx context.Context, freed map[digest.Digest]int64) []Failure {
	if s.contentRoot == "" {
		return nil
	}
	var failures []Failure
	for d := range freed {
		path := s.blobPath(d)
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		err := s.removeForgottenBlob(ctx, d, path)
		if err == nil {
			log.G(ctx).WithField("blob", d).Warn("garbage collection left a blob on disk; removed it")
			continue
		}
		delete(freed, d)
		failures = append(failures, Failure{Name: d.String(), Error: fmt.Sprintf("garbage collection left the blob on disk and it could not be removed: %v; its bytes are not counted", err)})
	}
	return failures
}

// removeForgottenBlob removes a blob file that no namespace references.
func (s *Service) removeForgottenBlob(ctx context.Context, d digest.Digest, path string) error {
	all, err := s.stores.Namespaces.List(ctx)
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	for _, ns := range all {
		_, err := s.stores.Content.Info(namespaces.WithNamespace(ctx, ns), d)
		if err == nil {
			return fmt.Errorf("namespace %s holds it again: %w", ns, errdefs.ErrConflict)
		}
		if !errdefs.IsNotFound(err) {
			return err
		}
	}
	return os.Remove(path)
}
