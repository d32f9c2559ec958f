package integration

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
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

// countingCollector counts the garbage collections a prune asks for.
type countingCollector struct {
	store.Collector
	collections *atomic.Int32
}

func (c countingCollector) Collect(ctx context.Context) error {
	c.collections.Add(1)
	return c.Collector.Collect(ctx)
}

// TestPruneCollectsOnce: a prune of many images runs one garbage collection,
// not one per image.
func TestPruneCollectsOnce(t *testing.T) {
	e := newEnv(t)
	set := testimage.NewSet(testimage.SetOptions{Count: 20, SharedRate: 0.5, Seed: t.Name(), NamePrefix: "example.com/once/app"})
	e.write(set...)
	var n atomic.Int32
	stores := store.FromClient(e.client)
	stores.Collector = countingCollector{Collector: stores.Collector, collections: &n}
	svc := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter))

	rep, err := svc.Prune(e.ctx, plan.Filters{})
	assert.NilError(t, err)
	assert.Check(t, is.Len(rep.ImagesDeleted, 40))
	assert.Check(t, is.Equal(n.Load(), int32(1)))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(uniqueBytes(set, nil))))
}

// TestPruneKeepsUsedDangling is Moby's TestPruneDontDeleteUsedDangling: a
// dangling image that a container uses survives a prune.
func TestPruneKeepsUsedDangling(t *testing.T) {
	e := newEnv(t)
	img := newImage(t, "dangling")
	e.writeDangling(img)
	e.container("c1", img.Target.Digest.String(), nil)

	rep := e.prune(nil)
	assert.Check(t, is.Len(rep.ImagesDeleted, 0))
	rep = e.prune([]string{"dangling=false"})
	assert.Check(t, is.Len(rep.ImagesDeleted, 0))
	assert.Check(t, e.hasContent(img))
}

// interruptingStore stops deleting after a number of deletions, as a prune
// killed half-way would.
type interruptingStore struct {
	images.Store
	left *atomic.Int32
}

func (s interruptingStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	if s.left.Add(-1) < 0 {
		return fmt.Errorf("interrupted: %w", context.Canceled)
	}
	return s.Store.Delete(ctx, name, opts...)
}

// TestInterruptedPruneConverges: whenever a prune stops, what it leaves is
// a state the next prune finishes from, losing nothing that is used.
func TestInterruptedPruneConverges(t *testing.T) {
	// The plan has 4 deletes (the unused targets have no dangling record,
	// and none is made for a target that goes); each run stops before one.
	for _, after := range []int32{0, 1, 2, 3} {
		t.Run(fmt.Sprintf("after %d deletes", after), func(t *testing.T) {
			e := newEnv(t)
			used := newImage(t, "used", "example.com/used:1", "example.com/used:2")
			a := newImage(t, "a", "example.com/a:1", "example.com/a:2")
			b := newImage(t, "b", "example.com/b:1")
			e.write(used, a, b)
			e.container("c1", used.Target.Digest.Encoded()[:12], nil)
			var left atomic.Int32
			left.Store(after)
			stores := store.FromClient(e.client)
			stores.Images = interruptingStore{Store: stores.Images, left: &left}
			interrupted := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter))

			first, err := interrupted.Prune(e.ctx, plan.Filters{})
			assert.NilError(t, err)
			assert.Check(t, first.Err() != nil)
			assert.Check(t, e.hasContent(used))

			second := e.prune([]string{"dangling=false"})
			assert.Check(t, second.Err())
			assert.Check(t, is.Equal(first.SpaceReclaimed+second.SpaceReclaimed, uint64(a.Size()+b.Size())))
			var names []string
			for name := range e.names() {
				names = append(names, name)
			}
			assert.Check(t, is.Len(names, 2), strings.Join(names, ", "))
			assert.Check(t, is.Contains(e.names(), "example.com/used:2"))
			assert.Check(t, e.hasContent(used))
			assert.Check(t, e.hasNoContent(a))
			assert.Check(t, e.hasNoContent(b))
		})
	}
}

// repointingStore moves a name to another target just before prune deletes
// it, as a concurrent `docker tag` would.
type repointingStore struct {
	images.Store
	name string
	to   images.Image
}

func (s repointingStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	if name == s.name {
		moved := s.to
		moved.Name = name
		if _, err := s.Store.Update(ctx, moved, "target"); err != nil {
			return err
		}
	}
	return s.Store.Delete(ctx, name, opts...)
}

