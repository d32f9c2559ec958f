package reach_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/anypb"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/daemon/reach"
	imgstore "github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/daemon/store/embedded"
)

// store builds objects in an embedded containerd store, as the daemon keeps
// them.
type store struct {
	t   *testing.T
	ctx context.Context
	st  imgstore.Stores
	sn  snapshots.Snapshotter
}

func (s store) blob(name string, labels map[string]string) ocispec.Descriptor {
	data := []byte(name)
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(data), Size: int64(len(data))}
	assert.NilError(s.t, content.WriteBlob(s.ctx, s.st.Content, name, strings.NewReader(name), desc, content.WithLabels(labels)))
	return desc
}

func (s store) snapshot(name, parent string, labels map[string]string) {
	_, err := s.sn.Prepare(s.ctx, name+"-active", parent)
	assert.NilError(s.t, err)
	assert.NilError(s.t, s.sn.Commit(s.ctx, name, name+"-active", snapshots.WithLabels(labels)))
}

func (s store) record(name string, target ocispec.Descriptor, labels map[string]string) images.Image {
	img, err := s.st.Images.Create(s.ctx, images.Image{Name: name, Target: target, Labels: labels})
	assert.NilError(s.t, err)
	return img
}

func (s store) lease(res leases.Resource, opts ...leases.Opt) {
	l, err := s.st.Leases.Create(s.ctx, append([]leases.Opt{leases.WithRandomID()}, opts...)...)
	assert.NilError(s.t, err)
	assert.NilError(s.t, s.st.Leases.AddResource(s.ctx, l, res))
}

func ref(d ocispec.Descriptor) map[string]string {
	return map[string]string{reach.LabelRefContent + ".x": d.Digest.String()}
}

func expiredLabel() string { return time.Now().Add(-time.Hour).Format(time.RFC3339) }

