package integration

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/internal/testimage"
)

// The model test drives random sequences of loads, tags, untags, container
// creations and removals, and prunes through the service, and after every
// step compares the store with a small model of the rules:
//
//   - the names are the model's: a load or a tag moves a name, an untag
//     removes it, a prune -a removes every name of an unused target and
//     keeps, of a used one, at least the names its containers were created
//     by; a dangling-only prune removes no name; a label filter leaves the
//     targets it does not select alone;
//   - a target stays while any record names it, and a used target always
//     stays;
//   - the content in the namespace is exactly the content of the targets
//     that stay: nothing lost, nothing left that no record reaches.
//
// A target is used by every container created from it (its rootfs sits on
// its chain, so it keeps it after its tag moved), and by the containers
// created by a name that now points to it.

// modelNames are the names the sequences use.
var modelNames = []string{"example.com/m/a:1", "example.com/m/a:2", "example.com/m/b:1"}

// The ways a container names its image.
const (
	byName    = "name"
	byID      = "id"
	byShortID = "short-id"
	byDigest  = "digest"
	byCRI     = "cri"
)

var containerKinds = []string{byName, byID, byShortID, byDigest, byCRI}

type modelContainer struct {
	kind   string
	name   string // the name it was created by (by name, CRI)
	target int    // the image it was created from
}

type storeModel struct {
	pool    []testimage.Image
	names   map[string]int
	present map[int]bool
	ctrs    map[string]modelContainer
	// unpacked are the targets a load unpacked: containers run on them.
	unpacked map[int]bool
}

// used are the targets containers use.
func (m *storeModel) used() map[int]bool {
	u := map[int]bool{}
	for _, c := range m.ctrs {
		u[c.target] = true
		if i, ok := m.names[c.name]; ok && c.name != "" {
			u[i] = true
		}
	}
	return u
}

