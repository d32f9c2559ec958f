package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/internal/testimage"
)

// faultSet is the store every fault test prunes: the same images in every
// namespace (so the same digests), some unpacked, four used by containers
// in four reference forms, one with a second name, one dangling.
func faultSet() []testimage.Image {
	return testimage.NewSet(testimage.SetOptions{Count: 24, LayersPerImage: 2, SharedRate: 0.5, LayerSize: 4096, Seed: "faults", NamePrefix: "example.com/faults/app"})
}

// seedFaults writes faultSet into e's namespace and returns the used images.
func (e *env) seedFaults() []testimage.Image {
	e.t.Helper()
	set := faultSet()
	e.write(set[:len(set)-1]...)
	nameless := set[len(set)-1]
	nameless.Names = nil
	e.writeDangling(nameless)
	_, err := e.client.ImageService().Create(e.nsCtx(), images.Image{Name: "example.com/faults/other:1", Target: set[4].Target})
	assert.NilError(e.t, err)
	for _, img := range set[:6] {
		e.unpack(img.Names[0])
	}
	e.container("by-name", set[0].Names[0], nil)
	e.container("by-id", set[1].Target.Digest.Encoded(), nil)
	e.container("by-digest", "example.com/faults/app2@"+set[2].Target.Digest.String(), nil)
	e.container("by-short-id", set[3].Target.Digest.Encoded()[:12], nil)
	return set[:4]
}

// endState is what a prune leaves in a namespace: its records and its
// content.
type endState struct {
	Names     map[string]digest.Digest
	Content   []digest.Digest
	Snapshots []string
}

func (e *env) endState() endState {
	e.t.Helper()
	st := e.state()
	out := endState{Names: map[string]digest.Digest{}}
	for _, r := range st.Images {
		out.Names[r.Name] = r.Target.Digest
	}
	for _, info := range st.Content {
		out.Content = append(out.Content, info.Digest)
	}
	assert.NilError(e.t, e.client.SnapshotService(snapshotter).Walk(e.nsCtx(), func(_ context.Context, info snapshots.Info) error {
		out.Snapshots = append(out.Snapshots, info.Name)
		return nil
	}))
	slices.Sort(out.Snapshots)
	return out
}

// assertConverged checks that e's namespace is where an uninterrupted prune
// leaves it (want), that every used image kept its content, and that check
// finds nothing left behind: no stale lease or ingest, no blob on disk that
// no metadata knows.
func (e *env) assertConverged(t *testing.T, want endState, used []testimage.Image, root string) {
	t.Helper()
	assert.Check(t, is.DeepEqual(e.endState(), want))
	for _, img := range used {
		assert.Check(t, e.hasContent(img), "used image %s lost content", img.Names[0])
	}
	svc := imgsvc.NewFromClient(e.client, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithContainerdRoot(root))
	rep, err := svc.Check(e.ctx)
	assert.NilError(t, err)
	assert.Check(t, rep.DiskChecked)
	assert.Check(t, is.Len(rep.Found, 0), "check found %v", rep.Found)
}

// killingStore kills the daemon just before the deletion numbered at.
type killingStore struct {
	images.Store
	at    int
	n     *int
	mu    *sync.Mutex
	crash func()
}

func (s killingStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	s.mu.Lock()
	*s.n++
	if *s.n == s.at {
		s.crash()
	}
	s.mu.Unlock()
	return s.Store.Delete(ctx, name, opts...)
}

