package embedded_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/image"
	"google.golang.org/protobuf/types/known/anypb"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store/embedded"
	"github.com/imgprune/imgprune/internal/testimage"
)

func openEmbedded(t *testing.T) *embedded.Store {
	t.Helper()
	e, err := embedded.Open(context.Background(), t.TempDir(), embedded.CreateStore())
	assert.NilError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

func blobOnDisk(e *embedded.Store, b testimage.Blob) bool {
	_, err := os.Stat(filepath.Join(e.Root(), "io.containerd.content.v1.content", "blobs", "sha256", b.Desc.Digest.Encoded()))
	return err == nil
}

// TestEmbeddedPrune runs a prune over a store opened in-process, as on a
// host where containerd is stopped, and checks the disk.
func TestEmbeddedPrune(t *testing.T) {
	e := openEmbedded(t)
	ctx := namespaces.WithNamespace(context.Background(), "moby")
	stores := e.Stores()
	used := testimage.New(testimage.WithNames("docker.io/library/used:1", "docker.io/library/used:2"), testimage.WithLayers(testimage.NewLayer("used", 8192)))
	unused := testimage.New(testimage.WithNames("docker.io/library/unused:1"), testimage.WithLayers(testimage.NewLayer("unused", 8192)))
	for _, img := range []testimage.Image{used, unused} {
		_, err := img.Write(ctx, stores.Content, stores.Images)
		assert.NilError(t, err)
	}
	_, err := stores.Containers.Create(ctx, containers.Container{
		ID:      "c1",
		Image:   used.Target.Digest.Encoded()[:12],
		Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		Spec:    &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte("{}")},
	})
	assert.NilError(t, err)
	svc := imgsvc.NewOffline(e.Stores(), e.Root(), "moby")

	rep, err := svc.Prune(context.Background(), plan.Filters{})
	assert.NilError(t, err)

	assert.Check(t, rep.Err())
	assert.Check(t, is.DeepEqual(rep.ImagesDeleted, []image.DeleteResponse{
		{Untagged: "unused:1"}, {Deleted: unused.Target.Digest.String()},
		{Untagged: "used:1"},
	}))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(unused.Size())))
	for _, b := range unused.Blobs() {
		assert.Check(t, !blobOnDisk(e, b), "blob %s still on disk", b.Desc.Digest)
	}
	for _, b := range used.Blobs() {
		assert.Check(t, blobOnDisk(e, b), "blob %s removed", b.Desc.Digest)
	}
}

// TestEmbeddedRefusesStoreInUse: a store another process (containerd) holds
// is not opened behind its back.
func TestEmbeddedRefusesStoreInUse(t *testing.T) {
	e := openEmbedded(t)
	_, err := embedded.Open(context.Background(), e.Root())
	assert.Check(t, errdefs.IsConflict(err), "got %v", err)
	assert.Check(t, is.ErrorContains(err, "is containerd running?"))
}

// TestEmbeddedNeedsAStore: a root without a store is an error that creates
// nothing there.
func TestEmbeddedNeedsAStore(t *testing.T) {
	root := t.TempDir()
	_, err := embedded.Open(context.Background(), root)
	assert.Check(t, errdefs.IsNotFound(err), "got %v", err)
	entries, err := os.ReadDir(root)
	assert.NilError(t, err)
	assert.Check(t, is.Len(entries, 0))
}
