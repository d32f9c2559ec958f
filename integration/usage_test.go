package integration

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"google.golang.org/protobuf/types/known/anypb"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/internal/testimage"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// unpack unpacks the image named name into the test's snapshotter, as a
// pull or a load does, and returns its chain ID.
func (e *env) unpack(name string) string {
	e.t.Helper()
	ctx, done, err := e.client.WithLease(e.nsCtx(), leases.WithRandomID())
	assert.NilError(e.t, err)
	defer done(ctx)
	rec, err := e.client.ImageService().Get(ctx, name)
	assert.NilError(e.t, err)
	img := client.NewImage(e.client, rec)
	assert.NilError(e.t, img.Unpack(ctx, snapshotter))
	diffIDs, err := img.RootFS(ctx)
	assert.NilError(e.t, err)
	return identity.ChainID(diffIDs).String()
}

// rootfs prepares a container's snapshot on the image snapshot chain, as
// every creator that runs a container does.
func (e *env) rootfs(key, chain string) {
	e.t.Helper()
	_, err := e.client.SnapshotService(snapshotter).Prepare(e.nsCtx(), key, chain)
	assert.NilError(e.t, err)
}

// criImage writes img with the records containerd's CRI plugin makes for a
// pulled image: repo:tag, repo@digest and its ID, sha256:<config digest>,
// each labelled as managed by CRI.
func (e *env) criImage(img testimage.Image, repo, tag string) {
	e.t.Helper()
	e.write(img)
	for _, name := range []string{repo + ":" + tag, repo + "@" + img.Target.Digest.String(), img.ConfigDesc.Digest.String()} {
		_, err := e.client.ImageService().Create(e.nsCtx(), images.Image{
			Name:   name,
			Target: img.Target,
			Labels: map[string]string{plan.CRIImageLabel: plan.CRIImageManaged},
		})
		assert.NilError(e.t, err)
	}
}

// criContainer creates a container record as containerd 2.4.2's CRI plugin
// does (e2e/node runs the plugin itself): a name of the image in Image, its
// kind label, its sandbox, its rootfs on the image's chain, and the image
// in its metadata extension.
func (e *env) criContainer(id string, img testimage.Image, imageName, chain string) {
	e.t.Helper()
	e.rootfs(id, chain)
	meta, err := json.Marshal(map[string]any{
		"Version": "v1",
		"Metadata": map[string]any{
			"ID":          id,
			"Name":        id + "_default_pod_0",
			"SandboxID":   "sandbox-" + id,
			"Config":      map[string]any{"metadata": map[string]any{"name": id}, "image": map[string]any{"image": img.ConfigDesc.Digest.String()}},
			"ImageRef":    img.ConfigDesc.Digest.String(),
			"ImageDigest": img.Target.Digest.String(),
			"ImageName":   imageName,
			"LogPath":     "/var/log/pods/" + id + ".log",
			"StopSignal":  "SIGTERM",
		},
	})
	assert.NilError(e.t, err)
	_, err = e.client.ContainerService().Create(e.nsCtx(), containers.Container{
		ID:          id,
		Image:       imageName,
		Labels:      map[string]string{imgcontainers.CRIKindLabel: "container", "io.kubernetes.pod.name": "pod"},
		Runtime:     containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		Spec:        &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte("{}")},
		Snapshotter: snapshotter,
		SnapshotKey: id,
		SandboxID:   "sandbox-" + id,
		Extensions: map[string]typeurl.Any{
			imgcontainers.CRIMetadataExtension: &anypb.Any{TypeUrl: "github.com/containerd/cri/pkg/store/container/Metadata", Value: meta},
		},
	})
	assert.NilError(e.t, err)
}

