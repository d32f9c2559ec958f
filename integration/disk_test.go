package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/internal/testimage"
)

// blobFile is where the test daemon keeps a blob on disk.
func blobFile(l testimage.Layer) string {
	return filepath.Join(daemon.Dir, "root", "io.containerd.content.v1.content", "blobs", "sha256", l.Desc.Digest.Encoded())
}

func chattr(t *testing.T, flag, path string) {
	t.Helper()
	out, err := exec.Command("chattr", flag, path).CombinedOutput()
	assert.NilError(t, err, string(out))
}

// TestPruneDoesNotCountBlobLeftOnDisk: when containerd's collector cannot
// unlink a blob, the blob is not counted as freed and the prune says so.
func TestPruneDoesNotCountBlobLeftOnDisk(t *testing.T) {
	e := newEnv(t, imgsvc.WithContainerdRoot(filepath.Join(daemon.Dir, "root")))
	stuck := layer(t, "stuck")
	img := testimage.New(testimage.WithNames("example.com/stuck:1"), testimage.WithLayers(stuck))
	e.write(img)
	chattr(t, "+i", blobFile(stuck))
	t.Cleanup(func() {
		chattr(t, "-i", blobFile(stuck))
		os.Remove(blobFile(stuck))
	})

	rep := e.prune([]string{"dangling=false"})

	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(img.Size()-stuck.Desc.Size)))
	assert.Assert(t, is.Len(rep.Failures, 1))
	assert.Check(t, is.Equal(rep.Failures[0].Name, stuck.Desc.Digest.String()))
	assert.Check(t, is.ErrorContains(rep.Err(), "failed to be cleaned up"))
	_, err := os.Stat(blobFile(stuck))
	assert.Check(t, err)
}

// unsticking makes a blob removable again right after the collection that
// failed to unlink it, as a transient failure would.
type unsticking struct {
	imgsvc.Collector
	t    *testing.T
	path string
}

func (u unsticking) Collect(ctx context.Context) error {
	err := u.Collector.Collect(ctx)
	chattr(u.t, "-i", u.path)
	return err
}

// TestPruneSweepsBlobLeftOnDisk: a blob the collector left behind is removed
// once more and then counted.
func TestPruneSweepsBlobLeftOnDisk(t *testing.T) {
	e := newEnv(t)
	stuck := layer(t, "stuck")
	img := testimage.New(testimage.WithNames("example.com/stuck:1"), testimage.WithLayers(stuck))
	e.write(img)
	chattr(t, "+i", blobFile(stuck))
	stores := imgsvc.StoresFromClient(e.client)
	stores.Collector = unsticking{Collector: stores.Collector, t: t, path: blobFile(stuck)}
	svc := imgsvc.New(stores, e.ns, imgsvc.WithSnapshotter(snapshotter), imgsvc.WithContainerdRoot(filepath.Join(daemon.Dir, "root")))

	rep, err := svc.Prune(e.ctx, imgsvc.Filters{})
	assert.NilError(t, err)

	assert.Check(t, rep.Err())
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(img.Size())))
	_, err = os.Stat(blobFile(stuck))
	assert.Check(t, os.IsNotExist(err), "blob still on disk: %v", err)
}
