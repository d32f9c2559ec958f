package check

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// TestLeftDirsStayBelowTheRoot: a check lists, and so removes offline, only
// directories that are directories and resolve below the daemon's root; a
// link out of the tree, at the folder or on the way to it, is left alone
// (store.InsideRoot's cases are in its own test).
func TestLeftDirsStayBelowTheRoot(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	snaps := filepath.Join(root, "io.containerd.snapshotter.v1.native", "snapshots")
	assert.NilError(t, os.MkdirAll(filepath.Join(snaps, "rm-real"), 0o700))
	assert.NilError(t, os.MkdirAll(filepath.Join(outside, "rm-victim"), 0o700))
	assert.NilError(t, os.Symlink(filepath.Join(outside, "rm-victim"), filepath.Join(snaps, "rm-link")))
	// A snapshotter folder that is a link out of the root.
	assert.NilError(t, os.MkdirAll(filepath.Join(outside, "elsewhere", "snapshots", "rm-away"), 0o700))
	assert.NilError(t, os.Symlink(filepath.Join(outside, "elsewhere"), filepath.Join(root, "io.containerd.snapshotter.v1.linked")))

	found, err := leftDirs(context.Background(), root)

	assert.NilError(t, err)
	var names []string
	for _, f := range found {
		names = append(names, f.Name)
	}
	assert.Check(t, is.DeepEqual(names, []string{filepath.Join("io.containerd.snapshotter.v1.native", "snapshots", "rm-real")}))
}