// TestPruneKeepsImagesOfCRIContainers: a pod's container, made through CRI,
// keeps its image whole, content and every name (the tag it runs, the
// digest, the ID record); an unused CRI image leaves no record at all.
func TestPruneKeepsImagesOfCRIContainers(t *testing.T) {
	e := newEnv(t)
	used := newImage(t, "pod")
	unused := newImage(t, "old")
	e.criImage(used, "docker.io/library/pod", "1")
	e.criImage(unused, "docker.io/library/old", "1")
	chain := e.unpack("docker.io/library/pod:1")
	e.criContainer("app", used, "docker.io/library/pod:1", chain)

	dry := e.prune([]string{"dangling=false"}, prune.DryRun())
	rep := e.prune([]string{"dangling=false"})

	assert.Check(t, rep.Err())
	assert.Check(t, is.DeepEqual(rep.ImagesDeleted, dry.ImagesDeleted))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, dry.SpaceReclaimed))
	// CRI's ID record is the image's refcount: no dangling record is made,
	// which `crictl images` would show as a digest of the image.
	assert.Check(t, is.DeepEqual(e.names(), map[string]digest.Digest{
		"docker.io/library/pod:1":                              used.Target.Digest,
		"docker.io/library/pod@" + used.Target.Digest.String(): used.Target.Digest,
		used.ConfigDesc.Digest.String():                        used.Target.Digest,
	}))
	assert.Check(t, e.hasContent(used))
	assert.Check(t, e.hasNoContent(unused))

	// Listed by its tag and its digest; its ID record is no name of its own.
	rows, err := e.svc.Images(e.ctx)
	assert.NilError(t, err)
	assert.Assert(t, is.Len(rows, 2))
	assert.Check(t, is.Equal(rows[0].Name, "docker.io/library/pod:1"))
	assert.Check(t, is.Equal(rows[1].Name, "docker.io/library/pod@"+used.Target.Digest.String()))
	for _, row := range rows {
		assert.Check(t, is.Equal(row.Containers, 1), "one container, however many sources report it")
	}
}

// TestPruneKeepsImageOfContainerWhoseTagMoved: a container that records only
// the name it ran (nerdctl, ctr) keeps the image it runs after that name
// moved to a new build, through its rootfs, also when the old image's only
// other name is unused, and also when its config does not say where it is
// unpacked.
func TestPruneKeepsImageOfContainerWhoseTagMoved(t *testing.T) {
	for _, tc := range []struct {
		name        string
		removeLabel bool
	}{
		{name: "config labelled with its chain"},
		{name: "chain computed from diff IDs", removeLabel: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			old := newImage(t, "old", "example.com/app:1", "example.com/app:build-41")
			rebuilt := newImage(t, "rebuilt", "example.com/app:build-42")
			e.write(old, rebuilt)
			chain := e.unpack("example.com/app:1")
			if tc.removeLabel {
				label := "containerd.io/gc.ref.snapshot." + snapshotter
				_, err := e.client.ContentStore().Update(e.nsCtx(), content.Info{Digest: old.ConfigDesc.Digest}, "labels."+label)
				assert.NilError(t, err)
				info, err := e.client.ContentStore().Info(e.nsCtx(), old.ConfigDesc.Digest)
				assert.NilError(t, err)
				assert.Check(t, is.Equal(info.Labels[label], ""))
			}
			e.rootfs("web", chain)
			e.containerWithRootfs("web", "example.com/app:1", "web")
			// The tag moves to the new build.
			_, err := e.svc.Tag(e.ctx, "example.com/app:build-42", "example.com/app:1")
			assert.NilError(t, err)

			rep := e.prune([]string{"dangling=false"})

			assert.Check(t, rep.Err())
			assert.Check(t, e.hasContent(old), "the image the container runs lost its content")
			assert.Check(t, e.hasContent(rebuilt))
			names := e.names()
			assert.Check(t, is.Equal(names["moby-dangling@"+old.Target.Digest.String()], old.Target.Digest))
			assert.Check(t, is.Equal(names["example.com/app:1"], rebuilt.Target.Digest), "the name the container was created with")
			_, kept := names["example.com/app:build-41"]
			assert.Check(t, !kept, "an unused name of the old image stays")
		})
	}
}

