package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	cfs "github.com/containerd/continuity/fs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Disk is what a filesystem has: its size and what is free for use
// (statfs's available blocks, as df shows them).
type Disk struct {
	Size, Free int64
}

// Used is the share of the disk in use, in percent.
func (d Disk) Used() float64 {
	if d.Size == 0 {
		return 0
	}
	return 100 * float64(d.Size-d.Free) / float64(d.Size)
}

// StatDisk reads the disk of the filesystem at path.
func StatDisk(path string) (Disk, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Disk{}, fmt.Errorf("free space of %s: %w", path, err)
	}
	bsize := int64(st.Frsize)
	if bsize == 0 {
		bsize = int64(st.Bsize)
	}
	return Disk{Size: int64(st.Blocks) * bsize, Free: int64(st.Bavail) * bsize}, nil
}

// SameDisk tells, per snapshotter, whether its folder under a daemon's
// root is on the filesystem of the content store: only there do its
// snapshots free what the content store's free space measures.
type SameDisk struct {
	root string
	dev  uint64
	seen map[string]bool
}

// NewSameDisk reads the filesystem of the content store below root.
func NewSameDisk(root string) (*SameDisk, error) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(root, ContentDir), &st); err != nil {
		return nil, fmt.Errorf("the content store's filesystem: %w", err)
	}
	return &SameDisk{root: root, dev: uint64(st.Dev), seen: map[string]bool{}}, nil
}

// Snapshotter tells whether the snapshotter name keeps its state on the
// content store's filesystem.
func (d *SameDisk) Snapshotter(name string) bool {
	same, ok := d.seen[name]
	if !ok {
		var st unix.Stat_t
		same = unix.Stat(SnapshotterDir(d.root, name), &st) == nil && uint64(st.Dev) == d.dev
		d.seen[name] = same
	}
	return same
}

// DiskUsage is the space the files below path take on disk, each inode
// once, as du counts it.
func DiskUsage(ctx context.Context, path string) (int64, error) {
	u, err := cfs.DiskUsage(ctx, path)
	if err != nil {
		return 0, fmt.Errorf("disk usage of %s: %w", path, err)
	}
	return u.Size, nil
}

// BlobsOnDisk lists the blob files of the content store below root, with
// their sizes.
func BlobsOnDisk(root string) (map[digest.Digest]int64, error) {
	dir := filepath.Join(root, ContentDir, "blobs")
	out := map[digest.Digest]int64{}
	algs, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list blobs on disk: %w", err)
	}
	for _, alg := range algs {
		entries, err := os.ReadDir(filepath.Join(dir, alg.Name()))
		if err != nil {
			return nil, fmt.Errorf("list blobs on disk: %w", err)
		}
		for _, e := range entries {
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name())
			if d.Validate() != nil {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("list blobs on disk: %w", err)
			}
			out[d] = info.Size()
		}
	}
	return out, nil
}

// OnDisk returns the blobs that still have a file in the content store
// below root.
func OnDisk(root string, blobs map[digest.Digest]int64) map[digest.Digest]int64 {
	left := map[digest.Digest]int64{}
	for d, size := range blobs {
		if _, err := os.Lstat(BlobPath(root, d)); !errors.Is(err, fs.ErrNotExist) {
			left[d] = size
		}
	}
	return left
}

// InsideRoot tells whether dir is a directory itself, not a link, and
// resolves below root: what is removed from a daemon's root by hand never
// lies outside it, whatever links lie on the way.
func InsideRoot(root, dir string) bool {
	info, err := os.Lstat(dir)
	if err != nil || !info.IsDir() {
		return false
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return false
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(realRoot, realDir)
	return err == nil && rel != "." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && rel != ".."
}
