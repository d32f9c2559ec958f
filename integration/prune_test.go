package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/image"
	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/internal/testimage"
)

// layer is a 4 KiB layer of the test's own, named n.
func layer(t *testing.T, n string) testimage.Layer {
	return testimage.NewLayer(t.Name()+"/"+n, 4096)
}

// newImage is an image of one layer of the test's own, named seed, with names.
func newImage(t *testing.T, seed string, names ...string) testimage.Image {
	return testimage.New(testimage.WithNames(names...), testimage.WithLayers(layer(t, seed)))
}

func TestPruneDanglingOnly(t *testing.T) {
	e := newEnv(t)
	named := newImage(t, "named", "docker.io/library/keep:1")
	dangling := newImage(t, "dangling")
	e.write(named)
	e.writeDangling(dangling)

	dry := e.prune(nil, prune.DryRun())
	rep := e.prune(nil)

	want := []image.DeleteResponse{{Untagged: dangling.Target.Digest.String()}, {Deleted: dangling.Target.Digest.String()}}
	assert.Check(t, is.DeepEqual(rep.ImagesDeleted, want))
	assert.Check(t, is.DeepEqual(dry.ImagesDeleted, want))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(dangling.Size())))
	assert.Check(t, is.Equal(dry.SpaceReclaimed, rep.SpaceReclaimed))
	assert.Check(t, e.hasNoContent(dangling))
	assert.Check(t, e.hasContent(named))
	assert.Check(t, is.Len(rep.Failures, 0))
	// The named image was adopted: it has its dangling record now.
	assert.Check(t, is.DeepEqual(e.names(), map[string]digest.Digest{
		"docker.io/library/keep:1":                      named.Target.Digest,
		"moby-dangling@" + named.Target.Digest.String(): named.Target.Digest,
	}))
}

func TestPruneNothingToDo(t *testing.T) {
	e := newEnv(t)
	rep := e.prune([]string{"dangling=false"})
	assert.Check(t, is.Len(rep.ImagesDeleted, 0))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(0)))
	assert.Check(t, rep.Err())
}

// TestPruneKeepsImagesUsedByContainers covers every way a container names
// its image.
func TestPruneKeepsImagesUsedByContainers(t *testing.T) {
	e := newEnv(t)
	mk := func(n string, names ...string) testimage.Image {
		return testimage.New(testimage.WithNames(names...), testimage.WithLayers(layer(t, n)))
	}
	var (
		byName      = mk("byname", "docker.io/library/byname:1", "docker.io/library/byname:other")
		byLatest    = mk("bylatest", "docker.io/library/bylatest:latest")
		byID        = mk("byid", "example.com/z:1", "example.com/a:1", "example.com/m:1")
		byHexID     = mk("byhexid", "example.com/hexid:1")
		byShortID   = mk("byshortid", "example.com/shortid:1")
		byDigest    = mk("bydigest", "example.com/bydigest:1")
		byTagDigest = mk("bytagdigest", "example.com/bytagdigest:1")
		byImageID   = mk("byimageid", "example.com/moved:1")
		unused      = mk("unused", "example.com/unused:1")
	)
	e.write(byName, byLatest, byID, byHexID, byShortID, byDigest, byTagDigest, byImageID, unused)
	e.container("c-name", "byname:1", nil)
	e.container("c-latest", "bylatest", nil)
	e.container("c-id", byID.Target.Digest.String(), nil)
	e.container("c-hexid", byHexID.Target.Digest.Encoded(), nil)
	e.container("c-shortid", byShortID.Target.Digest.Encoded()[:12], nil)
	e.container("c-digest", "example.com/bydigest@"+byDigest.Target.Digest.String(), nil)
	e.container("c-tagdigest", "example.com/bytagdigest:1@"+byTagDigest.Target.Digest.String(), nil)
	e.container("c-imageid", "example.com/gone:1", map[string]string{imgcontainers.ImageIDLabel: byImageID.Target.Digest.String()})
	e.container("c-garbage", "Not A Reference!", nil)

	dry := e.prune([]string{"dangling=false"}, prune.DryRun())
	rep := e.prune([]string{"dangling=false"})

	assert.Check(t, is.DeepEqual(rep.ImagesDeleted, dry.ImagesDeleted))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, dry.SpaceReclaimed))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(unused.Size())))
	assert.Check(t, is.Len(rep.Warnings, 2), rep.Warnings)
	names := e.names()
	for _, kept := range []string{
		"docker.io/library/byname:1",
		"docker.io/library/bylatest:latest",
		"example.com/z:1", // the alphabetically last name of a target used by ID
		"example.com/hexid:1",
		"example.com/shortid:1",
		"example.com/bydigest:1",
		"example.com/bytagdigest:1",
	} {
		assert.Check(t, is.Contains(names, kept))
	}
	for _, gone := range []string{"docker.io/library/byname:other", "example.com/a:1", "example.com/m:1", "example.com/moved:1", "example.com/unused:1"} {
		_, ok := names[gone]
		assert.Check(t, !ok, "%s should have been untagged", gone)
	}
	for _, img := range []testimage.Image{byName, byLatest, byID, byHexID, byShortID, byDigest, byTagDigest, byImageID} {
		assert.Check(t, e.hasContent(img), "content of %v was removed", img.Names)
		assert.Check(t, is.Contains(names, "moby-dangling@"+img.Target.Digest.String()))
	}
	assert.Check(t, e.hasNoContent(unused))
}

