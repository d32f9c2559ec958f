package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
)

// ContentDir is where containerd's local content store keeps blobs, below
// the daemon's root directory.
const ContentDir = "io.containerd.content.v1.content"

// uuidFile is where a daemon keeps the UUID its introspection service
// answers with, below its root directory.
const uuidFile = "io.containerd.grpc.v1.introspection/uuid"

// snapshotterDir prefixes the directory a snapshotter keeps its state in,
// below a daemon's root.
const snapshotterDir = "io.containerd.snapshotter.v1."

// CheckRoot tells whether root is the root directory of the stores'
// daemon on this host, and why not: it must hold a content store and, for
// a daemon's stores, the UUID the daemon answers with, which it writes
// there when first asked for it. A remote daemon's root, or another
// daemon's on this host, is a FailedPrecondition.
func (s Stores) CheckRoot(ctx context.Context, root string) error {
	if root == "" {
		return errdefs.ErrFailedPrecondition.WithMessage("no containerd root given")
	}
	if st, err := os.Stat(filepath.Join(root, ContentDir)); err != nil || !st.IsDir() {
		return errdefs.ErrFailedPrecondition.WithMessage(root + " holds no content store on this host")
	}
	if s.UUID == nil {
		return nil
	}
	want, err := s.UUID(ctx)
	if err != nil {
		return err
	}
	uuid, err := os.ReadFile(filepath.Join(root, uuidFile))
	if err != nil || strings.TrimSpace(string(uuid)) != want {
		return errdefs.ErrFailedPrecondition.WithMessage(root + " is not the root of the containerd at the socket")
	}
	return nil
}

// DiskRoot is root when CheckRoot proves it the daemon's, and "" (the
// reason logged) when the disk of the store is not this host's to look at.
func (s Stores) DiskRoot(ctx context.Context, root string) string {
	if err := s.CheckRoot(ctx, root); err != nil {
		log.G(ctx).WithError(err).Debug("not checking the disk")
		return ""
	}
	return root
}

// ContentDisk is the disk of the filesystem that holds the content store
// below root. It is a FailedPrecondition when root is not proven the
// daemon's on this host (CheckRoot).
func (s Stores) ContentDisk(ctx context.Context, root string) (Disk, error) {
	err := s.CheckRoot(ctx, root)
	if errdefs.IsFailedPrecondition(err) {
		return Disk{}, fmt.Errorf("the free space of the content store cannot be seen: %w; run on the daemon's host with --root set to its root", err)
	}
	if err != nil {
		return Disk{}, err
	}
	return StatDisk(filepath.Join(root, ContentDir))
}

// BlobPath is where the content store below root keeps the blob d.
func BlobPath(root string, d digest.Digest) string {
	return filepath.Join(root, ContentDir, "blobs", d.Algorithm().String(), d.Encoded())
}

// SnapshotterDir is the directory the snapshotter name keeps its state in,
// below root.
func SnapshotterDir(root, name string) string {
	return filepath.Join(root, snapshotterDir+name)
}

// SnapshotsDir is the directory the snapshotter name keeps one directory
// per snapshot in, below root (the native and overlayfs snapshotters do).
func SnapshotsDir(root, name string) string {
	return filepath.Join(SnapshotterDir(root, name), "snapshots")
}

// DirSnapshotter is the snapshotter whose state holds a directory, by its
// path below the daemon's root; "" when no snapshotter's does.
func DirSnapshotter(rel string) string {
	first, _, _ := strings.Cut(rel, string(filepath.Separator))
	name, ok := strings.CutPrefix(first, snapshotterDir)
	if !ok {
		return ""
	}
	return name
}

// LeftSnapshotDirs lists the directories below root that snapshot
// removals left: a snapshotter renames a snapshot's directory "rm-<id>"
// before it removes it, and only logs a removal that fails.
func LeftSnapshotDirs(root string) ([]string, error) {
	return filepath.Glob(filepath.Join(root, snapshotterDir+"*", "snapshots", "rm-*"))
}
