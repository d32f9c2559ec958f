package integration

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	dockerclient "github.com/moby/moby/client"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
)

// fakeEngine answers the two Docker Engine API calls imgprune makes: the
// version ping and the container listing.
func fakeEngine(t *testing.T, containers []container.Summary, status int) string {
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
	host := fakeEngine(t, []container.Summary{
		{ID: "web", Image: "web:1", ImageID: byName.Target.Digest.String(), State: "exited"},
		{ID: "db", Image: byID.Target.Digest.String(), ImageID: byID.Target.Digest.String(), State: "created"},
	}, http.StatusOK)
	docker, err := dockerclient.New(dockerclient.WithHost(host))
	assert.NilError(t, err)
	defer docker.Close()
	e := newEnv(t, imgsvc.WithContainerLister(imgsvc.DockerContainers{Client: docker}))
	e.write(byName, byID, unused)

	rep := e.prune([]string{"dangling=false"})

	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(unused.Size())))
	names := e.names()
	assert.Check(t, is.Contains(names, "docker.io/library/web:1"))
	assert.Check(t, is.Contains(names, "docker.io/library/db:2"))
	assert.Check(t, e.hasContent(byName))
	assert.Check(t, e.hasContent(byID))
	assert.Check(t, e.hasNoContent(unused))
}

// TestPruneRefusesWhenDockerCannotBeAsked: without the engine's containers
// the prune cannot know what is used: it fails and changes nothing.
func TestPruneRefusesWhenDockerCannotBeAsked(t *testing.T) {
	e := newEnv(t)
	img := newImage(t, "app", "docker.io/library/app:1")
	e.write(img)
	before := e.names()
	host := fakeEngine(t, nil, http.StatusInternalServerError)

	_, stderr, code := e.run(t, "--docker-host", host, "prune", "-a", "-f")

	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(stderr, "list Docker's containers"))
	assert.Check(t, is.DeepEqual(e.names(), before))
	assert.Check(t, e.hasContent(img))
}
