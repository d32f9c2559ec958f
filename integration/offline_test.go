package integration

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/daemon/store/embedded"
	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/internal/testimage"
)

// TestOfflinePruneOfDaemonStore prunes a daemon's store while the daemon is
// stopped, in-process, then starts the daemon again on it: it must find a
// consistent store with the used image and without the rest.
func TestOfflinePruneOfDaemonStore(t *testing.T) {
	dir, err := os.MkdirTemp("", "imgprune-offline")
	assert.NilError(t, err)
	d, err := testctrd.Start(dir)
	assert.NilError(t, err)
	t.Cleanup(func() { d.Stop() })

	set := testimage.NewSet(testimage.SetOptions{Count: 3, LayersPerImage: 2, SharedRate: 0.5, LayerSize: 32 << 10, Seed: t.Name(), NamePrefix: "example.com/offline/app"})
	var archive bytes.Buffer
	assert.NilError(t, testimage.WriteArchive(&archive, set...))
	c, err := client.New(d.Address)
	assert.NilError(t, err)
	e := &env{ctx: context.Background(), t: t, client: c, ns: "moby"}
	online := imgsvc.NewFromClient(c, "moby", imgsvc.WithSnapshotter("native"))
	_, err = online.Load(e.ctx, &archive)
	assert.NilError(t, err)
	e.container("c1", set[0].Names[0], nil)
	dry, err := online.Prune(e.ctx, plan.Filters{}, prune.DryRun())
	assert.NilError(t, err)
	c.Close()

	t.Setenv("KEEP", "1") // keep the store when the daemon stops
	assert.NilError(t, d.Stop())
	root := filepath.Join(d.Dir, "root")
	store, err := embedded.Open(context.Background(), root)
	assert.NilError(t, err)
	rep, err := imgsvc.NewOffline(store.Stores(), store.Root(), "moby", imgsvc.WithSnapshotter("native")).Prune(context.Background(), plan.Filters{})
	assert.NilError(t, err)
	assert.NilError(t, store.Close())

	assert.Check(t, rep.Err())
	assert.Check(t, is.DeepEqual(rep.ImagesDeleted, dry.ImagesDeleted))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, dry.SpaceReclaimed))
	assert.Check(t, rep.SpaceReclaimed > uint64(uniqueBytes(set[1:], set[:1])), "snapshots were not counted")

	os.Unsetenv("KEEP")
	d, err = testctrd.Start(d.Dir)
	assert.NilError(t, err)
	c, err = client.New(d.Address)
	assert.NilError(t, err)
	defer c.Close()
	e.client = c
	assert.Check(t, is.DeepEqual(e.names(), map[string]digest.Digest{
		set[0].Names[0]: set[0].Target.Digest,
		"moby-dangling@" + set[0].Target.Digest.String(): set[0].Target.Digest,
	}))
	assert.Check(t, e.hasContent(set[0]))
	kept := map[digest.Digest]bool{}
	for _, b := range set[0].Blobs() {
		kept[b.Desc.Digest] = true
	}
	for _, img := range set[1:] {
		for _, b := range img.Blobs() {
			_, err := c.ContentStore().Info(e.nsCtx(), b.Desc.Digest)
			assert.Check(t, kept[b.Desc.Digest] == (err == nil), "blob %s", b.Desc.Digest)
		}
	}
	n := 0
	assert.NilError(t, c.SnapshotService("native").Walk(e.nsCtx(), func(context.Context, snapshots.Info) error { n++; return nil }))
	assert.Check(t, is.Equal(n, 2), "the used image's two layers stay unpacked")
	again, err := imgsvc.NewFromClient(c, "moby").Prune(e.ctx, plan.Filters{})
	assert.NilError(t, err)
	assert.Check(t, is.Len(again.ImagesDeleted, 0))
}