// TestPredictMatchesGarbageCollection builds a store that uses every kind
// of reference containerd 2.4's collector follows, predicts what a
// collection frees, runs containerd's own collection and compares.
func TestPredictMatchesGarbageCollection(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "moby")
	e, err := embedded.Open(ctx, t.TempDir(), embedded.CreateStore())
	assert.NilError(t, err)
	defer e.Close()
	s := store{t: t, ctx: ctx, st: e.Stores(), sn: e.Stores().Snapshotter("native")}
	blob, snapshot, record := s.blob, s.snapshot, s.record

	// Kept: an image, its layer (shared with a pruned image) and its unpacked
	// snapshots; pruned: the other image and its own layer.
	shared := blob("shared layer", nil)
	snapshot("chain-1", "", nil)
	snapshot("chain-2", "chain-1", nil)
	keptCfg := blob("kept config", map[string]string{reach.LabelRefSnapshot + "native": "chain-2"})
	kept := record("kept:1", blob("kept manifest", map[string]string{reach.LabelRefContent + ".l.0": shared.Digest.String(), reach.LabelRefContent + ".config": keptCfg.Digest.String()}), nil)
	own := blob("pruned layer", nil)
	snapshot("pruned-snap", "chain-1", nil)
	prunedCfg := blob("pruned config", map[string]string{reach.LabelRefSnapshot + "native": "pruned-snap"})
	pruned := record("pruned:1", blob("pruned manifest", map[string]string{reach.LabelRefContent + ".l.0": shared.Digest.String(), reach.LabelRefContent + ".l.1": own.Digest.String(), reach.LabelRefContent + ".config": prunedCfg.Digest.String()}), nil)
	// Kept by a root label, by a lease and through it, by a back reference.
	blob("root", map[string]string{reach.LabelRoot: time.Now().Format(time.RFC3339)})
	leased := blob("leased", ref(blob("leased child", nil)))
	flat := blob("flat", ref(blob("flat child, collected", nil)))
	blob("back-referenced", map[string]string{reach.LabelBRefContent: shared.Digest.String()})
	blob("root, by prefix", map[string]string{reach.LabelRoot + ".anything": "1"})
	snapshot("flat-parent", "", nil)
	snapshot("flat-snap", "flat-parent", nil)
	// Not kept: a record that has expired, a label that only looks like a
	// reference, an unreferenced snapshot.
	record("expired:1", blob("expired manifest", nil), map[string]string{reach.LabelExpire: expiredLabel()})
	blob("not a ref", map[string]string{reach.LabelRefContent + "x": kept.Target.Digest.String()})
	snapshot("orphan", "", nil)

	// Image references: expired records kept by a content label, a
	// container label, a sandbox label and a lease; a content blob kept by
	// its back reference to a kept image; an expired record kept by its
	// back reference to kept content; one kept by nothing.
	record("expired, ref by content", blob("target of expired ref by content", nil), map[string]string{reach.LabelExpire: expiredLabel()})
	blob("refs an image", map[string]string{reach.LabelRefImage: "expired, ref by content", reach.LabelRoot: "1"})
	record("expired, ref by container", blob("target of expired ref by container", nil), map[string]string{reach.LabelExpire: expiredLabel()})
	record("expired, ref by sandbox", blob("target of expired ref by sandbox", nil), map[string]string{reach.LabelExpire: expiredLabel()})
	record("expired, leased", blob("target of expired leased", nil), map[string]string{reach.LabelExpire: expiredLabel()})
	blob("back-refs a kept image", map[string]string{reach.LabelBRefImage: "kept:1"})
	blob("back-refs a pruned image", map[string]string{reach.LabelBRefImage: pruned.Name})
	record("expired, back-refs kept content", blob("target of expired back-ref", nil), map[string]string{reach.LabelExpire: expiredLabel(), reach.LabelBRefContent: shared.Digest.String()})
	record("expired, alone", blob("target of expired alone", nil), map[string]string{reach.LabelExpire: expiredLabel(), reach.LabelBRefContent: own.Digest.String()})

	// Conditional snapshot references: kept while the snapshot was used
	// recently enough; the same condition on a snapshot used long ago, and
	// a malformed one, keep nothing.
	recent := time.Now().Add(-10 * time.Minute).Format(time.RFC3339)
	old := time.Now().Add(-3 * time.Hour).Format(time.RFC3339)
	snapshot("cond-recent", "", map[string]string{reach.LabelCondUsedAt: recent})
	snapshot("cond-old", "", map[string]string{reach.LabelCondUsedAt: old})
	snapshot("cond-by-content", "", map[string]string{reach.LabelCondUsedAt: old})
	record("conditional:1", blob("conditional manifest", nil), map[string]string{
		reach.LabelCondSnapshot + ".native":   "usedat<1h|cond-recent",
		reach.LabelCondSnapshot + ".native/x": "usedat<1h|cond-old",
		reach.LabelCondSnapshot + ".native/y": "usedat<=1h|cond-old",
	})
	blob("conditional content", map[string]string{reach.LabelRoot: "1", reach.LabelCondSnapshot + ".native": "usedat<1h,usedat>2h|cond-by-content"})
	snapshot("cond-value-by-prefix", "", map[string]string{reach.LabelCondUsedAt + ".x": recent})
	blob("conditional on a value by prefix", map[string]string{reach.LabelRoot: "1", reach.LabelCondSnapshot + ".native": "usedat<1h|cond-value-by-prefix"})

	// Back references to a container: kept while it exists. A back
	// reference holds even from an image record that is not there, when
	// something references it.
	blob("belongs to a container", map[string]string{reach.LabelBRefContainer: "c1"})
	blob("belongs to no container", map[string]string{reach.LabelBRefContainer: "gone"})
	blob("refs a missing image", map[string]string{reach.LabelRoot: "1", reach.LabelRefImage: "missing"})
	blob("back-refs the missing image", map[string]string{reach.LabelBRefImage: "missing"})

	// A container's snapshot keeps its parents; its labels keep what they
	// reference. A sandbox's labels are roots.
	_, err = s.sn.Prepare(ctx, "container-rw", "chain-1")
	assert.NilError(t, err)
	ctr, err := s.st.Containers.Create(ctx, containers.Container{
		ID: "c1", Runtime: containers.RuntimeInfo{Name: "x"}, Spec: &anypb.Any{}, Snapshotter: "native", SnapshotKey: "container-rw",
		Labels: map[string]string{reach.LabelRefImage: "expired, ref by container"},
	})
	assert.NilError(t, err)
	sandboxBlob := blob("sandbox content", nil)
	_, err = s.st.Sandboxes.Create(ctx, sandbox.Sandbox{ID: "sb1", Runtime: sandbox.RuntimeOpts{Name: "x"}, Labels: map[string]string{
		reach.LabelRefContent: sandboxBlob.Digest.String(), reach.LabelRefImage: "expired, ref by sandbox",
	}})
	assert.NilError(t, err)

	s.lease(leases.Resource{ID: leased.Digest.String(), Type: "content"})
	s.lease(leases.Resource{ID: flat.Digest.String(), Type: "content"}, leases.WithLabel(reach.LabelFlat, "1"))
	s.lease(leases.Resource{ID: "flat-snap", Type: "snapshots/native"}, leases.WithLabel(reach.LabelFlat, "1"))
	s.lease(leases.Resource{ID: "expired, leased", Type: "images"})

	rs := e.Stores()
	before, err := reach.Take(ctx, rs, []containers.Container{ctr}, "native")
	assert.NilError(t, err)
	records, err := s.st.Images.List(ctx)
	assert.NilError(t, err)
	stay := slices.DeleteFunc(records, func(r images.Image) bool { return r.Name == pruned.Name })
	predicted, err := reach.Predict(ctx, rs, before, stay)
	assert.NilError(t, err)

	assert.NilError(t, s.st.Images.Delete(ctx, pruned.Name))
	assert.NilError(t, e.Collect(ctx))
	after, err := reach.Take(ctx, rs, []containers.Container{ctr}, "native")
	assert.NilError(t, err)

	names := map[digest.Digest]string{}
	for _, r := range records {
		names[r.Target.Digest] = r.Name + " (target)"
	}
	var wantContent, gotContent []string
	for d := range before.Content {
		if _, ok := after.Content[d]; !ok {
			wantContent = append(wantContent, d.String())
		}
	}
	for d := range predicted.Unreachable {
		gotContent = append(gotContent, d.String())
	}
	slices.Sort(wantContent)
	slices.Sort(gotContent)
	assert.Check(t, is.DeepEqual(gotContent, wantContent))
	assert.Check(t, is.Len(wantContent, 9), "pruned manifest, config and layer, flat child, expired manifest, not-a-ref, back-refs a pruned image, target of expired alone, belongs to no container")
	var wantSnaps, gotSnaps []string
	for k := range before.Snapshots {
		if _, ok := after.Snapshots[k]; !ok {
			wantSnaps = append(wantSnaps, k.Key)
		}
	}
	for k := range predicted.Snapshots {
		gotSnaps = append(gotSnaps, k.Key)
	}
	slices.Sort(wantSnaps)
	slices.Sort(gotSnaps)
	assert.Check(t, is.DeepEqual(gotSnaps, wantSnaps))
	assert.Check(t, is.DeepEqual(wantSnaps, []string{"cond-old", "orphan", "pruned-snap"}))
}

