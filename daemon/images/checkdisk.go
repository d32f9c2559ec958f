package images

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/reach"
)

// abandonedIngests lists the namespace's ingests no writer touched for
// longer than olderThan.
func (s *Service) abandonedIngests(ctx context.Context, olderThan time.Duration, now time.Time) ([]Found, error) {
	statuses, err := s.stores.Content.ListStatuses(ctx)
	if err != nil {
		return nil, fmt.Errorf("list ingests: %w", err)
	}
	var out []Found
	for _, st := range statuses {
		if now.Sub(st.UpdatedAt) <= olderThan {
			continue
		}
		out = append(out, Found{Kind: KindIngest, Name: st.Ref, Size: st.Offset, Why: "last written " + st.UpdatedAt.UTC().Format(time.RFC3339)})
	}
	slices.SortFunc(out, func(a, b Found) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// unknownBlobs are the blobs among onDisk that no namespace's metadata
// knows. Each is asked for once more, in every namespace, so that a blob
// committed while the namespaces were walked is not called unknown.
func (s *Service) unknownBlobs(ctx context.Context, onDisk map[digest.Digest]int64) ([]Found, error) {
	if len(onDisk) == 0 {
		return nil, nil
	}
	all, err := s.stores.Namespaces.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	unknown := maps.Clone(onDisk)
	for _, ns := range all {
		g, err := reach.ListContent(namespaces.WithNamespace(ctx, ns), s.stores.Content)
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
		for d := range g.Content {
			delete(unknown, d)
		}
	}
	var out []Found
	for d, size := range unknown {
		if s.knownAnywhere(ctx, all, d) {
			continue
		}
		out = append(out, Found{Kind: KindBlob, Name: d.String(), Size: size, Why: "on disk, in no namespace's metadata"})
	}
	slices.SortFunc(out, func(a, b Found) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// knownAnywhere tells whether a namespace's metadata knows d.
func (s *Service) knownAnywhere(ctx context.Context, all []string, d digest.Digest) bool {
	for _, ns := range all {
		if _, err := s.stores.Content.Info(namespaces.WithNamespace(ctx, ns), d); err == nil {
			return true
		}
	}
	return false
}

// blobsOnDisk lists the blob files of the content store in dir, with their
// sizes on disk.
func blobsOnDisk(dir string) (map[digest.Digest]int64, error) {
	out := map[digest.Digest]int64{}
	algs, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list blobs on disk: %w", err)
	}
	for _, alg := range algs {
		entries, err := os.ReadDir(filepath.Join(dir, "blobs", alg.Name()))
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

// leftDirs lists the directories snapshot removals left below root: a
// snapshotter renames a snapshot's directory "rm-<id>" before it removes
// it, and only logs a removal that fails. No snapshot record knows them.
func leftDirs(ctx context.Context, root string) ([]Found, error) {
	dirs, err := filepath.Glob(filepath.Join(root, snapshotDir+"*", "snapshots", "rm-*"))
	if err != nil {
		return nil, err
	}
	var out []Found
	for _, dir := range dirs {
		if !insideRoot(root, dir) {
			// A link out of the tree (planted, or a folder moved
			// elsewhere): not the snapshotter's to clean, nor ours.
			log.G(ctx).WithField("path", dir).Warn("check: a directory that resolves outside the daemon's root is left alone")
			continue
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return nil, err
		}
		size, err := diskUsage(ctx, dir)
		if err != nil {
			// Listed all the same: its size is what cannot be told.
			log.G(ctx).WithError(err).Warn("check: the size of a directory a snapshot removal left is not counted")
		}
		out = append(out, Found{Kind: KindDir, Name: rel, Size: size, Why: "left on disk by a snapshot removal that failed"})
	}
	return out, nil
}

// insideRoot tells whether dir is a directory itself, not a link, and
// resolves below root: what a check removes offline never lies outside the
// daemon's root, whatever links lie on the way.
func insideRoot(root, dir string) bool {
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

// dirSnapshotter is the snapshotter whose state holds a directory, by its
// path below the daemon's root.
func dirSnapshotter(rel string) string {
	first, _, _ := strings.Cut(rel, string(filepath.Separator))
	return strings.TrimPrefix(first, snapshotDir)
}
