//go:build e2e

package node

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/internal/testnode"
)

// byID lists n's images through CRI by their ID.
func byID(t *testing.T, n *testnode.Node) map[string]testnode.Image {
	t.Helper()
	list, err := n.Images()
	assert.NilError(t, err)
	out := map[string]testnode.Image{}
	for _, img := range list {
		slices.Sort(img.RepoTags)
		slices.Sort(img.RepoDigests)
		out[img.ID] = img
	}
	return out
}

// kubeletKeeps is what the kubelet's image garbage collection keeps: every
// pinned image and the image ID of every container, in any state.
func kubeletKeeps(t *testing.T, n *testnode.Node) map[string]bool {
	t.Helper()
	keep := map[string]bool{}
	for id, img := range byID(t, n) {
		if img.Pinned {
			keep[id] = true
		}
	}
	ctrs, err := n.Containers()
	assert.NilError(t, err)
	for _, c := range ctrs {
		keep[c.ImageRef] = true
	}
	return keep
}

// noGhosts checks that every image CRI lists has its content: every record
// of the namespace is whole in the content store, and CRI inspects it.
func noGhosts(t *testing.T, n *testnode.Node) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), testnode.Namespace)
	c, err := client.New(n.Daemon.Address)
	assert.NilError(t, err)
	defer c.Close()
	records, err := c.ImageService().List(ctx)
	assert.NilError(t, err)
	for _, r := range records {
		available, _, _, missing, err := images.Check(ctx, c.ContentStore(), r.Target, platforms.Default())
		assert.Check(t, err, r.Name)
		assert.Check(t, available && len(missing) == 0, "%s lists, but its content is gone: %v", r.Name, missing)
	}
	for id := range byID(t, n) {
		_, err := n.Crictl("inspecti", id)
		assert.Check(t, err)
	}
}

// TestPruneAsTheKubeletKeeps builds a node's store (images pulled through
// CRI, pods on one in five by tag, repo@digest and image ID, a tag pulled
// again onto a new image while its old one runs) twice, prunes one with
// imgprune and the other with `crictl rmi --prune`, and checks what each
// leaves.
func TestPruneAsTheKubeletKeeps(t *testing.T) {
	ctx := context.Background()
	s := testnode.Scenario{Images: 30, UsedEvery: 5}
	ours, theirs := startNode(t), startNode(t)
	made, err := s.Build(ctx, ours, reg)
	assert.NilError(t, err)
	_, err = s.Build(ctx, theirs, reg)
	assert.NilError(t, err)
	before := byID(t, ours)
	keep := kubeletKeeps(t, ours)
	ctrsBefore, err := ours.Containers()
	assert.NilError(t, err)
	movedFrom := made.MovedFrom.ConfigDesc.Digest.String()
	assert.Assert(t, keep[movedFrom], "the moved tag's old image runs")
	assert.Assert(t, is.Len(before, s.Images+3), "workloads, the moved tag's two images and the sandbox image")

	out := prune(t, ours)
	t.Logf("imgprune:\n%s", out)
	_, err = theirs.Crictl("rmi", "--prune")
	assert.NilError(t, err)

	after := byID(t, ours)
	for id, img := range after {
		if !keep[id] {
			t.Logf("kept, though the kubelet would not: %s %v %v", id, img.RepoTags, img.RepoDigests)
		}
	}
	assert.Check(t, is.DeepEqual(slices.Sorted(maps.Keys(after)), slices.Sorted(maps.Keys(keep))), "the kubelet's set, no more, no less")
	for id := range keep {
		assert.Check(t, is.DeepEqual(after[id], before[id]), "image %s kept whole, every name", id)
	}
	ctrsAfter, err := ours.Containers()
	assert.NilError(t, err)
	byContainerID := func(a, b testnode.Container) int { return strings.Compare(a.ID, b.ID) }
	slices.SortFunc(ctrsBefore, byContainerID)
	slices.SortFunc(ctrsAfter, byContainerID)
	assert.Check(t, is.DeepEqual(ctrsAfter, ctrsBefore), "every container as it was, running")
	for _, c := range ctrsAfter {
		assert.Check(t, is.Equal(c.State, "CONTAINER_RUNNING"), c.Metadata.Name)
	}
	var pinned int
	for _, img := range after {
		if img.Pinned {
			pinned++
			assert.Check(t, is.DeepEqual(img.RepoTags, []string{ours.Sandbox}))
		}
	}
	assert.Check(t, is.Equal(pinned, 1), "the sandbox image stays")
	noGhosts(t, ours)

	// crictl's prune keeps the same set but for the moved tag: it goes by
	// the tag, so it keeps the image the tag names now, which nothing runs,
	// and removes the one a container runs.
	movedTo := ""
	for id, img := range before {
		if slices.Contains(img.RepoTags, made.Moved) {
			movedTo = id
		}
	}
	want := maps.Clone(keep)
	delete(want, movedFrom)
	want[movedTo] = true
	assert.Check(t, is.DeepEqual(slices.Sorted(maps.Keys(byID(t, theirs))), slices.Sorted(maps.Keys(want))))

	// Every kept image starts a new container, and a pruned one pulls again.
	pod, err := ours.RunPod("after")
	assert.NilError(t, err)
	i := 0
	for id, img := range after {
		if img.Pinned {
			continue
		}
		_, err := ours.RunContainer(pod, fmt.Sprintf("kept-%d", i), id)
		assert.Check(t, err, "a new container of %v", img.RepoTags)
		i++
	}
	pruned := made.Refs[1]
	assert.NilError(t, ours.Pull(pruned))
	_, err = ours.RunContainer(pod, "pulled-again", pruned)
	assert.Check(t, err)
	noGhosts(t, ours)
}