// countingSnapshotter counts the usages asked of it.
type countingSnapshotter struct {
	snapshots.Snapshotter
	asked *atomic.Int32
}

func (c countingSnapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	c.asked.Add(1)
	return c.Snapshotter.Usage(ctx, key)
}

// TestPredictorAsksOnce: predictions from one graph ask each snapshot's
// usage once, and agree with Predict's.
func TestPredictorAsksOnce(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "moby")
	e, err := embedded.Open(ctx, t.TempDir(), embedded.CreateStore())
	assert.NilError(t, err)
	defer e.Close()
	s := store{t: t, ctx: ctx, st: e.Stores(), sn: e.Stores().Snapshotter("native")}
	var records []images.Image
	for _, n := range []string{"a", "b", "c"} {
		s.snapshot("chain-"+n, "", nil)
		cfg := s.blob(n+" config", map[string]string{reach.LabelRefSnapshot + "native": "chain-" + n})
		records = append(records, s.record(n+":1", s.blob(n+" manifest", map[string]string{reach.LabelRefContent + ".config": cfg.Digest.String()}), nil))
	}
	rs := e.Stores()
	asked := new(atomic.Int32)
	counted := rs
	counted.Snapshotter = func(name string) snapshots.Snapshotter {
		return countingSnapshotter{Snapshotter: rs.Snapshotter(name), asked: asked}
	}
	g, err := reach.Take(ctx, rs, nil, "native")
	assert.NilError(t, err)

	p := reach.NewPredictor(counted, g)
	for k := len(records); k >= 0; k-- {
		got, err := p.Predict(ctx, records[:k])
		assert.NilError(t, err)
		want, err := reach.Predict(ctx, rs, g, records[:k])
		assert.NilError(t, err)
		assert.Check(t, is.DeepEqual(got, want), "keeping %d", k)
	}
	assert.Check(t, is.Equal(asked.Load(), int32(3)), "each of the 3 snapshots once")
}
