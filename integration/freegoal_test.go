package integration

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/image"
	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/internal/testimage"
)

// fixedDisk starts a containerd whose root is on a tmpfs of size bytes: a
// disk whose free space the test knows. Folders of the root given in apart
// are tmpfs mounts of their own, on another filesystem.
func fixedDisk(t *testing.T, size string, apart ...string) (*env, *testctrd.Daemon) {
	mnt := mountTmpfs(t, "", size)
	for _, dir := range apart {
		mountTmpfs(t, filepath.Join(mnt, "d", "root", dir), size)
	}
	d, err := testctrd.Start(filepath.Join(mnt, "d"))
	assert.NilError(t, err)
	t.Cleanup(func() { d.Stop() })
	c, err := d.Client(context.Background())
	assert.NilError(t, err)
	t.Cleanup(func() { c.Close() })
	e := &env{ctx: context.Background(), t: t, client: c, ns: "moby"}
	e.svc = imgsvc.NewFromClient(c, "moby", imgsvc.WithSnapshotter(snapshotter), imgsvc.WithContainerdRoot(filepath.Join(d.Dir, "root")))
	return e, d
}

// mountTmpfs mounts a tmpfs of size at dir, a new temporary folder when
// dir is "", until the test ends.
func mountTmpfs(t *testing.T, dir, size string) string {
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp("", "ipf")
	} else {
		err = os.MkdirAll(dir, 0o700)
	}
	assert.NilError(t, err)
	assert.NilError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size))
	t.Cleanup(func() {
		// Stopping the daemon unmounts what is under its folder.
		if err := unix.Unmount(dir, unix.MNT_DETACH); !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			assert.Check(t, err)
		}
		os.Remove(dir)
	})
	return dir
}

// freeOf is what the filesystem at path has free.
func freeOf(t *testing.T, path string) int64 {
	_, free := statfs(t, path)
	return free
}

// statfs is the size of the filesystem at path and what it has free, as
// imgprune measures them.
func statfs(t *testing.T, path string) (size, free int64) {
	var st unix.Statfs_t
	assert.NilError(t, unix.Statfs(path, &st))
	return int64(st.Blocks) * st.Frsize, int64(st.Bavail) * st.Frsize
}

// lruOwn is the size of the layer each image of an lruStore has alone.
const lruOwn = 6 << 20

// lruStore is five images on a shared 2 MiB base, each with a layer of its
// own: a, used an hour ago; b and late, never used, written in this order;
// c, used 3 hours ago; and used, which the test gives a container.
type lruStore struct {
	images map[string]testimage.Image
	own    map[string]testimage.Layer
}

func (e *env) lruStore() lruStore {
	name := e.t.Name()
	base := testimage.NewLayer(name+"/base", 2<<20)
	s := lruStore{images: map[string]testimage.Image{}, own: map[string]testimage.Layer{}}
	for _, n := range []string{"a", "b", "c", "used", "late"} {
		s.own[n] = testimage.NewLayer(name+"/"+n, lruOwn)
		s.images[n] = testimage.New(testimage.WithNames("example.com/"+n+":1"), testimage.WithLayers(base, s.own[n]))
		e.write(s.images[n])
	}
	for n, last := range map[string]time.Time{"a": time.Now().Add(-time.Hour), "c": time.Now().Add(-3 * time.Hour)} {
		img := s.images[n]
		_, err := e.client.ImageService().Create(e.nsCtx(), images.Image{Name: plan.DanglingName(img.Target.Digest), Target: img.Target, Labels: plan.LastUsedLabels(last)})
		assert.NilError(e.t, err)
	}
	return s
}

