package embedded

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/containerd/v2/plugins/snapshots/native"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/internal/testimage"
)

// TestEmbeddedRefusesUnknownSnapshotter: a store with snapshots of a
// snapshotter the embedded store cannot open is refused, not half-collected.
func TestEmbeddedRefusesUnknownSnapshotter(t *testing.T) {
	root := t.TempDir()
	ctx := namespaces.WithNamespace(context.Background(), "moby")
	// Make the store as a daemon with a "special" snapshotter would.
	cs, err := local.NewStore(filepath.Join(root, store.ContentDir))
	assert.NilError(t, err)
	sn, err := native.NewSnapshotter(store.SnapshotterDir(root, "special"))
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

// TestEmbeddedPruneCommitsInBatches: an offline prune commits its deletions
// in one transaction per kind, not one per record: the number of commits
// does not grow with the images.
func TestEmbeddedPruneCommitsInBatches(t *testing.T) {
	e, err := Open(context.Background(), t.TempDir(), CreateStore())
	assert.NilError(t, err)
	defer e.Close()
	ctx := namespaces.WithNamespace(context.Background(), "moby")
	const n = 40
	for i := range n {
		img := testimage.New(testimage.WithNames(fmt.Sprintf("docker.io/library/app%d:1", i)), testimage.WithLayers(testimage.NewLayer(fmt.Sprint(i), 64)))
		_, err := img.Write(ctx, e.Stores().Content, e.Stores().Images)
		assert.NilError(t, err)
	}
	var commits atomic.Int32
	e.db.RegisterMutationCallback(func(bool) { commits.Add(1) })
	f, err := plan.ParseFilters(map[string][]string{"dangling": {"false"}}, time.Now())
	assert.NilError(t, err)

	rep, err := imgsvc.NewOffline(e.Stores(), e.Root(), "moby").Prune(ctx, f)
	assert.NilError(t, err)
	assert.NilError(t, rep.Err())
	assert.Check(t, is.Len(rep.ImagesDeleted, 2*n))
	// The prune lock's lease, its release, and the batches.
	assert.Check(t, commits.Load() <= 6, "%d commits for %d deletions", commits.Load(), n)
}
