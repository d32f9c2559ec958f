package images_test

import (
	"context"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/protobuf/types/known/anypb"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/daemon/store/embedded"
	"github.com/imgprune/imgprune/internal/testimage"
)

// countingImages counts the writes to the image records.
type countingImages struct {
	images.Store
	creates, updates, deletes int
}

func (c *countingImages) Create(ctx context.Context, img images.Image) (images.Image, error) {
	c.creates++
	return c.Store.Create(ctx, img)
}

func (c *countingImages) Update(ctx context.Context, img images.Image, fieldpaths ...string) (images.Image, error) {
	c.updates++
	return c.Store.Update(ctx, img, fieldpaths...)
}

func (c *countingImages) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	c.deletes++
	return c.Store.Delete(ctx, name, opts...)
}

// countingLeases counts the resources added to leases one by one.
type countingLeases struct {
	leases.Manager
	resources int
}

func (c *countingLeases) AddResource(ctx context.Context, l leases.Lease, r leases.Resource) error {
	c.resources++
	return c.Manager.AddResource(ctx, l, r)
}

// store is an embedded store being seeded for one case.
type store struct {
	t   *testing.T
	ctx context.Context
	e   *embedded.Store
}

func (s store) image(name string, names ...string) testimage.Image {
	img := testimage.New(testimage.WithNames(names...), testimage.WithLayers(testimage.NewLayer(name, 1024), testimage.NewLayer("shared", 512)))
	_, err := img.Write(s.ctx, s.e.Stores().Content, s.e.Stores().Images)
	assert.NilError(s.t, err)
	return img
}

func (s store) dangling(img testimage.Image) {
	_, err := s.e.Stores().Images.Create(s.ctx, images.Image{Name: plan.DanglingName(img.Target.Digest), Target: img.Target})
	assert.NilError(s.t, err)
}

func (s store) container(id, ref string) {
	_, err := s.e.Stores().Containers.Create(s.ctx, containers.Container{
		ID:      id,
		Image:   ref,
		Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		Spec:    &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte("{}")},
	})
	assert.NilError(s.t, err)
}

// TestPruneWritesOnlyTheEndState counts the record writes of prunes: one
// delete per record that goes, one create per target that stays and lacks
// its dangling record, nothing for a target that goes entirely, no lease
// resource per target, and nothing at all on a second prune. A dry run of
// the same store first predicts every removal and the bytes.
func TestPruneWritesOnlyTheEndState(t *testing.T) {
	tests := []struct {
		name             string
		all              bool
		seed             func(s store)
		creates, deletes int
		// updates are last-use stamps: a used target's adopted dangling
		// record is created with its stamp.
		updates int
	}{
		{
			// As docker, nerdctl or ctr leave a store: names only.
			name: "names only",
			all:  true,
			seed: func(s store) {
				s.image("a", "docker.io/library/a:1", "docker.io/library/a:2")
				s.image("b", "docker.io/library/b:1")
				s.image("c", "docker.io/library/c:1")
				d := s.image("d", "docker.io/library/d:1")
				s.container("by-name", "docker.io/library/c:1")
				s.container("by-id", d.Target.Digest.Encoded()[:12])
			},
			creates: 2, // c and d stay and lack a dangling record, stamped as they are made
			deletes: 3, // a:1, a:2, b:1
		},
		{
			name: "dangling records already",
			all:  true,
			seed: func(s store) {
				a := s.image("a", "docker.io/library/a:1")
				s.dangling(a)
				c := s.image("c", "docker.io/library/c:1")
				s.dangling(c)
				s.container("by-name", "docker.io/library/c:1")
			},
			deletes: 2, // a:1 and a's dangling record
			updates: 1, // c's last use
		},
		{
			name: "dangling only",
			seed: func(s store) {
				s.image("a", "docker.io/library/a:1")
				x := s.image("x")
				s.dangling(x)
			},
			creates: 1, // a stays and lacks one
			deletes: 1, // x's dangling record
		},
		{
			name: "nothing to do",
			all:  true,
			seed: func(s store) {
				c := s.image("c", "docker.io/library/c:1")
				s.dangling(c)
				s.container("by-name", "docker.io/library/c:1")
			},
			updates: 1, // c's last use
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := embedded.Open(context.Background(), t.TempDir(), embedded.CreateStore())
			assert.NilError(t, err)
			defer e.Close()
			ctx := namespaces.WithNamespace(context.Background(), "moby")
			tc.seed(store{t: t, ctx: ctx, e: e})

			stores := e.Stores()
			counted := &countingImages{Store: stores.Images}
			lm := &countingLeases{Manager: stores.Leases}
			stores.Images, stores.Leases = counted, lm
			// Not exclusive: the prune holds and looks again as over a daemon.
			svc := imgsvc.New(stores, "moby", imgsvc.WithContainerdRoot(e.Root()))
			f, err := plan.ParseFilters(map[string][]string{"dangling": {map[bool]string{true: "false", false: "true"}[tc.all]}}, testimage.DefaultCreated)
			assert.NilError(t, err)

			dry, err := svc.Prune(ctx, f, prune.DryRun())
			assert.NilError(t, err)
			assert.Check(t, is.Equal(counted.creates+counted.updates+counted.deletes, 0), "a dry run wrote")

			rep, err := svc.Prune(ctx, f)
			assert.NilError(t, err)
			assert.NilError(t, rep.Err())
			assert.Check(t, is.Equal(counted.creates, tc.creates), "creates")
			assert.Check(t, is.Equal(counted.deletes, tc.deletes), "deletes")
			assert.Check(t, is.Equal(counted.updates, tc.updates), "updates")
			assert.Check(t, is.Equal(lm.resources, 0), "lease resources added one by one")
			assert.Check(t, is.DeepEqual(dry.ImagesDeleted, rep.ImagesDeleted))
			assert.Check(t, is.Equal(dry.SpaceReclaimed, rep.SpaceReclaimed))

			*counted = countingImages{Store: counted.Store}
			again, err := svc.Prune(ctx, f)
			assert.NilError(t, err)
			assert.Check(t, is.Len(again.ImagesDeleted, 0))
			// Last uses were stamped a moment ago: nothing to write again.
			assert.Check(t, is.Equal(counted.creates+counted.updates+counted.deletes, 0), "a second prune wrote")
		})
	}
}

// TestTagWritesOnlyTheNewName: a tag of a target that has its dangling
// record reads it and creates the new name alone.
func TestTagWritesOnlyTheNewName(t *testing.T) {
	e, err := embedded.Open(context.Background(), t.TempDir(), embedded.CreateStore())
	assert.NilError(t, err)
	defer e.Close()
	ctx := namespaces.WithNamespace(context.Background(), "moby")
	s := store{t: t, ctx: ctx, e: e}
	a := s.image("a", "docker.io/library/a:1")
	s.dangling(a)
	stores := e.Stores()
	counted := &countingImages{Store: stores.Images}
	stores.Images = counted

	_, err = imgsvc.New(stores, "moby").Tag(ctx, "a:1", "a:2")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(counted.creates, 1), "creates")
	assert.Check(t, is.Equal(counted.updates+counted.deletes, 0))
}
