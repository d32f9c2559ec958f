package store_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/daemon/store/embedded"
)

// TestInsideRoot: only a directory itself, resolving below the root, is
// inside it; a link to one outside, at the folder or on the way to it, is
// not, nor the root itself, nor a file.
func TestInsideRoot(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	snaps := store.SnapshotsDir(root, "native")
	assert.NilError(t, os.MkdirAll(filepath.Join(snaps, "rm-real"), 0o700))
	assert.NilError(t, os.WriteFile(filepath.Join(snaps, "rm-file"), nil, 0o600))
	assert.NilError(t, os.MkdirAll(filepath.Join(outside, "rm-victim"), 0o700))
	assert.NilError(t, os.Symlink(filepath.Join(outside, "rm-victim"), filepath.Join(snaps, "rm-link")))
	assert.NilError(t, os.MkdirAll(filepath.Join(outside, "elsewhere", "snapshots", "rm-away"), 0o700))
	assert.NilError(t, os.Symlink(filepath.Join(outside, "elsewhere"), store.SnapshotterDir(root, "linked")))

	for _, tc := range []struct {
		dir    string
		inside bool
	}{
		{dir: filepath.Join(snaps, "rm-real"), inside: true},
		{dir: filepath.Join(snaps, "rm-file")},
		{dir: filepath.Join(snaps, "rm-link")},
		{dir: filepath.Join(store.SnapshotsDir(root, "linked"), "rm-away")},
		{dir: root},
		{dir: filepath.Join(root, "..")},
		{dir: filepath.Join(snaps, "missing")},
	} {
		assert.Check(t, store.InsideRoot(root, tc.dir) == tc.inside, "%s: inside is not %v", tc.dir, tc.inside)
	}
}

// TestDirSnapshotter names the snapshotter whose state holds a folder.
func TestDirSnapshotter(t *testing.T) {
	for rel, want := range map[string]string{
		filepath.Join("io.containerd.snapshotter.v1.native", "snapshots", "rm-3"): "native",
		"io.containerd.snapshotter.v1.overlayfs":                                  "overlayfs",
		filepath.Join("io.containerd.content.v1.content", "blobs"):                "",
	} {
		assert.Check(t, store.DirSnapshotter(rel) == want, "%s: %q", rel, store.DirSnapshotter(rel))
	}
}

// TestListSnapshotDirsAcrossNamespaces: a store that lists its namespaces
// counts every namespace's snapshot records, whatever namespace, if any,
// the context carries; the directories are the snapshotter's.
func TestListSnapshotDirsAcrossNamespaces(t *testing.T) {
	root := t.TempDir()
	e, err := embedded.Open(context.Background(), root, embedded.CreateStore())
	assert.NilError(t, err)
	defer e.Close()
	stores := e.Stores()
	sn := stores.Snapshotter("native")
	for _, ns := range []string{"one", "two"} {
		_, err := sn.Prepare(namespaces.WithNamespace(context.Background(), ns), ns+"-key", "")
		assert.NilError(t, err)
	}

	dirs := stores.ListSnapshotDirs(context.Background(), root, map[string]bool{"native": true})

	assert.Check(t, is.Equal(dirs["native"].Records, 2))
	assert.Check(t, is.Equal(dirs["native"].Live(), 2))
}