// TestPruneLeavesRepointedRecordAlone: a name re-pointed since the plan is
// not deleted with its new target.
func TestPruneLeavesRepointedRecordAlone(t *testing.T) {
	e := newEnv(t)
	old := newImage(t, "old", "example.com/app:1")
	used := newImage(t, "used", "example.com/used:1")
	e.write(old, used)
	e.container("c1", "example.com/used:1", nil)
	stores := store.FromClient(e.client)
	usedRec, err := stores.Images.Get(e.nsCtx(), "example.com/used:1")
	assert.NilError(t, err)
	stores.Images = repointingStore{Store: stores.Images, name: "example.com/app:1", to: usedRec}
	svc := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter))

	rep, err := svc.Prune(e.ctx, plan.Filters{})
	assert.NilError(t, err)
	assert.Check(t, rep.Err())
	names := e.names()
	assert.Check(t, is.Equal(names["example.com/app:1"], used.Target.Digest))
	assert.Check(t, e.hasContent(used))
	// The old target lost its last name to the re-pointing: it went.
	assert.Check(t, e.hasNoContent(old))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(old.Size())))
}

// TestPruneInterruptedByContext: a prune whose context is cancelled stops
// deleting, still collects what it removed and keeps its report. One
// deletion in flight, so that the cancel falls between two: deletions
// already sent complete.
func TestPruneInterruptedByContext(t *testing.T) {
	e := newEnv(t)
	a, b, ctx, svc := e.interruptedPrune(t, false)

	rep, err := svc.Prune(ctx, plan.Filters{})
	assert.NilError(t, err)
	assert.Check(t, is.Error(rep.Err(), "pruned 1 of 2 images; stopped early, 1 record left for the next prune"))
	// One failure says what was left; nothing untried counts as failed.
	assert.Check(t, is.DeepEqual(rep.Failures, []prune.Failure{{Name: "prune", Error: "stopped early: 1 record left for the next prune"}}))
	assert.Check(t, is.DeepEqual(e.names(), map[string]digest.Digest{"example.com/b:1": b.Target.Digest}))
	assert.Check(t, e.hasContent(b))

	again := e.prune([]string{"dangling=false"})
	assert.Check(t, again.Err())
	assert.Check(t, is.Len(e.names(), 0))
	assert.Check(t, is.Equal(rep.SpaceReclaimed+again.SpaceReclaimed, uint64(a.Size()+b.Size())))
}

// interruptedPrune writes two images, a and b, and returns a context and a
// service, one deletion in flight, that cancels the context once its prune
// deleted a's name; with await, that deletion waits for the cancel to come
// back through the context (a server that stops).
func (e *env) interruptedPrune(t *testing.T, await bool) (testimage.Image, testimage.Image, context.Context, *imgsvc.Service) {
	t.Helper()
	a := newImage(t, "a", "example.com/a:1")
	b := newImage(t, "b", "example.com/b:1")
	e.write(a, b)
	ctx, cancel := context.WithCancel(e.ctx)
	t.Cleanup(cancel)
	stores := store.FromClient(e.client)
	stores.Images = cancellingStore{Store: stores.Images, name: "example.com/a:1", cancel: cancel, await: await}
	return a, b, ctx, imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter), imgsvc.WithDeletesInFlight(1))
}

// cancellingStore cancels the prune's context once it deleted name. With
// await, it then waits for the prune's context to end: one cancelled from
// afar (a server that stops) before the prune's next deletion.
type cancellingStore struct {
	images.Store
	name   string
	cancel context.CancelFunc
	await  bool
}

func (s cancellingStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	err := s.Store.Delete(context.WithoutCancel(ctx), name, opts...)
	if name == s.name {
		s.cancel()
		if s.await {
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
			}
		}
	}
	return err
}

// TestInterruptedPruneWithUntilConverges: a target an interrupted prune
// left nameless is as old as when it entered, so the same until filter
// finishes it next time.
func TestInterruptedPruneWithUntilConverges(t *testing.T) {
	e := newEnv(t)
	a := newImage(t, "a", "example.com/a:1")
	b := newImage(t, "b", "example.com/b:1")
	e.write(a, b)
	until := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(10 * time.Millisecond) // the adoption below comes after until
	// A dangling-only prune adopts the named targets it keeps.
	e.prune(nil)
	assert.Check(t, is.Len(e.names(), 4))
	var left atomic.Int32
	left.Store(2) // both names go, no dangling record does
	stores := store.FromClient(e.client)
	stores.Images = interruptingStore{Store: stores.Images, left: &left}
	args, err := plan.ParseFilterFlags([]string{"until=" + until})
	assert.NilError(t, err)
	f, err := plan.ParseFilters(args, time.Now())
	assert.NilError(t, err)
	f.DanglingOnly = false

	first, err := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true)).Prune(e.ctx, f)
	assert.NilError(t, err)
	assert.Check(t, first.Err() != nil)
	assert.Check(t, is.Len(e.names(), 2), "only the dangling records are left")

	second := e.prune([]string{"dangling=false", "until=" + until})
	assert.Check(t, second.Err())
	assert.Check(t, is.Len(e.names(), 0))
	assert.Check(t, e.hasNoContent(a))
	assert.Check(t, e.hasNoContent(b))
}

