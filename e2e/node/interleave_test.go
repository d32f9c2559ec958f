//go:build e2e

package node

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/internal/testimage"
	"github.com/imgprune/imgprune/internal/testnode"
)

// TestPodCreatedWhilePruning: the kubelet starts a pod's container on an
// image the prune planned to remove, after the prune's first deletion and
// before any of that image's records go. The prune's last look sees the
// container through CRI's metadata and gives the image back every record,
// so CRI lists it whole, and the container runs.
func TestPodCreatedWhilePruning(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	made, err := testnode.Scenario{Images: 6, UsedEvery: 100}.Build(ctx, n, reg)
	assert.NilError(t, err)
	late := made.Images["test/app-5:1"] // its names sort after the first one deleted
	lateID := late.ConfigDesc.Digest.String()
	before := byID(t, n)[lateID]
	assert.Assert(t, is.Len(before.RepoTags, 1))
	pod, err := n.RunPod("late")
	assert.NilError(t, err)

	c, err := client.New(n.Daemon.Address)
	assert.NilError(t, err)
	defer c.Close()
	stores := store.FromClient(c)
	var ctrID string
	var createErr error
	stores.Images = testimage.OnFirstDelete(stores.Images, func(string) {
		ctrID, createErr = n.RunContainer(pod, "late", made.Refs[5])
	})
	// One deletion at a time, so that "after the first" is one point.
	svc := imgsvc.New(stores, testnode.Namespace, imgsvc.WithDeletesInFlight(1))
	rep, err := svc.Prune(ctx, plan.Filters{})
	assert.NilError(t, err)
	assert.NilError(t, createErr)
	assert.Check(t, rep.Err())
	assert.Check(t, is.Contains(strings.Join(rep.Warnings, "\n"), "came into use while the prune ran"))
	for _, d := range rep.ImagesDeleted {
		assert.Check(t, d.Deleted != late.Target.Digest.String(), "reported deleted")
	}

	// CRI follows the records' events as they come: its view settles.
	var after map[string]testnode.Image
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if after = byID(t, n); reflect.DeepEqual(after[lateID], before) {
			break
		}
	}
	assert.Check(t, is.DeepEqual(after[lateID], before), "the late pod's image is whole again")
	ctrs, err := n.Containers()
	assert.NilError(t, err)
	var running bool
	for _, ctr := range ctrs {
		if ctr.ID == ctrID {
			running = ctr.State == "CONTAINER_RUNNING"
		}
	}
	assert.Check(t, running, "the late container runs")
	noGhosts(t, n)
	// And a container created from it now, by its name, starts.
	_, err = n.RunContainer(pod, "later", made.Refs[5])
	assert.Check(t, err)
}
