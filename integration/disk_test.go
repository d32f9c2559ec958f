package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/daemon/store"
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

// writeStuck writes an image one of whose layers containerd cannot unlink.
func (e *env) writeStuck(t *testing.T) (testimage.Image, testimage.Layer) {
	stuck := layer(t, "stuck")
	img := testimage.New(testimage.WithNames("example.com/stuck:1"), testimage.WithLayers(stuck))
	e.write(img)
	chattr(t, "+i", blobFile(stuck))
	t.Cleanup(func() {
		chattr(t, "-i", blobFile(stuck))
		os.Remove(blobFile(stuck))
	})
	return img, stuck
}

// TestPruneDoesNotCountBlobLeftOnDisk: when containerd's collector cannot
// unlink a blob, the blob is not counted as freed and the prune says so.
func TestPruneDoesNotCountBlobLeftOnDisk(t *testing.T) {
	e := newEnv(t, imgsvc.WithContainerdRoot(filepath.Join(daemon.Dir, "root")))
	img, stuck := e.writeStuck(t)

	rep := e.prune([]string{"dangling=false"})

	// containerd's sweep stops at the first blob it cannot unlink, so others
	// may stay on disk too: whatever stayed is reported and not counted.
	var onDisk []string
	var left int64
	for _, b := range img.Blobs() {
		if _, err := os.Stat(filepath.Join(filepath.Dir(blobFile(stuck)), b.Desc.Digest.Encoded())); err == nil {
			onDisk = append(onDisk, b.Desc.Digest.String())
			left += b.Desc.Size
		}
	}
	assert.Check(t, is.Contains(onDisk, stuck.Desc.Digest.String()))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(img.Size()-left)))
	var failed []string
	for _, f := range rep.Failures {
		failed = append(failed, f.Name)
	}
	sort.Strings(failed)
	sort.Strings(onDisk)
	assert.Check(t, is.DeepEqual(failed, onDisk))
	assert.Check(t, is.ErrorContains(rep.Err(), "failed to be cleaned up"))
}

// unsticking makes a blob removable again right after the collection that
// failed to unlink it, as a transient failure would.
type unsticking struct {
	store.Collector
	t    *testing.T
	path string
	once *sync.Once
}

func (u unsticking) Collect(ctx context.Context) error {
	err := u.Collector.Collect(ctx)
	u.once.Do(func() { chattr(u.t, "-i", u.path) })
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
	stores := store.FromClient(e.client)
	stores.Collector = unsticking{Collector: stores.Collector, t: t, path: blobFile(stuck), once: &sync.Once{}}
	svc := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter), imgsvc.WithContainerdRoot(filepath.Join(daemon.Dir, "root")))

	rep, err := svc.Prune(e.ctx, plan.Filters{})
	assert.NilError(t, err)

	assert.Check(t, rep.Err())
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(img.Size())))
	_, err = os.Stat(blobFile(stuck))
	assert.Check(t, os.IsNotExist(err), "blob still on disk: %v", err)
}

// TestPruneIgnoresAnotherDaemonsRoot: a root that is not the connected
// daemon's (its UUID differs) is never looked at, let alone swept.
func TestPruneIgnoresAnotherDaemonsRoot(t *testing.T) {
	other := t.TempDir()
	img := newImage(t, "other", "example.com/other:1")
	fake := filepath.Join(other, "io.containerd.content.v1.content", "blobs", "sha256", img.Layers[0].Desc.Digest.Encoded())
	assert.NilError(t, os.MkdirAll(filepath.Dir(fake), 0o755))
	assert.NilError(t, os.WriteFile(fake, img.Layers[0].Blob, 0o644))
	assert.NilError(t, os.MkdirAll(filepath.Join(other, "io.containerd.grpc.v1.introspection"), 0o755))
	assert.NilError(t, os.WriteFile(filepath.Join(other, "io.containerd.grpc.v1.introspection", "uuid"), []byte("7d1cc2a4-0000-4000-8000-000000000000"), 0o644))
	e := newEnv(t, imgsvc.WithContainerdRoot(other))
	e.write(img)

	rep := e.prune([]string{"dangling=false"})

	assert.Check(t, rep.Err())
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(img.Size())))
	_, err := os.Stat(fake)
	assert.Check(t, err, "the other daemon's blob was touched")
}

// layerFile is the path of the regular file a test layer holds.
func layerFile(t *testing.T, l testimage.Layer) string {
	tr := tar.NewReader(bytes.NewReader(l.Blob))
	for {
		hdr, err := tr.Next()
		assert.NilError(t, err)
		if hdr.Typeflag == tar.TypeReg {
			return hdr.Name
		}
	}
}