// TestPruneLockIsSharedBetweenServices: two services (two processes, say)
// cannot prune one namespace at once; a dry run runs beside a prune. A lock
// left by a prune that died: TestPruneLockOfAKilledHolder.
func TestPruneLockIsSharedBetweenServices(t *testing.T) {
	e := newEnv(t)
	_, release := e.blockedPrune(t)

	other := imgsvc.NewFromClient(e.client, e.ns, imgsvc.WithDanglingRecords(true))
	_, err := other.Prune(e.ctx, plan.Filters{DanglingOnly: true})
	assert.Check(t, errdefs.IsConflict(err), "got %v", err)
	_, err = other.Prune(e.ctx, plan.Filters{DanglingOnly: true}, prune.DryRun())
	assert.Check(t, err, "a dry run runs beside a prune")
	assert.Check(t, release())
}

// danglingRemovingStore removes a target's dangling record just before it
// deletes name, as another client might.
type danglingRemovingStore struct {
	images.Store
	name     string
	dangling string
}

func (s danglingRemovingStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	if name == s.name {
		if err := s.Store.Delete(ctx, s.dangling); err != nil {
			return err
		}
	}
	return s.Store.Delete(ctx, name, opts...)
}

// TestPruneKeepsUsedContentWhenDanglingRecordVanishes: a used target losing
// its last name keeps its content even when another client removes its
// dangling record while the prune runs.
func TestPruneKeepsUsedContentWhenDanglingRecordVanishes(t *testing.T) {
	e := newEnv(t)
	img := newImage(t, "a", "example.com/a:1")
	e.write(img)
	e.container("c1", "example.com/gone:1", map[string]string{imgcontainers.ImageIDLabel: img.Target.Digest.String()})
	stores := store.FromClient(e.client)
	stores.Images = danglingRemovingStore{Store: stores.Images, name: "example.com/a:1", dangling: "moby-dangling@" + img.Target.Digest.String()}

	rep, err := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true)).Prune(e.ctx, plan.Filters{})
	assert.NilError(t, err)

	assert.Check(t, rep.Err())
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(0)))
	assert.Check(t, e.hasContent(img))
	assert.Check(t, is.DeepEqual(e.names(), map[string]digest.Digest{"moby-dangling@" + img.Target.Digest.String(): img.Target.Digest}))
}

// TestPruneFailedNameDoesNotStopItsSiblings: one name of a target failing
// does not keep the target's other names; the name that failed keeps the
// target for the next prune.
func TestPruneFailedNameDoesNotStopItsSiblings(t *testing.T) {
	e := newEnv(t)
	img := newImage(t, "a", "example.com/a:1", "example.com/a:2", "example.com/a:3")
	e.write(img)
	stores := store.FromClient(e.client)
	stores.Images = failingStore{Store: stores.Images, fail: "example.com/a:1"}

	rep, err := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true)).Prune(e.ctx, plan.Filters{})
	assert.NilError(t, err)

	assert.Check(t, is.Error(rep.Err(), "pruned 2 of 3 images; 1 failed"))
	// The target was to go entirely, so it was not adopted; its name that
	// failed keeps it for the next prune.
	assert.Check(t, is.DeepEqual(e.names(), map[string]digest.Digest{"example.com/a:1": img.Target.Digest}))
	assert.Check(t, e.hasContent(img))
}

// heldStore deletes name, then cancels the prune; every other deletion
// waits for that cancel and then goes to the daemon with the prune's
// context, as deletions in flight when a prune is interrupted do.
type heldStore struct {
	images.Store
	name      string
	cancel    context.CancelFunc
	cancelled chan struct{}
}

func (s heldStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	if name == s.name {
		err := s.Store.Delete(context.WithoutCancel(ctx), name, opts...)
		s.cancel()
		close(s.cancelled)
		return err
	}
	<-s.cancelled
	return s.Store.Delete(ctx, name, opts...)
}

// TestPruneInterruptedWithDeletionsInFlight: deletions in flight when the
// prune is cancelled are left for the next prune, not reported as failed.
func TestPruneInterruptedWithDeletionsInFlight(t *testing.T) {
	e := newEnv(t)
	var imgs []testimage.Image
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		imgs = append(imgs, newImage(t, n, "example.com/"+n+":1"))
	}
	e.write(imgs...)
	ctx, cancel := context.WithCancel(e.ctx)
	stores := store.FromClient(e.client)
	stores.Images = heldStore{Store: stores.Images, name: "example.com/a:1", cancel: cancel, cancelled: make(chan struct{})}
	svc := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter))

	rep, err := svc.Prune(ctx, plan.Filters{})
	assert.NilError(t, err)
	assert.Check(t, is.Error(rep.Err(), "pruned 1 of 5 images; stopped early, 4 records left for the next prune"))
	assert.Check(t, is.DeepEqual(rep.Failures, []prune.Failure{{Name: "prune", Error: "stopped early: 4 records left for the next prune"}}))

	again := e.prune([]string{"dangling=false"})
	assert.Check(t, again.Err())
	assert.Check(t, is.Len(e.names(), 0))
	for _, img := range imgs {
		assert.Check(t, e.hasNoContent(img))
	}
}
