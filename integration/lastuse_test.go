package integration

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/internal/testctrd"
)

// lastUsed reads the last-use stamp of record name, zero when it has none.
func (e *env) lastUsed(name string) time.Time {
	e.t.Helper()
	r, err := e.client.ImageService().Get(e.nsCtx(), name)
	assert.NilError(e.t, err)
	return plan.LastUsed([]images.Image{r})
}

// within reports whether t is in [from, to], to the second.
func within(t, from, to time.Time) bool {
	return !t.Before(from.Truncate(time.Second)) && !t.After(to.Add(time.Second))
}

// TestLastUseStamps: a prune records when a container used each target, on
// its dangling record (made for it when it lacks one) or a CRI image's ID
// record; a dry run writes none; a listing refreshes a stale stamp, and
// stamps a target no prune adopted yet on its name, creating no record; an
// unused target gets no stamp.
func TestLastUseStamps(t *testing.T) {
	e := newEnv(t)
	byName := newImage(t, "byname", "docker.io/library/byname:1")
	stamped := newImage(t, "stamped", "docker.io/library/stamped:1")
	unused := newImage(t, "unused", "docker.io/library/unused:1")
	cri := newImage(t, "cri")
	e.write(byName, unused)
	e.writeDangling(stamped)
	e.criImage(cri, "docker.io/library/cri", "1")
	e.container("c-name", "byname:1", nil)
	e.container("c-stamped", stamped.Target.Digest.String(), nil)
	e.criContainer("c-cri", cri, "docker.io/library/cri:1", e.unpack("docker.io/library/cri:1"))

	e.prune([]string{"dangling=false"}, prune.DryRun())
	for _, name := range []string{plan.DanglingName(stamped.Target.Digest), cri.ConfigDesc.Digest.String()} {
		assert.Check(t, e.lastUsed(name).IsZero(), "a dry run stamped %s", name)
	}

	before := time.Now()
	rep := e.prune([]string{"dangling=true"})
	after := time.Now()
	assert.Check(t, is.Len(rep.Warnings, 0), rep.Warnings)
	for _, name := range []string{plan.DanglingName(byName.Target.Digest), plan.DanglingName(stamped.Target.Digest), cri.ConfigDesc.Digest.String()} {
		assert.Check(t, within(e.lastUsed(name), before, after), "%s: %v not within the prune", name, e.lastUsed(name))
	}
	assert.Check(t, e.lastUsed(plan.DanglingName(unused.Target.Digest)).IsZero(), "an unused target was stamped")

	// A stale stamp is refreshed by a listing; a target without a count
	// record gets none from it.
	old := time.Now().Add(-time.Hour)
	_, err := e.client.ImageService().Update(e.nsCtx(), images.Image{Name: plan.DanglingName(stamped.Target.Digest), Labels: plan.LastUsedLabels(old)}, "labels."+plan.LastUsedLabel)
	assert.NilError(t, err)
	fresh := newImage(t, "fresh", "docker.io/library/fresh:1")
	e.write(fresh)
	e.container("c-fresh", "fresh:1", nil)
	before = time.Now()
	rows, err := e.svc.Images(e.ctx)
	after = time.Now()
	assert.NilError(t, err)
	assert.Check(t, within(e.lastUsed(plan.DanglingName(stamped.Target.Digest)), before, after))
	// A target no prune adopted yet has its stamp on its name, and a
	// listing creates no record for it.
	_, hasDangling := e.names()[plan.DanglingName(fresh.Target.Digest)]
	assert.Check(t, !hasDangling, "a listing created a record")
	freshStamp := e.lastUsed("docker.io/library/fresh:1")
	assert.Check(t, within(freshStamp, before, after))
	for _, r := range rows {
		if r.ID == unused.Target.Digest {
			assert.Check(t, r.LastUsed.IsZero())
		} else {
			assert.Check(t, within(r.LastUsed, before, after), "%s: %v", r.Name, r.LastUsed)
		}
	}

	// The prune that adopts it moves the stamp to its dangling record,
	// which outlives the name; the stamp is recent, so nothing is rewritten.
	err = e.client.ContainerService().Delete(e.nsCtx(), "c-fresh")
	assert.NilError(t, err)
	e.prune(nil)
	assert.Check(t, e.lastUsed(plan.DanglingName(fresh.Target.Digest)).Equal(freshStamp))
}

// TestLastUseSurvivesRestarts: a stamp lives in containerd's store: a
// containerd started again on the same root, and another imgprune process,
// read it back.
func TestLastUseSurvivesRestarts(t *testing.T) {
	dir, err := os.MkdirTemp("", "imgprune-lastuse")
	assert.NilError(t, err)
	t.Setenv("KEEP", "1") // the root is started again
	d, err := testctrd.Start(dir)
	assert.NilError(t, err)
	t.Cleanup(func() {
		d.Stop()
		os.RemoveAll(dir)
	})
	connect := func() *env {
		c, err := d.Client(context.Background())
		assert.NilError(t, err)
		t.Cleanup(func() { c.Close() })
		e := &env{ctx: context.Background(), t: t, client: c, ns: "moby"}
		e.svc = imgsvc.NewFromClient(c, "moby", imgsvc.WithSnapshotter(snapshotter))
		return e
	}
	e := connect()
	used := newImage(t, "used", "docker.io/library/used:1")
	e.write(used)
	e.container("c1", "used:1", nil)
	before := time.Now()
	e.prune(nil)
	after := time.Now()
	stamp := e.lastUsed(plan.DanglingName(used.Target.Digest))
	assert.Check(t, within(stamp, before, after))
	err = e.client.ContainerService().Delete(e.nsCtx(), "c1")
	assert.NilError(t, err)

	assert.NilError(t, d.Kill())
	d, err = testctrd.Start(dir)
	assert.NilError(t, err)
	e = connect()
	assert.Check(t, e.lastUsed(plan.DanglingName(used.Target.Digest)).Equal(stamp), "containerd lost the stamp")

	// Another process lists it, with the container gone.
	stdout, stderr, code := runCmd(t, imgpruneCmd(t, d, "moby", "images", "--format", "json"))
	assert.Check(t, is.Equal(code, 0), stderr)
	var rows []imgsvc.Summary
	assert.NilError(t, json.Unmarshal([]byte(stdout), &rows))
	assert.Assert(t, is.Len(rows, 1))
	assert.Check(t, rows[0].LastUsed.Equal(stamp), "listed %v, stamped %v", rows[0].LastUsed, stamp)
}
