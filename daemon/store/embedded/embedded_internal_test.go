package embedded

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/containerd/v2/plugins/snapshots/native"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// TestEmbeddedRefusesUnknownSnapshotter: a store with snapshots of a
// snapshotter the embedded store cannot open is refused, not half-collected.
func TestEmbeddedRefusesUnknownSnapshotter(t *testing.T) {
	root := t.TempDir()
	ctx := namespaces.WithNamespace(context.Background(), "moby")
	// Make the store as a daemon with a "special" snapshotter would.
	cs, err := local.NewStore(filepath.Join(root, contentDir))
	assert.NilError(t, err)
	sn, err := native.NewSnapshotter(filepath.Join(root, snapshotDir+"special"))
	assert.NilError(t, err)
	assert.NilError(t, os.MkdirAll(filepath.Join(root, metadataDir), 0o711))
	bdb, err := bolt.Open(filepath.Join(root, metadataDir, "meta.db"), 0o644, nil)
	assert.NilError(t, err)
	db := metadata.NewDB(bdb, cs, map[string]snapshots.Snapshotter{"special": sn})
	assert.NilError(t, db.Init(ctx))
	_, err = db.Snapshotter("special").Prepare(ctx, "layer", "")
	assert.NilError(t, err)
	assert.NilError(t, sn.Close())
	assert.NilError(t, bdb.Close())

	_, err = Open(context.Background(), root)
	assert.Check(t, errdefs.IsNotImplemented(err), "got %v", err)
	assert.Check(t, is.ErrorContains(err, "moby/special"))
}