// TestPruneDoesNotCountSnapshotLeftOnDisk: a snapshot directory the
// snapshotter cannot remove is reported and its bytes are not counted, also
// when another namespace's snapshot leaves the disk in the same collection.
func TestPruneDoesNotCountSnapshotLeftOnDisk(t *testing.T) {
	e := newEnv(t, imgsvc.WithContainerdRoot(filepath.Join(daemon.Dir, "root")))
	stuck := testimage.NewLayer(t.Name()+"/stuck", 256<<10)
	img := testimage.New(testimage.WithNames("example.com/stuck:1"), testimage.WithLayers(stuck))
	var archive bytes.Buffer
	assert.NilError(t, testimage.WriteArchive(&archive, img))
	_, err := e.svc.Load(e.ctx, &archive)
	assert.NilError(t, err)
	snaps := filepath.Join(daemon.Dir, "root", "io.containerd.snapshotter.v1."+snapshotter, "snapshots")
	files, err := filepath.Glob(filepath.Join(snaps, "*", layerFile(t, stuck)))
	assert.NilError(t, err)
	if snapshotter == "overlayfs" {
		files, err = filepath.Glob(filepath.Join(snaps, "*", "fs", layerFile(t, stuck)))
		assert.NilError(t, err)
	}
	assert.Assert(t, is.Len(files, 1))
	chattr(t, "+i", files[0])
	t.Cleanup(func() {
		moved, _ := filepath.Glob(filepath.Join(snaps, "*", "*", filepath.Base(files[0])))
		more, _ := filepath.Glob(filepath.Join(snaps, "*", "*", "*", filepath.Base(files[0])))
		for _, f := range append(moved, more...) {
			exec.Command("chattr", "-i", f).Run()
		}
		// What the native snapshotter left, as "rm-<id>", goes with the test.
		left, _ := filepath.Glob(filepath.Join(snaps, "rm-*"))
		for _, dir := range left {
			os.RemoveAll(dir)
		}
	})

	// Another namespace's snapshot that nothing keeps goes in the same
	// collection: its directory must not stand in for the one left.
	other := namespaces.WithNamespace(e.ctx, e.ns+"-other")
	_, err = e.client.SnapshotService(snapshotter).Prepare(other, "orphan", "")
	assert.NilError(t, err)

	dry := e.prune([]string{"dangling=false"}, prune.DryRun())
	rep := e.prune([]string{"dangling=false"})

	_, err = e.client.SnapshotService(snapshotter).Stat(other, "orphan")
	assert.Check(t, errdefs.IsNotFound(err), "the other namespace's orphan went in the same collection: %v", err)
	assert.Check(t, rep.Err() != nil)
	assert.Assert(t, len(rep.Failures) > 0)
	assert.Check(t, is.Contains(rep.Failures[len(rep.Failures)-1].Name, "snapshots/"+snapshotter))
	content := uint64(img.Size())
	assert.Check(t, dry.SpaceReclaimed > content)
	assert.Check(t, rep.SpaceReclaimed >= content && rep.SpaceReclaimed < dry.SpaceReclaimed, "reclaimed %d, content %d, predicted %d", rep.SpaceReclaimed, content, dry.SpaceReclaimed)
	if snapshotter == "overlayfs" {
		assert.Check(t, is.Equal(rep.SpaceReclaimed, content), "no snapshot bytes counted")
	}
}

// collectingSnapshotter runs a collection on the first usage a prune asks
// for: the daemon's own scheduled collection, landing between the prune's
// listing and its look at the disk.
type collectingSnapshotter struct {
	snapshots.Snapshotter
	once    *sync.Once
	collect func()
}

func (c collectingSnapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	c.once.Do(c.collect)
	return c.Snapshotter.Usage(ctx, key)
}

// TestPruneDiskCheckBesideTheDaemonsCollection: a collection the daemon
// runs while a prune plans removes snapshots the prune listed; the disk
// check must not take them for removals that stayed on disk.
func TestPruneDiskCheckBesideTheDaemonsCollection(t *testing.T) {
	root := filepath.Join(daemon.Dir, "root")
	e := newEnv(t)
	garbage := newImage(t, "garbage", "example.com/garbage:1")
	unused := newImage(t, "unused", "example.com/unused:1")
	e.write(garbage, unused)
	e.unpack("example.com/garbage:1")
	e.unpack("example.com/unused:1")
	// Another client removes a name; the daemon collects later.
	assert.NilError(t, e.client.ImageService().Delete(e.nsCtx(), "example.com/garbage:1"))
	stores := store.FromClient(e.client)
	snapshotterOf, once := stores.Snapshotter, &sync.Once{}
	stores.Snapshotter = func(name string) snapshots.Snapshotter {
		return collectingSnapshotter{Snapshotter: snapshotterOf(name), once: once, collect: func() {
			assert.Check(t, stores.Collector.Collect(e.nsCtx()))
		}}
	}
	svc := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter), imgsvc.WithContainerdRoot(root))

	rep, err := svc.Prune(e.ctx, plan.Filters{})
	assert.NilError(t, err)

	assert.Check(t, rep.Err())
	assert.Check(t, rep.SpaceReclaimed >= uint64(unused.Size()), "reclaimed %d", rep.SpaceReclaimed)
	assert.Check(t, e.hasNoContent(unused))
	assert.Check(t, e.hasNoContent(garbage))
}