// TestPruneWhenContainerdDies: containerd is SIGKILLed while a prune
// deletes (before its first, eighth and twentieth deletion) or as it asks
// for its collection, and started again on the same root. The prune ends with a clear
// failure and its partial report; the next prune converges to the end state
// of one that was never interrupted, with no used image lost and nothing
// left behind.
func TestPruneWhenContainerdDies(t *testing.T) {
	dir, err := os.MkdirTemp("", "imgprune-dies")
	assert.NilError(t, err)
	t.Setenv("KEEP", "1") // a killed daemon's root is started again
	d, err := testctrd.Start(dir)
	assert.NilError(t, err)
	t.Cleanup(func() {
		d.Stop()
		os.RemoveAll(dir)
	})
	root := filepath.Join(d.Dir, "root")
	lockFile := filepath.Join(t.TempDir(), "prune.lock")
	connect := func(ns string) *env {
		c, err := d.Client(context.Background())
		assert.NilError(t, err)
		t.Cleanup(func() { c.Close() })
		e := &env{ctx: context.Background(), t: t, client: c, ns: ns}
		e.svc = imgsvc.NewFromClient(c, ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter), imgsvc.WithPruneLockFile(lockFile))
		return e
	}

	ref := connect("reference")
	ref.seedFaults()
	rep, err := ref.svc.Prune(ref.ctx, plan.Filters{})
	assert.NilError(t, err)
	assert.NilError(t, rep.Err())
	want := ref.endState()

	// Killed before the deletion numbered at, or, at 0, as the prune asks
	// for its collection.
	for _, at := range []int{1, 8, 20, 0} {
		t.Run(fmt.Sprint("at-", at), func(t *testing.T) {
			ns := fmt.Sprint("killed-", at)
			e := connect(ns)
			used := e.seedFaults()
			restarted := make(chan error, 1)
			crash := func() {
				assert.Check(t, d.Kill())
				go func() {
					// Back a moment later, on the same root, as a
					// supervisor restarts it.
					time.Sleep(500 * time.Millisecond)
					nd, err := testctrd.Start(dir)
					if err == nil {
						d = nd
					}
					restarted <- err
				}()
			}
			stores := store.FromClient(e.client)
			if at > 0 {
				stores.Images = killingStore{Store: stores.Images, at: at, n: new(int), mu: &sync.Mutex{}, crash: crash}
			} else {
				stores.Collector = killingCollector{Collector: stores.Collector, crash: crash}
			}
			svc := imgsvc.New(stores, ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter), imgsvc.WithPruneLockFile(lockFile), imgsvc.WithContainerdRoot(root))
			rep, err := svc.Prune(e.ctx, plan.Filters{})
			assert.NilError(t, <-restarted)

			// A clear failure, and the report of what it did before.
			if err == nil {
				err = rep.Err()
			}
			assert.Check(t, err != nil, "the prune did not say the daemon went away")
			t.Logf("interrupted prune: %v; report: %+v", err, rep)
			// One failure says the daemon went away; no record is called
			// failed for it: what was not seen to go is left for the next
			// prune.
			var failed, unexpected []string
			for _, f := range rep.Failures {
				failed = append(failed, f.Name)
				if !slices.Contains([]string{"containerd", "garbage collection", "accounting", "prune"}, f.Name) {
					unexpected = append(unexpected, f.Name)
				}
			}
			if at > 0 {
				assert.Check(t, is.Contains(failed, "containerd"))
			} else {
				assert.Check(t, is.Contains(failed, "garbage collection"))
			}
			assert.Check(t, is.Len(unexpected, 0), "failures: %v", rep.Failures)

			e = connect(ns)
			rep, err = e.svc.Prune(e.ctx, plan.Filters{})
			assert.NilError(t, err)
			assert.Check(t, rep.Err())
			e.assertConverged(t, want, used, filepath.Join(d.Dir, "root"))
		})
	}
}

// killingCollector kills the daemon as the prune asks for its collection.
type killingCollector struct {
	store.Collector
	crash func()
}

func (c killingCollector) Collect(ctx context.Context) error {
	c.crash()
	return c.Collector.Collect(ctx)
}

