package containers

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// engine answers as a Docker Engine's API would.
type engine struct {
	list      []container.Summary
	listings  int
	typed     map[string]string
	inspected []string
}

func (e *engine) ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error) {
	e.listings++
	return client.ContainerListResult{Items: e.list}, nil
}

func (e *engine) ContainerInspect(_ context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	e.inspected = append(e.inspected, id)
	image, ok := e.typed[id]
	if !ok {
		return client.ContainerInspectResult{}, errdefs.ErrNotFound.WithMessage("no such container: " + id)
	}
	if image == "" {
		return client.ContainerInspectResult{}, errors.New("engine is down")
	}
	return client.ContainerInspectResult{Container: container.InspectResponse{ID: id, Config: &container.Config{Image: image}}}, nil
}

func TestDockerInspectsOnlyContainersListedByID(t *testing.T) {
	moved, web := digest.FromString("moved"), digest.FromString("web")
	e := &engine{
		list: []container.Summary{
			{ID: "web", Image: "web:1", ImageID: web.String()},
			{ID: "moved", Image: moved.String(), ImageID: moved.String()},
		},
		typed: map[string]string{"moved": "app:1"},
	}
	got, err := Docker{Client: e}.Containers(context.Background(), nil)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(got, []plan.Container{
		{ID: "web", Source: "docker", Image: "web:1", ImageID: web},
		{ID: "moved", Source: "docker", Image: "app:1", ImageID: moved},
	}))
	assert.Check(t, is.DeepEqual(e.inspected, []string{"moved"}))
}

func TestDockerInspectFailures(t *testing.T) {
	moved := digest.FromString("moved")
	listed := []container.Summary{{ID: "c1", Image: moved.String(), ImageID: moved.String()}}

	// Removed since the listing: the listing's image ID is kept.
	got, err := Docker{Client: &engine{list: listed}}.Containers(context.Background(), nil)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(got, []plan.Container{{ID: "c1", Source: "docker", Image: moved.String(), ImageID: moved}}))

	// Any other failure fails the listing: a prune must know the containers.
	_, err = Docker{Client: &engine{list: listed, typed: map[string]string{"c1": ""}}}.Containers(context.Background(), nil)
	assert.Check(t, is.ErrorContains(err, "inspect Docker container c1"))
}

// leaseManager stands for a store's leases where a test only needs a
// Rootfs that would read them.
type leaseManager struct{ leases.Manager }

// TestAgainRecallsTheEngine: a second listing takes the Engine's
// containers from the first only where the rootfs source reads the leases,
// which show what the Engine created since.
func TestAgainRecallsTheEngine(t *testing.T) {
	web := digest.FromString("web")
	first := []plan.Container{
		{ID: "web", Source: "docker", Image: "web:1", ImageID: web},
		{ID: "pod", Source: "cri", Image: "pause:3"},
	}
	snapshotter := func(string) snapshots.Snapshotter { return nil }
	for _, tc := range []struct {
		name     string
		rootfs   []Source
		want     []plan.Container
		listings int
	}{
		{
			name:   "the rootfs source reads the leases",
			rootfs: []Source{Rootfs{Snapshotter: snapshotter, Leases: leaseManager{}}},
			want:   first[:1],
		},
		{
			name:     "the rootfs source reads no leases",
			rootfs:   []Source{Rootfs{Snapshotter: snapshotter}},
			want:     []plan.Container{{ID: "new", Source: "docker", Image: "new:1"}},
			listings: 1,
		},
		{
			name:     "no rootfs source",
			want:     []plan.Container{{ID: "new", Source: "docker", Image: "new:1"}},
			listings: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &engine{list: []container.Summary{{ID: "new", Image: "new:1"}}}
			sources := Again(first, append([]Source{Docker{Client: e}}, tc.rootfs...)...)
			assert.Assert(t, is.Len(sources, 1+len(tc.rootfs)))
			got, err := sources[0].Containers(context.Background(), nil)
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(got, tc.want))
			assert.Check(t, is.Equal(e.listings, tc.listings))
		})
	}
}
