package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/moby/moby/api/types/container"
	dockerclient "github.com/moby/moby/client"
	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/internal/testengine"
)

// fakeEngine answers the Docker Engine API calls imgprune makes: the
// version ping, the container listing and the inspection of a container,
// whose Config.Image is typed[id]. It counts the inspections in inspected.
func fakeEngine(t *testing.T, containers []container.Summary, status int, typed map[string]string, inspected *[]string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.51")
		switch {
		case r.URL.Path == "/_ping":
			w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/containers/json") && r.URL.Query().Get("all") == "1":
			if status != http.StatusOK {
				http.Error(w, `{"message":"engine is down"}`, status)
				return
			}
			json.NewEncoder(w).Encode(containers)
		case strings.HasSuffix(r.URL.Path, "/json") && strings.Contains(r.URL.Path, "/containers/"):
			id := path.Base(path.Dir(r.URL.Path))
			image, ok := typed[id]
			if !ok {
				http.NotFound(w, r)
				return
			}
			*inspected = append(*inspected, id)
			json.NewEncoder(w).Encode(container.InspectResponse{ID: id, Config: &container.Config{Image: image}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return "tcp://" + srv.Listener.Addr().String()
}

// TestPruneKeepsImagesOfDockerContainers: a Docker Engine's stopped
// containers have no containerd record; their images stay all the same.
func TestPruneKeepsImagesOfDockerContainers(t *testing.T) {
	byName := newImage(t, "web", "docker.io/library/web:1")
	byID := newImage(t, "db", "docker.io/library/db:1", "docker.io/library/db:2")
	unused := newImage(t, "old", "docker.io/library/old:1")
	// Created as app:1, whose name has since moved to a new build: the
	// engine lists it by its image ID, and docker's own prune keeps app:1.
	moved := newImage(t, "moved", "docker.io/library/app:old")
	rebuilt := newImage(t, "rebuilt", "docker.io/library/app:1")
	var inspected []string
	host := fakeEngine(t, []container.Summary{
		{ID: "web", Image: "web:1", ImageID: byName.Target.Digest.String(), State: "exited"},
		{ID: "db", Image: byID.Target.Digest.String(), ImageID: byID.Target.Digest.String(), State: "created"},
		{ID: "app", Image: moved.Target.Digest.String(), ImageID: moved.Target.Digest.String(), State: "exited"},
	}, http.StatusOK, map[string]string{"db": byID.Target.Digest.String(), "app": "app:1"}, &inspected)
	docker, err := dockerclient.New(dockerclient.WithHost(host))
	assert.NilError(t, err)
	defer docker.Close()
	e := newEnv(t, imgsvc.WithContainerSource(imgcontainers.Docker{Client: docker}))
	e.write(byName, byID, unused, moved, rebuilt)

	rep := e.prune([]string{"dangling=false"})

	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(unused.Size())))
	names := e.names()
	assert.Check(t, is.Contains(names, "docker.io/library/web:1"))
	assert.Check(t, is.Contains(names, "docker.io/library/db:2"))
	assert.Check(t, e.hasContent(byName))
	assert.Check(t, e.hasContent(byID))
	assert.Check(t, e.hasNoContent(unused))
	assert.Check(t, is.Contains(names, "docker.io/library/app:1"), "the name the moved container was created with")
	assert.Check(t, e.hasContent(moved))
	assert.Check(t, e.hasContent(rebuilt))
	// Only containers the engine lists by image ID are inspected, at each
	// look at the containers.
	assert.Check(t, len(inspected) > 0)
	for _, id := range inspected {
		assert.Check(t, id == "db" || id == "app", "inspected %s", id)
	}
}

// TestPruneRefusesWhenDockerCannotBeAsked: without the engine's containers
// the prune cannot know what is used: it fails and changes nothing.
func TestPruneRefusesWhenDockerCannotBeAsked(t *testing.T) {
	e := newEnv(t)
	img := newImage(t, "app", "docker.io/library/app:1")
	e.write(img)
	before := e.names()
	host := fakeEngine(t, nil, http.StatusInternalServerError, nil, nil)

	_, stderr, code := e.run(t, "--docker-host", host, "prune", "-a", "-f")

	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(stderr, "list Docker's containers"))
	assert.Check(t, is.DeepEqual(e.names(), before))
	assert.Check(t, e.hasContent(img))
}