// TestPruneLexicographicalOrder is Moby's TestPruneLexographicalOrder: a
// container made from the image ID keeps the alphabetically last name.
func TestPruneLexicographicalOrder(t *testing.T) {
	e := newEnv(t)
	tags := []string{"h", "a", "j", "o", "s", "q", "w", "e", "t", "y"}
	var names []string
	for _, tag := range tags {
		names = append(names, "docker.io/library/busybox:"+tag)
	}
	img := newImage(t, "busybox", names...)
	e.write(img)
	e.container("c1", img.Target.Digest.String(), nil)

	rep := e.prune([]string{"dangling=false"})

	assert.Check(t, is.Len(rep.ImagesDeleted, len(tags)-1))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(0)))
	assert.Check(t, is.DeepEqual(e.names(), map[string]digest.Digest{
		"docker.io/library/busybox:y":                 img.Target.Digest,
		"moby-dangling@" + img.Target.Digest.String(): img.Target.Digest,
	}))
}

// TestPruneSpaceReclaimedIsExact checks, with shared layers, that the bytes
// reported are the blobs only the pruned images had, and that the dry run
// computed them exactly before.
func TestPruneSpaceReclaimedIsExact(t *testing.T) {
	e := newEnv(t)
	set := testimage.NewSet(testimage.SetOptions{Count: 6, LayersPerImage: 3, SharedRate: 0.5, Seed: t.Name(), NamePrefix: "example.com/exact/app"})
	e.write(set...)
	e.container("c0", set[0].Names[0], nil)
	e.container("c1", set[1].Target.Digest.Encoded()[:16], nil)

	before, err := e.svc.Reclaimable(e.ctx, plan.Filters{})
	assert.NilError(t, err)
	rep := e.prune([]string{"dangling=false"})

	want := uniqueBytes(set[2:], set[:2])
	assert.Check(t, want > 0)
	assert.Check(t, is.Equal(before, want))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(want)))
	// The report is in name order: each name, then its target.
	var wantReport []image.DeleteResponse
	for _, img := range set[2:] {
		wantReport = append(wantReport, image.DeleteResponse{Untagged: img.Names[0]}, image.DeleteResponse{Deleted: img.Target.Digest.String()})
	}
	assert.Check(t, is.DeepEqual(rep.ImagesDeleted, wantReport))
	assert.Check(t, e.hasContent(set[0]))
	assert.Check(t, e.hasContent(set[1]))
}

// TestPruneDoesNotCountSharedBlobs: a blob another namespace holds stays on
// disk, so it is not reclaimed, and neither is one a lease holds.
func TestPruneDoesNotCountSharedBlobs(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t)
	other.ns = e.ns + "-other"
	inBoth := newImage(t, "both", "example.com/both:1")
	leased := layer(t, "leased")
	withLeased := testimage.New(testimage.WithNames("example.com/leased:1"), testimage.WithLayers(leased))
	e.write(inBoth, withLeased)
	other.write(inBoth)
	l, err := e.client.LeasesService().Create(e.nsCtx(), leases.WithRandomID())
	assert.NilError(t, err)
	assert.NilError(t, e.client.LeasesService().AddResource(e.nsCtx(), l, leases.Resource{ID: leased.Desc.Digest.String(), Type: "content"}))

	dry := e.prune([]string{"dangling=false"}, prune.DryRun())
	rep := e.prune([]string{"dangling=false"})

	want := uint64(withLeased.Size() - leased.Desc.Size)
	assert.Check(t, is.Equal(rep.SpaceReclaimed, want))
	assert.Check(t, is.Equal(dry.SpaceReclaimed, want))
	assert.Check(t, e.hasNoContent(inBoth))
	assert.Check(t, other.hasContent(inBoth))
	_, err = e.client.ContentStore().Info(e.nsCtx(), leased.Desc.Digest)
	assert.Check(t, err)
}