// containerWithRootfs creates a container record of ref whose rootfs is the
// snapshot key, as nerdctl and ctr make them.
func (e *env) containerWithRootfs(id, ref, key string) {
	e.t.Helper()
	_, err := e.client.ContainerService().Create(e.nsCtx(), containers.Container{
		ID:          id,
		Image:       ref,
		Runtime:     containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		Spec:        &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte("{}")},
		Snapshotter: snapshotter,
		SnapshotKey: key,
	})
	assert.NilError(e.t, err)
}

// creatingStore creates a container by ref just after the prune's
// deletion number at, or of the record named after, as another client might
// while a prune runs; with collect, the daemon then collects at once, as
// its own scheduler may.
type creatingStore struct {
	images.Store
	e       *env
	at      int32
	after   string
	collect bool
	ref     string
	// create, when set, creates the container instead of a record by ref.
	create  func()
	deletes *atomic.Int32
}

func (s creatingStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	err := s.Store.Delete(ctx, name, opts...)
	if n := s.deletes.Add(1); n == s.at || name == s.after {
		if s.create != nil {
			s.create()
		} else {
			s.e.container("late", s.ref, nil)
		}
		if s.collect {
			assert.NilError(s.e.t, imgleases.Collector{Leases: s.e.client.LeasesService()}.Collect(s.e.nsCtx()))
		}
	}
	return err
}

// TestPruneLooksAgainBeforeContentGoes: a container created by ID while the
// prune deletes keeps its image's content, whether it comes between two
// names or between two dangling records, also when the daemon collects
// right after that image's dangling record, or its last name, went.
func TestPruneLooksAgainBeforeContentGoes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		at      int32
		after   func(c testimage.Image) string
		collect bool
		// asLeft: the store is as docker leaves it, with no dangling
		// records, so the names alone keep the content.
		asLeft bool
	}{
		{name: "between two names", at: 1},
		{
			name:    "after its last name, then a collection, no dangling records",
			after:   func(c testimage.Image) string { return "example.com/c:1" },
			collect: true,
			asLeft:  true,
		},
		{name: "between two dangling records", at: 4},
		{
			name:    "after its dangling record, then a collection",
			after:   func(c testimage.Image) string { return "moby-dangling@" + c.Target.Digest.String() },
			collect: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			a := newImage(t, "a", "example.com/a:1")
			b := newImage(t, "b", "example.com/b:1")
			c := newImage(t, "c", "example.com/c:1")
			e.write(a, b, c)
			if !tc.asLeft {
				e.prune(nil) // adopts all three: each has its dangling record
			}
			var deletes atomic.Int32
			stores := store.FromClient(e.client)
			// Deletes go a:1, b:1, c:1, then the dangling records by digest.
			wrapped := creatingStore{Store: stores.Images, e: e, at: tc.at, collect: tc.collect, ref: c.Target.Digest.String(), deletes: &deletes}
			if tc.after != nil {
				wrapped.after = tc.after(c)
			}
			stores.Images = wrapped
			svc := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter))

			rep, err := svc.Prune(e.ctx, plan.Filters{})
			assert.NilError(t, err)

			assert.Check(t, rep.Err())
			assert.Check(t, e.hasContent(c), "the late container's image lost its content")
			assert.Check(t, is.Equal(e.names()["moby-dangling@"+c.Target.Digest.String()], c.Target.Digest))
			assert.Check(t, e.hasNoContent(a))
			assert.Check(t, e.hasNoContent(b))
			assert.Check(t, is.Len(rep.Warnings, 1), rep.Warnings)
			for _, d := range rep.ImagesDeleted {
				assert.Check(t, d.Deleted != c.Target.Digest.String(), "reported as deleted: %s", d.Deleted)
			}
			assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(uniqueBytes([]testimage.Image{a, b}, []testimage.Image{c}))))
		})
	}
}