// TestPruneUntilFree: on a disk of known size, a prune to a free-space goal
// removes unused images least recently used first (never used first, then
// by last use, then oldest), stops as soon as the goal is met, counts a
// layer shared with an image that stays as freeing nothing, and its dry run
// predicts exactly what it does.
func TestPruneUntilFree(t *testing.T) {
	e, d := fixedDisk(t, "64m")
	s := e.lruStore()
	a, b, c, used, late := s.images["a"], s.images["b"], s.images["c"], s.images["used"], s.images["late"]
	e.container("c1", "example.com/used:1", nil)
	const own = lruOwn

	root := filepath.Join(d.Dir, "root")
	before := freeOf(t, root)
	// Two and a half images' worth: b and late (never used, b first), then
	// c (used 3 hours ago); a, used an hour ago, stays.
	goal := prune.FreeGoal{Bytes: before + own*5/2}
	f := plan.Filters{}
	dry, err := e.svc.Prune(e.ctx, f, prune.UntilFree(goal), prune.DryRun())
	assert.NilError(t, err)
	rep, err := e.svc.Prune(e.ctx, f, prune.UntilFree(goal))
	assert.NilError(t, err)
	assert.NilError(t, rep.Err())

	want := []image.DeleteResponse{}
	for _, img := range []testimage.Image{b, c, late} { // in report order, by name
		want = append(want, image.DeleteResponse{Untagged: plan.FamiliarName(img.Names[0])}, image.DeleteResponse{Deleted: img.Target.Digest.String()})
	}
	assert.Check(t, is.DeepEqual(rep.ImagesDeleted, want))
	assert.Check(t, is.DeepEqual(dry.ImagesDeleted, want))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, dry.SpaceReclaimed))
	// The shared base stays with a and used: 3 own layers and 3 configs
	// and manifests, no more.
	assert.Check(t, is.Equal(int64(rep.SpaceReclaimed), uniqueBytes([]testimage.Image{b, c, late}, []testimage.Image{a, used})))
	for _, kept := range []testimage.Image{a, used} {
		assert.Check(t, e.hasContent(kept))
	}

	assert.Assert(t, dry.FreeSpace != nil && rep.FreeSpace != nil)
	// The prune sees the disk a moment later: the daemon may have written a
	// page or two.
	assert.Check(t, dry.FreeSpace.Before <= before && dry.FreeSpace.Before > before-1<<20, "before %d, seen %d", before, dry.FreeSpace.Before)
	assert.Check(t, is.Equal(dry.FreeSpace.After, dry.FreeSpace.Before+int64(dry.SpaceReclaimed)))
	assert.Check(t, dry.FreeSpace.Reached && rep.FreeSpace.Reached)
	assert.Check(t, rep.FreeSpace.Measured && !dry.FreeSpace.Measured)
	after := freeOf(t, root)
	assert.Check(t, after >= goal.Bytes, "free %d, goal %d", after, goal.Bytes)
	// What left the disk is what the report counts, within the pages the
	// metadata database grew by.
	assert.Check(t, after-before >= int64(rep.SpaceReclaimed)-1<<20, "freed %d, reported %d", after-before, rep.SpaceReclaimed)
	assert.Check(t, after-before <= int64(rep.SpaceReclaimed), "freed %d, reported %d", after-before, rep.SpaceReclaimed)

	// A goal already met removes nothing.
	again, err := e.svc.Prune(e.ctx, f, prune.UntilFree(goal))
	assert.NilError(t, err)
	assert.Check(t, is.Len(again.ImagesDeleted, 0))

	// Bad goals: a clear error, nothing changed.
	for _, bad := range []string{"0%", "101%", "lots", "-5GB"} {
		_, stderr, code := runCmd(t, imgpruneCmd(t, d, "moby", "prune", "-a", "-f", "--until-free", bad))
		assert.Check(t, is.Equal(code, 1), bad)
		assert.Check(t, is.Contains(stderr, `invalid free space goal "`+bad+`"`), bad)
	}
	assert.Check(t, e.hasContent(a))

	// A goal out of reach removes every unused image and says so.
	stdout, stderr, code := runCmd(t, imgpruneCmd(t, d, "moby", "prune", "-a", "-f", "--until-free", "100%"))
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.Contains(stdout, "untagged: example.com/a:1\n"))
	assert.Check(t, is.Contains(stdout, "Free space: "))
	assert.Check(t, is.Contains(stderr, "warning: the free space goal of 67.11MB is not reached"))
	_, err = e.client.ContentStore().Info(e.nsCtx(), s.own["a"].Desc.Digest)
	assert.Check(t, errdefs.IsNotFound(err), "a's own layer is still there: %v", err)
	assert.Check(t, e.hasContent(used))
}

// TestPruneUntilFreeCountsItsDiskAlone: snapshots on another filesystem than
// the content store's free nothing the goal measures. The prune still
// reclaims them, and says so in its reclaimed space.
func TestPruneUntilFreeCountsItsDiskAlone(t *testing.T) {
	e, d := fixedDisk(t, "64m", "io.containerd.snapshotter.v1."+snapshotter)
	img := newImage(t, "unpacked", "example.com/unpacked:1")
	img4m := testimage.New(testimage.WithNames("example.com/big:1"), testimage.WithLayers(testimage.NewLayer(t.Name()+"/big", 4<<20)))
	e.write(img, img4m)
	e.unpack("example.com/big:1")
	root := filepath.Join(d.Dir, "root")

	// One byte more than is free: the oldest image, img, is enough, and
	// its content alone counts.
	goal := prune.FreeGoal{Bytes: freeOf(t, root) + 1}
	dry, err := e.svc.Prune(e.ctx, plan.Filters{}, prune.UntilFree(goal), prune.DryRun())
	assert.NilError(t, err)
	assert.Assert(t, dry.FreeSpace != nil)
	assert.Check(t, is.DeepEqual(dry.ImagesDeleted, []image.DeleteResponse{{Untagged: "example.com/unpacked:1"}, {Deleted: img.Target.Digest.String()}}))
	assert.Check(t, is.Equal(dry.FreeSpace.After-dry.FreeSpace.Before, img.Size()))

	// Twice the big image's content: both must go, and the big one's
	// snapshot, 4 MiB on the other filesystem, does not count towards it.
	goal = prune.FreeGoal{Bytes: freeOf(t, root) + 2*img4m.Size()}
	dry, err = e.svc.Prune(e.ctx, plan.Filters{}, prune.UntilFree(goal), prune.DryRun())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(dry.FreeSpace.After-dry.FreeSpace.Before, img.Size()+img4m.Size()))
	assert.Check(t, !dry.FreeSpace.Reached)
	rep, err := e.svc.Prune(e.ctx, plan.Filters{}, prune.UntilFree(goal))
	assert.NilError(t, err)
	assert.Check(t, is.Len(rep.ImagesDeleted, 4), rep.ImagesDeleted)
	assert.Check(t, int64(rep.SpaceReclaimed) > img.Size()+img4m.Size()+3<<20, "the snapshot's bytes are reclaimed: %d", rep.SpaceReclaimed)
	assert.Check(t, rep.FreeSpace.Measured && !rep.FreeSpace.Reached)
	assert.Check(t, is.Contains(strings.Join(rep.Warnings, "\n"), "is not reached"))
}