func (m *storeModel) namesOf(i int) []string {
	var out []string
	for n, t := range m.names {
		if t == i {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// modelPool is the images the sequences load: each its own layers, so its
// own chain and content.
func modelPool() []testimage.Image {
	var pool []testimage.Image
	for i := range 4 {
		pool = append(pool, testimage.New(testimage.WithLabels(map[string]string{"tier": strconv.Itoa(i % 2)}),
			testimage.WithLayers(testimage.NewLayer(fmt.Sprintf("model/%d", i), 2048))))
	}
	return pool
}

func chainOf(img testimage.Image) string {
	var diffIDs []digest.Digest
	for _, l := range img.Layers {
		diffIDs = append(diffIDs, l.Desc.Digest)
	}
	return identity.ChainID(diffIDs).String()
}

// modelSequences is how many sequences run: IMGPRUNE_MODEL_SEQUENCES for
// more.
func modelSequences(t *testing.T) int {
	if v := os.Getenv("IMGPRUNE_MODEL_SEQUENCES"); v != "" {
		n, err := strconv.Atoi(v)
		assert.NilError(t, err)
		return n
	}
	return 200
}

// TestModel runs the sequences, each in its own namespace, from a seed the
// test prints (IMGPRUNE_MODEL_SEED reruns them).
func TestModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("IMGPRUNE_MODEL_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		assert.NilError(t, err)
	}
	t.Logf("sequences from IMGPRUNE_MODEL_SEED=%d", seed)
	pool := modelPool()
	archives := map[string][]byte{}
	archive := func(i int, name string) []byte {
		key := fmt.Sprint(i, name)
		if b, ok := archives[key]; ok {
			return b
		}
		img := pool[i]
		img.Names = []string{name}
		var buf bytes.Buffer
		assert.NilError(t, testimage.WriteArchive(&buf, img))
		archives[key] = buf.Bytes()
		return archives[key]
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	for s := range modelSequences(t) {
		if !t.Run(fmt.Sprint(s), func(t *testing.T) {
			e := newEnv(t)
			defer e.dropNamespace()
			m := &storeModel{pool: pool, names: map[string]int{}, present: map[int]bool{}, ctrs: map[string]modelContainer{}, unpacked: map[int]bool{}}
			for step := range 8 {
				what := m.step(t, e, rng, archive, step)
				// A target that went took its snapshots with it.
				maps.DeleteFunc(m.unpacked, func(i int, _ bool) bool { return !m.present[i] })
				e.checkModel(t, m, what)
				if t.Failed() {
					return
				}
			}
		}) {
			return
		}
	}
}

// step does one random thing to the store and to the model, and says what.
func (m *storeModel) step(t *testing.T, e *env, rng *rand.Rand, archive func(int, string) []byte, step int) string {
	unpacked := slices.Sorted(maps.Keys(m.unpacked))
	names := slices.Sorted(maps.Keys(m.names))
	ctrIDs := slices.Sorted(maps.Keys(m.ctrs))
	switch op := rng.IntN(11); {
	case op < 3 || len(unpacked) == 0:
		i, name := rng.IntN(len(m.pool)), modelNames[rng.IntN(len(modelNames))]
		_, err := e.svc.Load(e.ctx, bytes.NewReader(archive(i, name)))
		assert.NilError(t, err)
		m.names[name], m.present[i], m.unpacked[i] = i, true, true
		return fmt.Sprintf("load %d as %s", i, name)
	case op == 10:
		// As another tool pulls: a name record, no dangling record, not
		// unpacked; the name moves if it was another image's.
		i, name := rng.IntN(len(m.pool)), modelNames[rng.IntN(len(modelNames))]
		img := m.pool[i]
		img.Names = nil
		e.write(img)
		_, err := e.client.ImageService().Update(e.nsCtx(), images.Image{Name: name, Target: img.Target}, "target")
		if errdefs.IsNotFound(err) {
			_, err = e.client.ImageService().Create(e.nsCtx(), images.Image{Name: name, Target: img.Target})
		}
		assert.NilError(t, err)
		if j, ok := m.names[name]; ok && j != i && !e.keeps(m, j, name) {
			// The old target lost its last record: another tool's doing.
			e.collect()
			delete(m.present, j)
		}
		m.names[name], m.present[i] = i, true
		return fmt.Sprintf("another tool writes %d as %s", i, name)
	case op == 3 && len(names) > 0:
		src, dst := names[rng.IntN(len(names))], modelNames[rng.IntN(len(modelNames))]
		_, err := e.svc.Tag(e.ctx, src, dst)
		assert.NilError(t, err)
		m.names[dst] = m.names[src]
		return fmt.Sprintf("tag %s %s", src, dst)
	case op == 4 && len(names) > 0:
		name := names[rng.IntN(len(names))]
		if !e.keeps(m, m.names[name], name) {
			return "no untag of " + name + ": its target's last record"
		}
		// As another tool untags.
		assert.NilError(t, e.client.ImageService().Delete(e.nsCtx(), name))
		delete(m.names, name)
		return "untag " + name
	case op < 7:
		i := unpacked[rng.IntN(len(unpacked))]
		img := m.pool[i]
		kind := containerKinds[rng.IntN(len(containerKinds))]
		own := m.namesOf(i)
		if (kind == byName || kind == byCRI) && len(own) == 0 {
			kind = byID
		}
		id := fmt.Sprintf("c%d", step)
		c := modelContainer{kind: kind, target: i}
		switch kind {
		case byName:
			c.name = own[rng.IntN(len(own))]
			e.rootfs(id, chainOf(img))
			e.containerWithRootfs(id, c.name, id)
		case byCRI:
			c.name = own[rng.IntN(len(own))]
			e.criContainer(id, img, c.name, chainOf(img))
		default:
			ref := map[string]string{byID: img.Target.Digest.Encoded(), byShortID: img.Target.Digest.Encoded()[:12], byDigest: "example.com/m/a@" + img.Target.Digest.String()}[kind]
			e.rootfs(id, chainOf(img))
			e.containerWithRootfs(id, ref, id)
		}
		m.ctrs[id] = c
		return fmt.Sprintf("container %s of %d by %s %s", id, i, kind, c.name)
	case op == 7 && len(ctrIDs) > 0:
		id := ctrIDs[rng.IntN(len(ctrIDs))]
		assert.NilError(t, e.client.ContainerService().Delete(e.nsCtx(), id))
		assert.NilError(t, e.client.SnapshotService(snapshotter).Remove(e.nsCtx(), id))
		delete(m.ctrs, id)
		return "remove container " + id
	default:
		f := plan.Filters{DanglingOnly: rng.IntN(2) == 0}
		switch rng.IntN(3) {
		case 1:
			f.Labels = []string{"tier=0"}
		case 2:
			f.NotLabels = []string{"tier=0"}
		}
		m.prune(t, e, f)
		return fmt.Sprintf("prune %+v", f)
	}
}

// keeps reports whether target i keeps a record without name: a dangling
// record or another name.
func (e *env) keeps(m *storeModel, i int, name string) bool {
	names := e.names()
	if _, ok := names[plan.DanglingName(m.pool[i].Target.Digest)]; ok {
		return true
	}
	for n, d := range names {
		if n != name && d == m.pool[i].Target.Digest {
			return true
		}
	}
	return false
}

// collect runs the daemon's collection, as the other tool's removal would
// in time.
func (e *env) collect() {
	e.t.Helper()
	assert.NilError(e.t, store.FromClient(e.client).Collector.Collect(e.nsCtx()))
}

// prune prunes the store and moves the model to where the rules say. Of a
// used target's names, the rules keep those its containers were created by
// and, for one created by ID or digest, one more: which one is the plan's
// business, so the model takes the store's names of a used target once
// they are within those bounds.
func (m *storeModel) prune(t *testing.T, e *env, f plan.Filters) {
	rep, err := e.svc.Prune(e.ctx, f)
	assert.NilError(t, err)
	assert.Check(t, rep.Err())
	all := !f.DanglingOnly
	used := m.used()
	got := e.names()
	for _, i := range slices.Sorted(maps.Keys(m.present)) {
		own := m.namesOf(i)
		// A label filter leaves the targets it does not select alone.
		tier0 := m.pool[i].Labels["tier"] == "0"
		if (len(f.Labels) > 0 && !tier0) || (len(f.NotLabels) > 0 && tier0) {
			continue
		}
		switch {
		case used[i] && all:
			protected := map[string]bool{}
			byIDRef := false
			for _, c := range m.ctrs {
				if c.name != "" && m.names[c.name] == i {
					protected[c.name] = true
				} else if c.target == i && c.kind != byName && c.kind != byCRI {
					byIDRef = true
				}
			}
			var kept []string
			for _, n := range own {
				if _, ok := got[n]; ok {
					kept = append(kept, n)
				} else {
					assert.Check(t, !protected[n], "%s, which a container was created by, was removed", n)
				}
				delete(m.names, n)
			}
			if byIDRef && len(own) > 0 {
				assert.Check(t, len(kept) > 0, "target %d, used by ID, lost all its names %v", i, own)
			}
			for _, n := range kept {
				m.names[n] = i
			}
		case used[i]:
		case all:
			for _, n := range own {
				delete(m.names, n)
			}
			delete(m.present, i)
		case len(own) == 0:
			delete(m.present, i)
		}
	}
}

// checkModel compares the store with the model.
func (e *env) checkModel(t *testing.T, m *storeModel, what string) {
	t.Helper()
	names, present := map[string]int{}, map[int]bool{}
	byTarget := map[digest.Digest]int{}
	for i, img := range m.pool {
		byTarget[img.Target.Digest] = i
	}
	for name, d := range e.names() {
		i, ok := byTarget[d]
		assert.Check(t, ok, "after %s: %s names %s, no image of the pool", what, name, d)
		present[i] = true
		if !plan.IsDangling(name) {
			names[name] = i
		}
	}
	assert.Check(t, is.DeepEqual(names, m.names), "after %s: names", what)
	assert.Check(t, is.DeepEqual(present, m.present), "after %s: targets", what)
	for i := range m.used() {
		assert.Check(t, m.present[i], "after %s: used target %d is not in the model", what, i)
	}
	want := map[digest.Digest]bool{}
	for i := range m.present {
		for _, b := range m.pool[i].Blobs() {
			want[b.Desc.Digest] = true
		}
	}
	have := map[digest.Digest]bool{}
	for _, info := range e.state().Content {
		have[info.Digest] = true
	}
	assert.Check(t, is.DeepEqual(have, want), "after %s: content", what)
}

// dropNamespace empties the test's namespace and deletes it, so that the
// many namespaces of a long run do not slow every later prune down (a
// prune weighs content against every other namespace's).
func (e *env) dropNamespace() {
	ctx := e.nsCtx()
	ctrs, err := e.client.ContainerService().List(ctx)
	if err != nil {
		return
	}
	for _, c := range ctrs {
		e.client.ContainerService().Delete(ctx, c.ID)
		e.client.SnapshotService(snapshotter).Remove(ctx, c.ID)
	}
	if _, err := e.svc.Prune(e.ctx, plan.Filters{}); err != nil {
		return
	}
	ls, _ := e.client.LeasesService().List(ctx)
	for _, l := range ls {
		e.client.LeasesService().Delete(ctx, l, leases.SynchronousDelete)
	}
	if err := e.client.NamespaceService().Delete(e.ctx, e.ns); err != nil {
		e.t.Logf("namespace %s stays: %v", e.ns, err)
	}
}