// killSeed is the seed of the points TestPruneKilledAtAnyPoint kills at:
// IMGPRUNE_KILL_SEED reruns the points a failed run printed.
func killSeed(t *testing.T) uint64 {
	if v := os.Getenv("IMGPRUNE_KILL_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		assert.NilError(t, err)
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// pruneEvents runs `imgprune prune -a` with JSON progress in e's namespace.
// When killAfter is not negative it kills the command with SIGKILL once
// it printed that many events. It returns how many it printed.
func (e *env) pruneEvents(t *testing.T, killAfter int) int {
	t.Helper()
	cmd := exec.Command(imgprune(t), "--address", daemon.Address, "--namespace", e.ns, "--root", filepath.Join(daemon.Dir, "root"), "--snapshotter", snapshotter,
		"prune", "-a", "-f", "--progress", "json", "--format", "json")
	stderr, err := cmd.StderrPipe()
	assert.NilError(t, err)
	assert.NilError(t, cmd.Start())
	kill := func() {
		// It may have ended by itself since its last event.
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
	}
	if killAfter == 0 {
		kill()
	}
	events := 0
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var ev map[string]any
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		events++
		if events == killAfter {
			kill()
		}
	}
	err = cmd.Wait()
	if killAfter < 0 {
		assert.NilError(t, err)
	}
	return events
}

// TestPruneKilledAtAnyPoint: `imgprune prune -a` is SIGKILLed at 20 points
// chosen from a seed the test prints (IMGPRUNE_KILL_POINTS sets how many),
// from before its first event to after its last; the next prune converges
// to the end state of an uninterrupted one each time, with no used image
// lost and nothing left behind.
func TestPruneKilledAtAnyPoint(t *testing.T) {
	seed := killSeed(t)
	t.Logf("kill points from IMGPRUNE_KILL_SEED=%d", seed)
	points := 20
	if v := os.Getenv("IMGPRUNE_KILL_POINTS"); v != "" {
		var err error
		points, err = strconv.Atoi(v)
		assert.NilError(t, err)
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	root := filepath.Join(daemon.Dir, "root")

	var want endState
	var total int
	t.Run("uninterrupted", func(t *testing.T) {
		e := newEnv(t)
		e.seedFaults()
		total = e.pruneEvents(t, -1)
		want = e.endState()
	})
	assert.Assert(t, total > 0)
	for i := range points {
		at := rng.IntN(total + 1)
		t.Run(fmt.Sprintf("%d-after-%d-events", i, at), func(t *testing.T) {
			e := newEnv(t)
			used := e.seedFaults()
			e.pruneEvents(t, at)
			stdout, stderr, code := e.run(t, "prune", "-a", "-f")
			assert.Check(t, is.Equal(code, 0), "rerun: %s%s", stdout, stderr)
			e.assertConverged(t, want, used, root)
		})
	}
}

// soakFor is how long TestLoadsBesidePrunes runs: IMGPRUNE_SOAK (a Go
// duration) runs it longer.
func soakFor(t *testing.T) time.Duration {
	if v := os.Getenv("IMGPRUNE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		assert.NilError(t, err)
		return d
	}
	return 3 * time.Second
}

// TestLoadsBesidePrunes: loads run in a loop while prunes run in a loop,
// the prunes removing images that share layers with the loads: no load
// fails, and no loaded image loses its name or content.
func TestLoadsBesidePrunes(t *testing.T) {
	e := newEnv(t)
	var pool []testimage.Layer
	for i := range 4 {
		pool = append(pool, testimage.NewLayer(fmt.Sprintf("%s/shared-%d", t.Name(), i), 4096))
	}
	keep := map[string]string{"org.example.keep": "1"}
	ctx, cancel := context.WithTimeout(context.Background(), soakFor(t))
	defer cancel()

	var loaded []testimage.Image
	var loads, prunes int
	var g errgroup.Group
	g.Go(func() error {
		for ; ctx.Err() == nil; loads++ {
			img := testimage.New(testimage.WithNames(fmt.Sprintf("example.com/beside/kept%d:1", loads)), testimage.WithLabels(keep),
				testimage.WithLayers(pool[loads%len(pool)], testimage.NewLayer(fmt.Sprintf("%s/kept-%d", t.Name(), loads), 4096)))
			var archive bytes.Buffer
			if err := testimage.WriteArchive(&archive, img); err != nil {
				return err
			}
			if _, err := e.svc.Load(e.ctx, &archive); err != nil {
				return fmt.Errorf("load %d: %w", loads, err)
			}
			loaded = append(loaded, img)
		}
		return nil
	})
	g.Go(func() error {
		for ; ctx.Err() == nil; prunes++ {
			img := testimage.New(testimage.WithNames(fmt.Sprintf("example.com/beside/gone%d:1", prunes)),
				testimage.WithLayers(pool[(prunes+1)%len(pool)], testimage.NewLayer(fmt.Sprintf("%s/gone-%d", t.Name(), prunes), 4096)))
			lctx, done, err := e.client.WithLease(e.nsCtx(), leases.WithRandomID())
			if err != nil {
				return err
			}
			_, err = img.Write(lctx, e.client.ContentStore(), e.client.ImageService())
			done(lctx)
			if err != nil {
				return err
			}
			rep, err := e.svc.Prune(e.ctx, plan.Filters{NotLabels: []string{"org.example.keep=1"}})
			if err == nil {
				err = rep.Err()
			}
			if err != nil {
				return fmt.Errorf("prune %d: %w", prunes, err)
			}
		}
		return nil
	})
	assert.NilError(t, g.Wait())
	t.Logf("%d loads beside %d prunes", loads, prunes)
	assert.Check(t, loads > 1 && prunes > 1, "%d loads, %d prunes", loads, prunes)
	names := e.names()
	for _, img := range loaded {
		assert.Check(t, is.Equal(names[img.Names[0]], img.Target.Digest), "%s lost its name", img.Names[0])
		assert.Check(t, e.hasContent(img), "%s lost content", img.Names[0])
	}
}
