package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	"github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/internal/testimage"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// watched is what a service asked of the daemon: its collections, and the
// records it deleted.
type watched struct {
	collections atomic.Int32
	mu          sync.Mutex
	deleted     []string
}

// deletedRecords lists the records deleted, in order.
func (w *watched) deletedRecords() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.deleted)
}

// recordingStore records the records it deletes.
type recordingStore struct {
	images.Store
	w *watched
}

func (s recordingStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	err := s.Store.Delete(ctx, name, opts...)
	if err == nil {
		s.w.mu.Lock()
		defer s.w.mu.Unlock()
		s.w.deleted = append(s.w.deleted, name)
	}
	return err
}

// watchedService is the test's service, watched.
func (e *env) watchedService() (*imgsvc.Service, *watched) {
	w := &watched{}
	stores := store.FromClient(e.client)
	stores.Collector = countingCollector{Collector: stores.Collector, collections: &w.collections}
	stores.Images = recordingStore{Store: stores.Images, w: w}
	return imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter)), w
}

// recordsOf lists the names of the records of target, sorted.
func (e *env) recordsOf(target digest.Digest) []string {
	e.t.Helper()
	var out []string
	for name, d := range e.names() {
		if d == target {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func untagged(names ...string) []image.DeleteResponse {
	out := []image.DeleteResponse{}
	for _, n := range names {
		out = append(out, image.DeleteResponse{Untagged: n})
	}
	return out
}

func deleted(img testimage.Image) image.DeleteResponse {
	return image.DeleteResponse{Deleted: img.Target.Digest.String()}
}

// TestRemoveUntagsWhileOtherNamesRemain: a name of a target that keeps other
// names is untagged, as docker untags it, and the content is not touched,
// even when a container was created by that name.
func TestRemoveUntagsWhileOtherNamesRemain(t *testing.T) {
	for _, tc := range []struct {
		name  string
		names []string
		ref   func(img testimage.Image) string
		want  []string // familiar names untagged
		stay  []string
	}{
		{
			name:  "the tag alone, shown as docker shows it",
			names: []string{"docker.io/library/busybox:latest", "example.com/mirror/busybox:1"},
			ref:   func(testimage.Image) string { return "busybox" },
			want:  []string{"busybox:latest"},
			stay:  []string{"example.com/mirror/busybox:1"},
		},
		{
			name:  "the last tag of its repository takes its digest references",
			names: []string{"docker.io/library/app:1", "docker.io/library/app@" + digestOf(t, "app-digest"), "example.com/other:1"},
			ref:   func(testimage.Image) string { return "app:1" },
			want:  []string{"app:1", "app@" + digestOf(t, "app-digest")},
			stay:  []string{"example.com/other:1"},
		},
		{
			name:  "another tag of the repository keeps its digest references",
			names: []string{"docker.io/library/app:1", "docker.io/library/app:2", "docker.io/library/app@" + digestOf(t, "app-digest")},
			ref:   func(testimage.Image) string { return "app:1" },
			want:  []string{"app:1"},
			stay:  []string{"docker.io/library/app:2", "docker.io/library/app@" + digestOf(t, "app-digest")},
		},
		{
			name:  "a digest reference without a record takes every name of its repository",
			names: []string{"docker.io/library/app:1", "docker.io/library/app:2", "example.com/other:1"},
			ref:   func(img testimage.Image) string { return "app@" + img.Target.Digest.String() },
			want:  []string{"app:1", "app:2"},
			stay:  []string{"example.com/other:1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			img := newImage(t, "img", tc.names...)
			e.write(img)
			e.prune(nil) // adopts it: it has its dangling record
			e.container("by-name", tc.names[0], nil)
			svc, w := e.watchedService()

			got, err := svc.Remove(e.ctx, tc.ref(img), false)

			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(got, untagged(tc.want...)))
			want := append(slices.Clone(tc.stay), plan.DanglingName(img.Target.Digest))
			slices.Sort(want)
			assert.Check(t, is.DeepEqual(e.recordsOf(img.Target.Digest), want))
			assert.Check(t, e.hasContent(img))
			assert.Check(t, is.Equal(w.collections.Load(), int32(0)))
		})
	}
}

// digestOf is a digest of the test's own, for names whose digest is not the
// target's (a record's name is only a name).
func digestOf(t *testing.T, seed string) string {
	return digest.FromString(t.Name() + seed).String()
}

// TestRemoveLastName: an unused target's last name goes with its dangling
// record, CRI's ID record, and its content, in one collection; an image it
// shares nothing with stays.
func TestRemoveLastName(t *testing.T) {
	for _, tc := range []struct {
		name string
		// write writes img, named example.com/last:1 unless it says
		// otherwise.
		write func(e *env, img testimage.Image)
		ref   string
		want  func(img testimage.Image) []string
		// leased: a lease holds the content, as a load in flight does: the
		// records go, the content stays, and it is not reported deleted.
		leased bool
	}{
		{
			name:  "with its dangling record",
			write: func(e *env, img testimage.Image) { e.write(img); e.prune(nil) },
			ref:   "example.com/last:1",
			want:  func(testimage.Image) []string { return []string{"example.com/last:1"} },
		},
		{
			name:  "as another tool left it, without a dangling record",
			write: func(e *env, img testimage.Image) { e.write(img) },
			ref:   "example.com/last:1",
			want:  func(testimage.Image) []string { return []string{"example.com/last:1"} },
		},
		{
			name: "its content held by a lease",
			write: func(e *env, img testimage.Image) {
				e.write(img)
				l, err := e.client.LeasesService().Create(e.nsCtx(), leases.WithRandomID())
				assert.NilError(e.t, err)
				assert.NilError(e.t, e.client.LeasesService().AddResource(e.nsCtx(), l, leases.Resource{ID: img.Target.Digest.String(), Type: "content"}))
				e.t.Cleanup(func() { e.client.LeasesService().Delete(e.nsCtx(), l) })
			},
			ref:    "example.com/last:1",
			want:   func(testimage.Image) []string { return []string{"example.com/last:1"} },
			leased: true,
		},
		{
			name: "a CRI image, with its digest reference and its ID record",
			write: func(e *env, img testimage.Image) {
				img.Names = nil
				e.criImage(img, "docker.io/library/pod", "1")
			},
			ref:  "pod:1",
			want: func(img testimage.Image) []string { return []string{"pod:1", "pod@" + img.Target.Digest.String()} },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			img := newImage(t, "last", "example.com/last:1")
			other := newImage(t, "other", "example.com/other:1")
			tc.write(e, img)
			e.write(other)
			assert.Assert(t, len(e.recordsOf(img.Target.Digest)) > 0)
			svc, w := e.watchedService()

			got, err := svc.Remove(e.ctx, tc.ref, false)

			assert.NilError(t, err)
			assert.Check(t, is.Len(e.recordsOf(img.Target.Digest), 0))
			if tc.leased {
				assert.Check(t, is.DeepEqual(got, untagged(tc.want(img)...)))
				assert.Check(t, e.hasContent(img))
			} else {
				assert.Check(t, is.DeepEqual(got, append(untagged(tc.want(img)...), deleted(img))))
				assert.Check(t, e.hasNoContent(img), "the content goes in the removal's collection")
			}
			assert.Check(t, is.Equal(w.collections.Load(), int32(1)))
			assert.Check(t, e.hasContent(other))
			assert.Check(t, is.Equal(e.names()["example.com/other:1"], other.Target.Digest))
		})
	}
}

// TestRemoveUsedImage: a target a container uses, by any evidence a prune
// accepts, loses its last name only when forced, and then keeps its content:
// unlike docker, which deletes it from under the container.
func TestRemoveUsedImage(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup writes img (named example.com/used:1 unless it says
		// otherwise), creates container id using it, and returns the name
		// to remove and its familiar form.
		setup func(e *env, img testimage.Image, id string) (ref, familiar string)
		// untagged are the names a forced removal untags, when not the
		// familiar one alone; kept the records the target keeps, when not
		// its dangling record alone.
		untagged func(img testimage.Image) []string
		kept     func(img testimage.Image) []string
	}{
		{
			name: "created by name",
			setup: func(e *env, img testimage.Image, id string) (string, string) {
				e.write(img)
				e.container(id, "example.com/used:1", nil)
				return "example.com/used:1", "example.com/used:1"
			},
		},
		{
			name: "created by ID",
			setup: func(e *env, img testimage.Image, id string) (string, string) {
				e.write(img)
				e.container(id, img.Target.Digest.String(), nil)
				return "example.com/used:1", "example.com/used:1"
			},
		},
		{
			name: "created by short ID",
			setup: func(e *env, img testimage.Image, id string) (string, string) {
				e.write(img)
				e.container(id, img.Target.Digest.Encoded()[:12], nil)
				return "example.com/used:1", "example.com/used:1"
			},
		},
		{
			name: "created by digest",
			setup: func(e *env, img testimage.Image, id string) (string, string) {
				e.write(img)
				e.container(id, "example.com/used@"+img.Target.Digest.String(), nil)
				return "example.com/used:1", "example.com/used:1"
			},
		},
		{
			name: "known by its image ID label, its name gone",
			setup: func(e *env, img testimage.Image, id string) (string, string) {
				e.write(img)
				e.container(id, "example.com/gone:1", map[string]string{imgcontainers.ImageIDLabel: img.Target.Digest.String()})
				return "example.com/used:1", "example.com/used:1"
			},
		},
		{
			name: "a CRI container",
			setup: func(e *env, img testimage.Image, id string) (string, string) {
				img.Names = nil
				e.criImage(img, "docker.io/library/pod", "1")
				e.criContainer(id, img, "docker.io/library/pod:1", e.unpack("docker.io/library/pod:1"))
				return "pod:1", "pod:1"
			},
			untagged: func(img testimage.Image) []string { return []string{"pod:1", "pod@" + img.Target.Digest.String()} },
			// CRI's ID record is its refcount: no dangling record is made.
			kept: func(img testimage.Image) []string { return []string{img.ConfigDesc.Digest.String()} },
		},
		{
			name: "its tag moved, the rootfs tells",
			setup: func(e *env, img testimage.Image, id string) (string, string) {
				img.Names = []string{"example.com/app:1", "example.com/app:old"}
				rebuilt := testimage.New(testimage.WithNames("example.com/app:build"), testimage.WithLayers(testimage.NewLayer(e.ns+"/rebuilt", 4096)))
				e.write(img, rebuilt)
				e.rootfs(id, e.unpack("example.com/app:1"))
				e.containerWithRootfs(id, "example.com/app:1", id)
				_, err := e.svc.Tag(e.ctx, "example.com/app:build", "example.com/app:1")
				assert.NilError(e.t, err)
				return "example.com/app:old", "example.com/app:old"
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			img := newImage(t, "used", "example.com/used:1")
			id := digest.FromString(t.Name()).Encoded()
			ref, familiar := tc.setup(e, img, id)
			before := e.names()
			svc, w := e.watchedService()

			_, err := svc.Remove(e.ctx, ref, false)
			assert.Check(t, errdefs.IsConflict(err), "got %v", err)
			assert.Check(t, is.Error(err, fmt.Sprintf("conflict: unable to delete %s (must be forced) - container %s is using its referenced image %s",
				familiar, id[:12], img.Target.Digest.Encoded()[:12])))

			_, err = svc.Remove(e.ctx, img.Target.Digest.String(), false)
			assert.Check(t, errdefs.IsConflict(err), "got %v", err)
			assert.Check(t, is.Error(err, fmt.Sprintf("conflict: unable to delete %s (must be forced) - image is being used by stopped container %s",
				img.Target.Digest.Encoded()[:12], id[:12])))
			assert.Check(t, is.DeepEqual(e.names(), before), "a refused removal changes nothing")

			got, err := svc.Remove(e.ctx, ref, true)

			assert.NilError(t, err)
			want := []string{familiar}
			if tc.untagged != nil {
				want = tc.untagged(img)
			}
			assert.Check(t, is.DeepEqual(got, untagged(want...)))
			kept := []string{plan.DanglingName(img.Target.Digest)}
			if tc.kept != nil {
				kept = tc.kept(img)
			}
			assert.Check(t, is.DeepEqual(e.recordsOf(img.Target.Digest), kept))
			// Not even for a moment does a used target lose its refcount.
			assert.Check(t, is.Len(w.deletedRecords(), len(want)))
			for _, refcount := range []string{plan.DanglingName(img.Target.Digest), img.ConfigDesc.Digest.String()} {
				assert.Check(t, !slices.Contains(w.deletedRecords(), refcount), "deleted %s", refcount)
			}
			assert.Check(t, is.Equal(w.collections.Load(), int32(0)))
			e.collect()
			assert.Check(t, e.hasContent(img), "a used image lost its content")
		})
	}
}

// TestRemoveByID: an image ID, short or whole, with or without its
// algorithm, or the dangling record's name removes every record of the
// target; more than one name, or a container, wants force, and force keeps a
// used target's content.
func TestRemoveByID(t *testing.T) {
	for _, tc := range []struct {
		name     string
		names    []string // none: a dangling image
		used     bool     // a container created by ID uses it
		ref      func(img testimage.Image) string
		force    bool
		untagged []string
		gone     bool   // its records and content go
		conflict string // what follows "conflict: unable to delete <id> (must be forced) - "
	}{
		{
			name:     "sha256 digest, one name",
			names:    []string{"example.com/one:1"},
			ref:      func(img testimage.Image) string { return img.Target.Digest.String() },
			untagged: []string{"example.com/one:1"},
			gone:     true,
		},
		{
			name:     "hex ID without its algorithm",
			names:    []string{"docker.io/library/one:1"},
			ref:      func(img testimage.Image) string { return img.Target.Digest.Encoded() },
			untagged: []string{"one:1"},
			gone:     true,
		},
		{
			name:     "short ID",
			names:    []string{"example.com/one:1"},
			ref:      func(img testimage.Image) string { return img.Target.Digest.Encoded()[:12] },
			untagged: []string{"example.com/one:1"},
			gone:     true,
		},
		{
			name:     "short ID after sha256:",
			names:    []string{"example.com/one:1"},
			ref:      func(img testimage.Image) string { return "sha256:" + img.Target.Digest.Encoded()[:8] },
			untagged: []string{"example.com/one:1"},
			gone:     true,
		},
		{
			name: "a dangling image by ID",
			ref:  func(img testimage.Image) string { return img.Target.Digest.Encoded()[:12] },
			gone: true,
		},
		{
			name: "the dangling record's name",
			ref:  func(img testimage.Image) string { return plan.DanglingName(img.Target.Digest) },
			gone: true,
		},
		{
			name:     "the dangling record's name of a named image",
			names:    []string{"example.com/one:1"},
			ref:      func(img testimage.Image) string { return plan.DanglingName(img.Target.Digest) },
			untagged: []string{"example.com/one:1"},
			gone:     true,
		},
		{
			name:     "two names",
			names:    []string{"example.com/b:1", "example.com/a:1"},
			ref:      func(img testimage.Image) string { return img.Target.Digest.String() },
			conflict: "image is referenced in multiple repositories",
		},
		{
			name:     "two names, forced",
			names:    []string{"example.com/b:1", "example.com/a:1"},
			ref:      func(img testimage.Image) string { return img.Target.Digest.Encoded()[:12] },
			force:    true,
			untagged: []string{"example.com/a:1", "example.com/b:1"},
			gone:     true,
		},
		{
			name:     "used, with two names: the container is the conflict",
			names:    []string{"example.com/b:1", "example.com/a:1"},
			used:     true,
			ref:      func(img testimage.Image) string { return img.Target.Digest.String() },
			conflict: "image is being used by stopped container ",
		},
		{
			name:     "used, forced: untagged, kept",
			names:    []string{"example.com/b:1", "example.com/a:1"},
			used:     true,
			ref:      func(img testimage.Image) string { return img.Target.Digest.String() },
			force:    true,
			untagged: []string{"example.com/a:1", "example.com/b:1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			img := newImage(t, "img", tc.names...)
			if len(tc.names) == 0 {
				e.writeDangling(img)
			} else {
				e.write(img)
				e.prune(nil) // adopts it: it has its dangling record
			}
			id := digest.FromString(t.Name()).Encoded()
			if tc.used {
				e.container(id, img.Target.Digest.String(), nil)
			}
			before := e.names()
			svc, w := e.watchedService()

			got, err := svc.Remove(e.ctx, tc.ref(img), tc.force)

			if tc.conflict != "" {
				msg := fmt.Sprintf("conflict: unable to delete %s (must be forced) - %s", img.Target.Digest.Encoded()[:12], tc.conflict)
				if tc.used {
					msg += id[:12]
				}
				assert.Check(t, errdefs.IsConflict(err), "got %v", err)
				assert.Check(t, is.Error(err, msg))
				assert.Check(t, is.DeepEqual(e.names(), before), "a refused removal changes nothing")
				return
			}
			assert.NilError(t, err)
			want := untagged(tc.untagged...)
			if tc.gone {
				want = append(want, deleted(img))
			}
			assert.Check(t, is.DeepEqual(got, want))
			if !tc.gone {
				assert.Check(t, is.DeepEqual(e.recordsOf(img.Target.Digest), []string{plan.DanglingName(img.Target.Digest)}))
				assert.Check(t, !slices.Contains(w.deletedRecords(), plan.DanglingName(img.Target.Digest)), "a used image lost its refcount")
				assert.Check(t, is.Equal(w.collections.Load(), int32(0)))
				e.collect()
				assert.Check(t, e.hasContent(img), "a used image lost its content")
				return
			}
			assert.Check(t, is.Len(e.recordsOf(img.Target.Digest), 0))
			assert.Check(t, e.hasNoContent(img))
			assert.Check(t, is.Equal(w.collections.Load(), int32(1)))
		})
	}
}

// TestRemoveBadReference: a reference that names nothing is docker's "No such
// image", one that does not parse an invalid argument; neither changes
// anything.
func TestRemoveBadReference(t *testing.T) {
	e := newEnv(t)
	img := newImage(t, "img", "example.com/app:1")
	e.write(img)
	e.prune(nil)
	before := e.names()
	none := digest.FromString("none").Encoded()

	for _, tc := range []struct {
		ref     string
		invalid bool
		msg     string
	}{
		{ref: "example.com/app:2", msg: "No such image: example.com/app:2"},
		{ref: "missing", msg: "No such image: missing:latest"},
		{ref: "abc123", msg: "No such image: abc123:latest"},
		{ref: "sha256:" + none, msg: "No such image: sha256:" + none},
		{ref: "example.com/other@" + img.Target.Digest.String(), msg: "No such image: example.com/other@" + img.Target.Digest.String()},
		{ref: "example.com/app:2@" + img.Target.Digest.String(), msg: "No such image: example.com/app:2@" + img.Target.Digest.String()},
		{ref: "", invalid: true},
		{ref: "Not A Reference!", invalid: true},
		{ref: "UPPER:1", invalid: true},
		{ref: " example.com/app:1", invalid: true},
	} {
		_, err := e.svc.Remove(e.ctx, tc.ref, true)
		if tc.invalid {
			assert.Check(t, errdefs.IsInvalidArgument(err), "%q: got %v", tc.ref, err)
			continue
		}
		assert.Check(t, errdefs.IsNotFound(err), "%q: got %v", tc.ref, err)
		assert.Check(t, is.Error(err, tc.msg))
	}
	assert.Check(t, is.DeepEqual(e.names(), before))
	assert.Check(t, e.hasContent(img))
}

// TestRemoveWhilePruneRuns: a removal takes the prune lock, so it waits for
// a prune running in this process or another; one whose wait ends first
// gets the prune's error and changes nothing.
func TestRemoveWhilePruneRuns(t *testing.T) {
	t.Run("in this process", func(t *testing.T) {
		e := newEnv(t)
		img := newImage(t, "img", "example.com/app:1")
		e.write(img)
		svc, release := e.blockedPrune(t)

		// A removal whose wait ends first gives up and changes nothing.
		short, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
		_, err := svc.Remove(short, "example.com/app:1", true)
		cancel()
		assert.Check(t, is.Equal(err, imgsvc.ErrPruneRunning))
		assert.Check(t, is.Equal(e.names()["example.com/app:1"], img.Target.Digest))

		// One that waits goes on once the prune ends.
		removed := make(chan error, 1)
		go func() {
			_, err := svc.Remove(e.ctx, "example.com/app:1", true)
			removed <- err
		}()
		select {
		case err := <-removed:
			t.Fatalf("the removal did not wait for the prune: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		assert.Check(t, release())
		select {
		case err := <-removed:
			assert.Check(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("the removal still waits")
		}
		_, ok := e.names()["example.com/app:1"]
		assert.Check(t, !ok)
	})
	t.Run("in another process", func(t *testing.T) {
		e := newEnv(t)
		img := newImage(t, "img", "example.com/app:1")
		e.write(img)
		l, err := imgleases.LockPrune(e.nsCtx(), e.client.LeasesService())
		assert.NilError(t, err)

		short, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
		_, err = e.svc.Remove(short, "example.com/app:1", true)
		cancel()

		assert.Check(t, errors.Is(err, imgsvc.ErrPruneRunning), "got %v", err)
		assert.Check(t, errdefs.IsConflict(err))
		assert.Check(t, is.ErrorContains(err, "a prune operation is already running (by "))
		assert.Check(t, is.Equal(e.names()["example.com/app:1"], img.Target.Digest))

		removed := make(chan error, 1)
		var got []image.DeleteResponse
		go func() {
			var err error
			got, err = e.svc.Remove(e.ctx, "example.com/app:1", false)
			removed <- err
		}()
		time.Sleep(200 * time.Millisecond)
		assert.NilError(t, l.Release(e.nsCtx()))
		assert.NilError(t, <-removed)
		assert.Check(t, is.DeepEqual(got, append(untagged("example.com/app:1"), deleted(img))))
	})
}

// TestRemoveLooksAgainBeforeContentGoes: a container created while the
// records go keeps the image: it gets its dangling record back and its
// content stays, also when the daemon collects right after the last name or
// the dangling record went.
func TestRemoveLooksAgainBeforeContentGoes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		asLeft bool // no dangling record: the name alone keeps the content
		after  func(img testimage.Image) string
	}{
		{
			name:   "after its last name, then a collection, no dangling record",
			asLeft: true,
			after:  func(testimage.Image) string { return "example.com/c:1" },
		},
		{
			name:  "after its dangling record, then a collection",
			after: func(img testimage.Image) string { return plan.DanglingName(img.Target.Digest) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			img := newImage(t, "c", "example.com/c:1")
			e.write(img)
			if !tc.asLeft {
				e.prune(nil)
			}
			stores := store.FromClient(e.client)
			stores.Images = creatingStore{Store: stores.Images, e: e, after: tc.after(img), collect: true, ref: img.Target.Digest.String(), deletes: &atomic.Int32{}}
			svc := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter))

			got, err := svc.Remove(e.ctx, "example.com/c:1", false)

			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(got, untagged("example.com/c:1")), "not deleted")
			assert.Check(t, is.DeepEqual(e.recordsOf(img.Target.Digest), []string{plan.DanglingName(img.Target.Digest)}))
			e.collect()
			assert.Check(t, e.hasContent(img), "the late container's image lost its content")
		})
	}
}
