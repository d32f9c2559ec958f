//go:build e2e

package e2e

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/containerd/v2/client"
	dockerclient "github.com/moby/moby/client"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/internal/testengine"
	"github.com/imgprune/imgprune/internal/testimage"
)

// TestEngineContainerCreatedWhilePruning: docker creates a container on an
// image the prune planned to remove, after the prune's first deletion and
// before that image's name goes. The prune asks the Engine for its
// containers once, when it plans; its last look finds the new container by
// the writable snapshot the Engine's lease holds, and the image keeps its
// content, so the container starts. The images no container uses go.
func TestEngineContainerCreatedWhilePruning(t *testing.T) {
	ctx := context.Background()
	c := newCLI(t, engineSock)
	c.ok("load", "-i", archive)
	t.Cleanup(func() {
		c.run("", "rm", "-f", "late")
		c.run("", "image", "prune", "-a", "-f")
	})

	ctrd, err := client.New(ctrdAddress)
	assert.NilError(t, err)
	defer ctrd.Close()
	docker, err := dockerclient.New(dockerclient.WithHost("unix://" + engineSock))
	assert.NilError(t, err)
	defer docker.Close()
	listed := &atomic.Int32{}
	stores := store.FromClient(ctrd)
	var late, createErr string
	stores.Images = testimage.OnFirstDelete(stores.Images, func(deleted string) {
		late = "docker.io/e2e/other:1"
		if deleted == late {
			late = "docker.io/e2e/app:1"
		}
		// Not c.ok: this runs on the prune's goroutine.
		if _, stderr, code := c.exec("", "create", "--name", "late", late); code != 0 {
			createErr = stderr
		}
	})
	// One deletion at a time, so that "after the first" is one point.
	svc := imgsvc.New(stores, imgsvc.MobyNamespace, imgsvc.WithDeletesInFlight(1),
		imgsvc.WithContainerSource(imgcontainers.Docker{Client: testengine.CountingClient{DockerClient: docker, Listed: listed}}))

	rep, err := svc.Prune(ctx, plan.Filters{})

	assert.NilError(t, err)
	assert.Assert(t, is.Equal(createErr, ""))
	assert.Check(t, rep.Err())
	assert.Check(t, is.Equal(listed.Load(), int32(1)), "the Engine's containers are listed once")
	assert.Check(t, is.Contains(strings.Join(rep.Warnings, "\n"), "came into use while the prune ran"))
	lateID := map[string]string{"docker.io/e2e/other:1": other.Target.Digest.String(), "docker.io/e2e/app:1": app.Target.Digest.String()}[late]
	for _, d := range rep.ImagesDeleted {
		assert.Check(t, d.Deleted != lateID, "the late container's image is reported deleted")
	}
	_, code := c.run("", "image", "inspect", lateID)
	assert.Check(t, is.Equal(code, 0), "the late container's image is gone")
	_, code = c.run("", "image", "inspect", old.Target.Digest.String())
	assert.Check(t, code != 0, "e2e/old:1 should be gone")
	c.ok("start", "late")
	c.ok("wait", "late")
}