func TestPruneKeepsPinnedImages(t *testing.T) {
	e := newEnv(t)
	img := newImage(t, "pause", "registry.k8s.io/pause:3.10")
	e.write(img)
	rec, err := e.client.ImageService().Get(e.nsCtx(), img.Names[0])
	assert.NilError(t, err)
	rec.Labels = map[string]string{"io.cri-containerd.pinned": "pinned"}
	_, err = e.client.ImageService().Update(e.nsCtx(), rec, "labels")
	assert.NilError(t, err)

	rep := e.prune([]string{"dangling=false"})
	assert.Check(t, is.Len(rep.ImagesDeleted, 0))
	assert.Check(t, e.hasContent(img))
}

func TestPruneFilters(t *testing.T) {
	e := newEnv(t)
	old := testimage.New(testimage.WithNames("example.com/old:1"), testimage.WithLabels(map[string]string{"env": "ci"}), testimage.WithLayers(layer(t, "old")))
	keep := testimage.New(testimage.WithNames("example.com/keep:1"), testimage.WithLabels(map[string]string{"env": "ci", "keep": "yes"}), testimage.WithLayers(layer(t, "keep")))
	prod := testimage.New(testimage.WithNames("example.com/prod:1"), testimage.WithLabels(map[string]string{"env": "prod"}), testimage.WithLayers(layer(t, "prod")))
	e.write(old, keep, prod)
	mid := time.Now()
	newer := testimage.New(testimage.WithNames("example.com/new:1"), testimage.WithLabels(map[string]string{"env": "ci"}), testimage.WithLayers(layer(t, "new")))
	e.write(newer)

	until := mid.UTC().Format(time.RFC3339Nano)
	rep := e.prune([]string{"dangling=false", "until=" + until, "label=env=ci", "label!=keep"})

	assert.Check(t, is.DeepEqual(rep.ImagesDeleted, []image.DeleteResponse{
		{Untagged: "example.com/old:1"}, {Deleted: old.Target.Digest.String()},
	}))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(old.Size())))
	for _, img := range []testimage.Image{keep, prod, newer} {
		assert.Check(t, e.hasContent(img))
	}
}

// failingStore fails the deletion of one name.
type failingStore struct {
	images.Store
	fail string
}

func (s failingStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	if name == s.fail {
		return fmt.Errorf("injected failure: %w", errdefs.ErrUnavailable)
	}
	return s.Store.Delete(ctx, name, opts...)
}

// TestPrunePartialFailure: one delete fails, the rest go through, the report
// is kept and says what failed; the next prune finishes the job.
func TestPrunePartialFailure(t *testing.T) {
	e := newEnv(t)
	a := newImage(t, "a", "example.com/a:1")
	b := newImage(t, "b", "example.com/b:1")
	c := newImage(t, "c", "example.com/c:1")
	e.write(a, b, c)
	stores := store.FromClient(e.client)
	stores.Images = failingStore{Store: stores.Images, fail: "example.com/b:1"}
	failing := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter))

	rep, err := failing.Prune(e.ctx, plan.Filters{})
	assert.NilError(t, err)

	assert.Check(t, is.Len(rep.Failures, 1))
	if len(rep.Failures) == 1 {
		assert.Check(t, is.Equal(rep.Failures[0].Name, "example.com/b:1"))
		assert.Check(t, is.Contains(rep.Failures[0].Error, "injected failure"))
	}
	assert.Check(t, is.Error(rep.Err(), "pruned 2 of 3 images; 1 failed"))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(a.Size()+c.Size())))
	assert.Check(t, e.hasNoContent(a))
	assert.Check(t, e.hasContent(b))
	assert.Check(t, e.hasNoContent(c))
	assert.Check(t, is.DeepEqual(e.names(), map[string]digest.Digest{"example.com/b:1": b.Target.Digest}))

	again := e.prune([]string{"dangling=false"})
	assert.Check(t, again.Err())
	assert.Check(t, is.Equal(again.SpaceReclaimed, uint64(b.Size())))
	assert.Check(t, e.hasNoContent(b))
	assert.Check(t, is.Len(e.names(), 0))
}

// blockingStore holds List until released, to keep a prune running.
type blockingStore struct {
	images.Store
	entered chan struct{}
	release chan struct{}
	once    *sync.Once
}