// TestPruneGivesACRIImageItsNamesBack: a pod's container created while the
// prune deletes uses a CRI image the plan let go; the last look gives the
// image back every record the prune removed (not a dangling record, which
// `crictl images` would show as one more digest), and its content stays.
func TestPruneGivesACRIImageItsNamesBack(t *testing.T) {
	e := newEnv(t)
	a, c := newImage(t, "a"), newImage(t, "c")
	e.criImage(a, "docker.io/library/a", "1")
	e.criImage(c, "docker.io/library/c", "1")
	chain := e.unpack("docker.io/library/c:1")
	before := e.names()
	var deletes atomic.Int32
	stores := store.FromClient(e.client)
	// The first deletion is one of a's records: c's records all go after
	// it, one at a time.
	stores.Images = creatingStore{Store: stores.Images, e: e, at: 1, deletes: &deletes,
		create: func() { e.criContainer("late", c, "docker.io/library/c:1", chain) }}
	svc := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter), imgsvc.WithDeletesInFlight(1))
	created := map[string]time.Time{}
	list, err := e.client.ImageService().List(e.nsCtx())
	assert.NilError(t, err)
	for _, r := range list {
		created[r.Name] = r.CreatedAt
	}

	rep, err := svc.Prune(e.ctx, plan.Filters{})
	assert.NilError(t, err)

	assert.Check(t, rep.Err())
	want := map[string]digest.Digest{}
	for name, target := range before {
		if target == c.Target.Digest {
			want[name] = target
		}
	}
	assert.Check(t, is.Len(want, 3))
	assert.Check(t, is.DeepEqual(e.names(), want), "c is whole again, a is gone")
	list, err = e.client.ImageService().List(e.nsCtx())
	assert.NilError(t, err)
	for _, r := range list {
		assert.Check(t, is.Equal(plan.CreatedAt(r), created[r.Name]), "%s keeps when it was first made", r.Name)
		assert.Check(t, is.Equal(r.Labels[plan.CRIImageLabel], plan.CRIImageManaged), "%s is CRI's still", r.Name)
	}
	assert.Check(t, e.hasContent(c))
	assert.Check(t, e.hasNoContent(a))
	assert.Check(t, is.Len(rep.Warnings, 1), rep.Warnings)
	for _, d := range rep.ImagesDeleted {
		assert.Check(t, d.Deleted != c.Target.Digest.String(), "reported as deleted: %s", d.Deleted)
		assert.Check(t, !strings.Contains(d.Untagged, "library/c"), "reported as untagged: %s", d.Untagged)
	}
}

// TestPruneChangesNothingWhenAContainerCannotBeRead: a container whose CRI
// metadata does not decode, or whose rootfs is in a snapshotter the daemon
// does not have, fails the prune with its ID, and nothing changes: which
// image it runs is unknown, so no image may go.
func TestPruneChangesNothingWhenAContainerCannotBeRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctr  containers.Container
		want string
	}{
		{
			name: "CRI metadata",
			ctr: containers.Container{ID: "unreadable", Extensions: map[string]typeurl.Any{
				imgcontainers.CRIMetadataExtension: &anypb.Any{TypeUrl: "github.com/containerd/cri/pkg/store/container/Metadata", Value: []byte(`{"Version":"v9"}`)},
			}},
			want: "container unreadable: cannot tell which image it runs",
		},
		{
			name: "snapshotter",
			ctr:  containers.Container{ID: "elsewhere", Snapshotter: "no-such-snapshotter", SnapshotKey: "elsewhere"},
			want: "container elsewhere: its snapshot is in snapshotter no-such-snapshotter, which cannot be read",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			a, b := newImage(t, "a", "example.com/a:1"), newImage(t, "b", "example.com/b:1")
			e.write(a, b)
			tc.ctr.Runtime = containers.RuntimeInfo{Name: "io.containerd.runc.v2"}
			tc.ctr.Spec = &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte("{}")}
			_, err := e.client.ContainerService().Create(e.nsCtx(), tc.ctr)
			assert.NilError(t, err)
			before := e.names()

			f, err := plan.ParseFilters(map[string][]string{"dangling": {"false"}}, time.Now())
			assert.NilError(t, err)
			_, err = e.svc.Prune(e.ctx, f)

			assert.Check(t, is.ErrorContains(err, tc.want))
			assert.Check(t, is.DeepEqual(e.names(), before))
			assert.Check(t, e.hasContent(a) && e.hasContent(b))
		})
	}
}