// flakySource lists no container answers times, then fails, as a source
// of containers that stops answering while a prune runs.
type flakySource struct {
	answers int32
	listed  *atomic.Int32
}

func (f flakySource) Containers(context.Context, []containers.Container) ([]plan.Container, error) {
	if f.listed.Add(1) > f.answers {
		return nil, errors.New("the source is down")
	}
	return nil, nil
}

// envListingOnce is an env with a source of containers that lists once,
// and fails from then on, until listed is reset.
func envListingOnce(t *testing.T) (*env, *atomic.Int32) {
	t.Helper()
	listed := &atomic.Int32{}
	return newEnv(t, imgsvc.WithContainerSource(flakySource{answers: 1, listed: listed})), listed
}

// TestPruneAsksTheEngineOnce: a prune lists a Docker Engine's containers
// once, when it plans, since that listing costs the Engine about
// containers × images; its last look reads what the Engine created since
// from the leases, and an Engine that stopped answering after the first
// listing stops nothing.
func TestPruneAsksTheEngineOnce(t *testing.T) {
	host := fakeEngine(t, nil, http.StatusOK, nil, nil)
	docker, err := dockerclient.New(dockerclient.WithHost(host))
	assert.NilError(t, err)
	t.Cleanup(func() { docker.Close() })
	listed := &atomic.Int32{}
	e := newEnv(t, imgsvc.WithContainerSource(imgcontainers.Docker{Client: testengine.CountingClient{DockerClient: docker, Listed: listed}}))
	img := newImage(t, "a", "example.com/a:1")
	e.write(img)

	rep := e.prune([]string{"dangling=false"})

	assert.Check(t, rep.Err())
	assert.Check(t, is.Len(rep.ImagesDeleted, 2))
	assert.Check(t, is.Len(e.names(), 0))
	assert.Check(t, e.hasNoContent(img))
	assert.Check(t, is.Equal(listed.Load(), int32(1)))
}

// TestPruneKeepsDanglingRecordsWhenContainersCannotBeListedAgain: when the
// last look at the containers fails, no content goes: what lost a record
// gets its dangling record back, whether it had one or the store was as
// docker leaves it; the names went, and the next prune finishes the job.
func TestPruneKeepsDanglingRecordsWhenContainersCannotBeListedAgain(t *testing.T) {
	for _, tc := range []struct {
		name    string
		adopted bool
	}{
		{name: "its dangling record went", adopted: true},
		{name: "it had none", adopted: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, listed := envListingOnce(t)
			img := newImage(t, "a", "example.com/a:1")
			e.write(img)
			if tc.adopted {
				e.prune(nil) // adopts the target: it has its dangling record
			}
			listed.Store(0)

			rep := e.prune([]string{"dangling=false"})

			assert.Check(t, is.Error(rep.Err(), "pruned 1 of 1 images; stopped early, 1 record left for the next prune"))
			assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(0)))
			assert.Check(t, is.DeepEqual(e.names(), map[string]digest.Digest{"moby-dangling@" + img.Target.Digest.String(): img.Target.Digest}))
			assert.Check(t, e.hasContent(img))
		})
	}
}

// TestPruneGivesACRIImageItsRecordsWhenContainersCannotBeListedAgain: when
// the last look fails, a CRI image that lost its records gets them all back
// (no dangling record, which `crictl images` would show as a digest), with
// its content, for the next prune.
func TestPruneGivesACRIImageItsRecordsWhenContainersCannotBeListedAgain(t *testing.T) {
	e, _ := envListingOnce(t)
	img := newImage(t, "a")
	e.criImage(img, "docker.io/library/a", "1")
	before := e.names()

	rep := e.prune([]string{"dangling=false"})

	assert.Check(t, is.ErrorContains(rep.Err(), "3 records left for the next prune"))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(0)))
	assert.Check(t, is.Len(before, 3))
	assert.Check(t, is.DeepEqual(e.names(), before))
	assert.Check(t, e.hasContent(img))
}
