package images

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/anypb"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// TestPredictMatchesGarbageCollection builds a store that uses every kind
// of reference containerd's collector follows, predicts what a collection
// frees, runs containerd's own collection and compares.
func TestPredictMatchesGarbageCollection(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "moby")
	e, err := OpenEmbedded(ctx, t.TempDir(), CreateStore())
	assert.NilError(t, err)
	defer e.Close()
	st := e.Stores()
	sn := st.Snapshotter("native")

	blob := func(name string, labels map[string]string) ocispec.Descriptor {
		data := []byte(name)
		desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(data), Size: int64(len(data))}
		assert.NilError(t, content.WriteBlob(ctx, st.Content, name, strings.NewReader(name), desc, content.WithLabels(labels)))
		return desc
	}
	snapshot := func(name, parent string, labels map[string]string) {
		_, err := sn.Prepare(ctx, name+"-active", parent)
		assert.NilError(t, err)
		assert.NilError(t, sn.Commit(ctx, name, name+"-active", snapshots.WithLabels(labels)))
	}
	record := func(name string, target ocispec.Descriptor, labels map[string]string) images.Image {
		img, err := st.Images.Create(ctx, images.Image{Name: name, Target: target, Labels: labels})
		assert.NilError(t, err)
		return img
	}
	ref := func(d ocispec.Descriptor) map[string]string {
		return map[string]string{gcRefContent + ".x": d.Digest.String()}
	}

	// Kept: an image, its layer (shared with a pruned image) and its unpacked
	// snapshots; pruned: the other image and its own layer.
	shared := blob("shared layer", nil)
	snapshot("chain-1", "", nil)
	snapshot("chain-2", "chain-1", nil)
	keptCfg := blob("kept config", map[string]string{gcRefSnap + "native": "chain-2"})
	kept := record("kept:1", blob("kept manifest", map[string]string{gcRefContent + ".l.0": shared.Digest.String(), gcRefContent + ".config": keptCfg.Digest.String()}), nil)
	own := blob("pruned layer", nil)
	snapshot("pruned-snap", "chain-1", nil)
	prunedCfg := blob("pruned config", map[string]string{gcRefSnap + "native": "pruned-snap"})
	pruned := record("pruned:1", blob("pruned manifest", map[string]string{gcRefContent + ".l.0": shared.Digest.String(), gcRefContent + ".l.1": own.Digest.String(), gcRefContent + ".config": prunedCfg.Digest.String()}), nil)
	// Kept by a root label, by a lease and through it, by a back reference.
	blob("root", map[string]string{gcRoot: time.Now().Format(time.RFC3339)})
	leased := blob("leased", ref(blob("leased child", nil)))
	flat := blob("flat", ref(blob("flat child, collected", nil)))
	blob("back-referenced", map[string]string{gcBRefContent: shared.Digest.String()})
	blob("root, by prefix", map[string]string{gcRoot + ".anything": "1"})
	snapshot("flat-parent", "", nil)
	snapshot("flat-snap", "flat-parent", nil)
	// Not kept: a record that has expired, a label that only looks like a
	// reference, an unreferenced snapshot.
	record("expired:1", blob("expired manifest", nil), map[string]string{gcExpire: time.Now().Add(-time.Hour).Format(time.RFC3339)})
	blob("not a ref", map[string]string{gcRefContent + "x": kept.Target.Digest.String()})
	snapshot("orphan", "", nil)
	// A container's snapshot keeps its parents.
	_, err = sn.Prepare(ctx, "container-rw", "chain-1")
	assert.NilError(t, err)
	ctr, err := st.Containers.Create(ctx, containers.Container{ID: "c1", Runtime: containers.RuntimeInfo{Name: "x"}, Spec: &anypb.Any{}, Snapshotter: "native", SnapshotKey: "container-rw"})
	assert.NilError(t, err)
	for _, l := range []struct {
		res  leases.Resource
		opts []leases.Opt
	}{
		{leases.Resource{ID: leased.Digest.String(), Type: "content"}, []leases.Opt{leases.WithRandomID()}},
		{leases.Resource{ID: flat.Digest.String(), Type: "content"}, []leases.Opt{leases.WithRandomID(), leases.WithLabel(gcFlat, "1")}},
		{leases.Resource{ID: "flat-snap", Type: "snapshots/native"}, []leases.Opt{leases.WithRandomID(), leases.WithLabel(gcFlat, "1")}},
	} {
		lease, err := st.Leases.Create(ctx, l.opts...)
		assert.NilError(t, err)
		assert.NilError(t, st.Leases.AddResource(ctx, lease, l.res))
	}

	svc := NewEmbedded(e, "moby", WithSnapshotter("native"))
	before, err := svc.takeInventory(ctx, []containers.Container{ctr})
	assert.NilError(t, err)
	records, err := st.Images.List(ctx)
	assert.NilError(t, err)
	var stay []images.Image
	for _, r := range records {
		if r.Name != pruned.Name {
			stay = append(stay, r)
		}
	}
	predicted, err := svc.predict(ctx, before, stay)
	assert.NilError(t, err)

	assert.NilError(t, st.Images.Delete(ctx, pruned.Name))
	assert.NilError(t, e.Collect(ctx))
	after, err := svc.takeInventory(ctx, []containers.Container{ctr})
	assert.NilError(t, err)

	var wantContent []string
	for d := range before.content {
		if _, ok := after.content[d]; !ok {
			wantContent = append(wantContent, d.String())
		}
	}
	var gotContent []string
	for d := range predicted.unreachable {
		gotContent = append(gotContent, d.String())
	}
	assert.Check(t, is.DeepEqual(sortedStrings(gotContent), sortedStrings(wantContent)))
	assert.Check(t, is.Len(wantContent, 6), "pruned manifest, config and layer, flat child, expired manifest, not-a-ref")
	var wantSnaps, gotSnaps []string
	for k := range before.snapshots {
		if _, ok := after.snapshots[k]; !ok {
			wantSnaps = append(wantSnaps, k.key)
		}
	}
	for k := range predicted.snapshots {
		gotSnaps = append(gotSnaps, k.key)
	}
	assert.Check(t, is.DeepEqual(sortedStrings(gotSnaps), sortedStrings(wantSnaps)))
	assert.Check(t, is.DeepEqual(sortedStrings(wantSnaps), []string{"orphan", "pruned-snap"}))
}

func sortedStrings(s []string) []string {
	out := append([]string{}, s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