// TestPruneKeepsImagesOfEngineContainersWithoutTheEngine: a Docker
// Engine's created and stopped containers have no containerd record, only
// a lease named after them that holds their rootfs ("<id>" on a committed
// "<id>-init" on the image's chain); a running one has a record whose
// rootfs is that same stack. Without the engine's API, the prune follows
// both down to the image and keeps it, nameless after its tag moved.
func TestPruneKeepsImagesOfEngineContainersWithoutTheEngine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		record bool
	}{
		{name: "created or stopped: a lease"},
		{name: "running: a record", record: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			used := newImage(t, "used", "example.com/app:1")
			other := newImage(t, "other", "example.com/other:1")
			e.write(used, other)
			chain := e.unpack("example.com/app:1")
			const id = "4c0ffee4c0ffee4c0ffee4c0ffee4c0ffee4c0ffee4c0ffee4c0ffee4c0ffee0"
			lm, sn := e.client.LeasesService(), e.client.SnapshotService(snapshotter)
			_, err := lm.Create(e.nsCtx(), leases.WithID(id))
			assert.NilError(t, err)
			held := leases.WithLease(e.nsCtx(), id)
			_, err = sn.Prepare(held, id+"-init-key", chain)
			assert.NilError(t, err)
			assert.NilError(t, sn.Commit(held, id+"-init", id+"-init-key"))
			_, err = sn.Prepare(held, id, id+"-init")
			assert.NilError(t, err)
			if tc.record {
				e.containerWithRootfs(id, "", id)
			}
			// The tag moves away: only the rootfs tells the image.
			_, err = e.svc.Tag(e.ctx, "example.com/other:1", "example.com/app:1")
			assert.NilError(t, err)

			rep := e.prune([]string{"dangling=false"})

			assert.Check(t, rep.Err())
			assert.Check(t, e.hasContent(used), "the image the engine's container runs lost its content")
			assert.Check(t, is.Equal(e.names()["moby-dangling@"+used.Target.Digest.String()], used.Target.Digest))
		})
	}
}

// stallingStore deletes as its store does, then runs after once the record
// named at went, and blocks every later delete until its context ends: a
// daemon that slowed down mid-prune.
type stallingStore struct {
	images.Store
	at      string
	after   func()
	stalled *atomic.Bool
}

func (s stallingStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	if s.stalled.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	err := s.Store.Delete(ctx, name, opts...)
	if name == s.at {
		s.after()
		s.stalled.Store(true)
	}
	return err
}

// TestPruneLooksAgainAfterItsDeletionsRanOutOfTime: the deletions use up
// their phase (a daemon that slowed down) after a container came to use an
// image the prune let go; the last look still gets a phase of its own, and
// the image gets its name back and keeps its content.
func TestPruneLooksAgainAfterItsDeletionsRanOutOfTime(t *testing.T) {
	e := newEnv(t, imgsvc.WithDanglingRecords(false))
	a, c, z := newImage(t, "a", "example.com/a:1"), newImage(t, "c", "example.com/c:1"), newImage(t, "z", "example.com/z:1")
	e.write(a, c, z)
	stores := store.FromClient(e.client)
	stores.Images = stallingStore{Store: stores.Images, at: "example.com/c:1", stalled: &atomic.Bool{},
		after: func() { e.container("late", c.Target.Digest.String(), nil) }}
	svc := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(false), imgsvc.WithSnapshotter(snapshotter),
		imgsvc.WithDeletesInFlight(1), imgsvc.WithPhaseTimeout(2*time.Second))

	rep, err := svc.Prune(e.ctx, plan.Filters{})

	assert.NilError(t, err)
	assert.Check(t, is.Equal(e.names()["example.com/c:1"], c.Target.Digest), "the late container's image did not get its name back: %v", rep.Failures)
	assert.Check(t, e.hasContent(c), "the late container's image lost its content")
	assert.Check(t, e.hasNoContent(a))
	assert.Check(t, e.hasContent(z), "the record whose delete stalled stays, for the next prune")
}