func (s blockingStore) List(ctx context.Context, filters ...string) ([]images.Image, error) {
	s.once.Do(func() {
		close(s.entered)
		<-s.release
	})
	return s.Store.List(ctx, filters...)
}

// blockedPrune starts a prune of the test's namespace, in a service of its
// own (returned), that holds the prune lock until the returned func lets it
// go on; that func returns the prune's error.
func (e *env) blockedPrune(t *testing.T) (*imgsvc.Service, func() error) {
	t.Helper()
	stores := store.FromClient(e.client)
	blocking := blockingStore{Store: stores.Images, entered: make(chan struct{}), release: make(chan struct{}), once: &sync.Once{}}
	stores.Images = blocking
	svc := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true))
	errc := make(chan error, 1)
	go func() {
		_, err := svc.Prune(e.ctx, plan.Filters{DanglingOnly: true})
		errc <- err
	}()
	<-blocking.entered
	return svc, func() error {
		close(blocking.release)
		return <-errc
	}
}

func TestPruneRefusesConcurrentPrune(t *testing.T) {
	e := newEnv(t)
	svc, release := e.blockedPrune(t)
	_, err := svc.Prune(e.ctx, plan.Filters{DanglingOnly: true})
	assert.Check(t, errdefs.IsConflict(err), "got %v", err)
	assert.Check(t, is.ErrorContains(err, "a prune operation is already running"))
	assert.Check(t, release())
}

// TestDryRunChangesNothing: a listing and a dry run adopt nothing, delete
// nothing and take no lease; the dry run reports what the real prune then
// does.
func TestDryRunChangesNothing(t *testing.T) {
	e := newEnv(t)
	a := newImage(t, "a", "example.com/a:1")
	dangling := newImage(t, "dangling")
	e.write(a)
	e.writeDangling(dangling)
	before := e.state()

	_, err := e.svc.Images(e.ctx)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(e.state(), before))
	dry := e.prune([]string{"dangling=false"}, prune.DryRun())
	assert.Check(t, is.DeepEqual(e.state(), before))

	rep := e.prune([]string{"dangling=false"})
	assert.Check(t, is.DeepEqual(rep.ImagesDeleted, dry.ImagesDeleted))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, dry.SpaceReclaimed))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(a.Size()+dangling.Size())))
}

// TestPruneReportsRecordWhoseContentStays: a nameless image whose content a
// lease holds loses its record: the report says so, and does not say its
// content was deleted.
func TestPruneReportsRecordWhoseContentStays(t *testing.T) {
	e := newEnv(t)
	img := newImage(t, "held")
	e.writeDangling(img)
	l, err := e.client.LeasesService().Create(e.nsCtx(), leases.WithRandomID())
	assert.NilError(t, err)
	assert.NilError(t, e.client.LeasesService().AddResource(e.nsCtx(), l, leases.Resource{ID: img.Target.Digest.String(), Type: "content"}))

	dry := e.prune(nil, prune.DryRun())
	rep := e.prune(nil)

	want := []image.DeleteResponse{{Untagged: img.Target.Digest.String()}}
	assert.Check(t, is.DeepEqual(rep.ImagesDeleted, want))
	assert.Check(t, is.DeepEqual(dry.ImagesDeleted, want))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(0)))
	assert.Check(t, rep.Err())
	assert.Check(t, is.Len(e.names(), 0))
}

// TestPruneWithSnapshotterTheDaemonLacks: a snapshotter the daemon does not
// run holds nothing; it is no reason to fail.
func TestPruneWithSnapshotterTheDaemonLacks(t *testing.T) {
	e := newEnv(t, imgsvc.WithSnapshotter("nosuch"))
	img := newImage(t, "a", "example.com/a:1")
	e.write(img)
	rep := e.prune([]string{"dangling=false"})
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(img.Size())))
	_, err := e.svc.Images(e.ctx)
	assert.Check(t, err)
}

// storeState is what a store holds that a read must not change.
type storeState struct {
	Images  []images.Image
	Leases  []leases.Lease
	Content []content.Info
}

// state lists the namespace's image records, leases and content.
func (e *env) state() storeState {
	e.t.Helper()
	var st storeState
	var err error
	st.Images, err = e.client.ImageService().List(e.nsCtx())
	assert.NilError(e.t, err)
	st.Leases, err = e.client.LeasesService().List(e.nsCtx())
	assert.NilError(e.t, err)
	assert.NilError(e.t, e.client.ContentStore().Walk(e.nsCtx(), func(info content.Info) error {
		st.Content = append(st.Content, info)
		return nil
	}))
	return st
}
