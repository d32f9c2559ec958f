package integration

import (
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/internal/testimage"
)

// namesOf lists the names of the namespace that are not dangling records.
func namesOf(all map[string]digest.Digest) []string {
	var out []string
	for name := range all {
		if !plan.IsDangling(name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// TestCLIKeepLastAndReferences: --keep-last keeps the newest images of each
// repository, never at the cost of a used or pinned one, and reference
// filters limit a prune and a listing to the names they match.
func TestCLIKeepLastAndReferences(t *testing.T) {
	e := newEnv(t)
	// Written one after the other: each name arrives after the previous.
	for _, img := range []testimage.Image{
		newImage(t, "app1", "docker.io/library/app:1"),
		newImage(t, "app2", "docker.io/library/app:2"),
		newImage(t, "app3", "docker.io/library/app:3"),
		newImage(t, "app4", "docker.io/library/app:4"),
		newImage(t, "tools1", "example.com/tools:1"),
		newImage(t, "tools2", "example.com/tools:2"),
	} {
		e.write(img)
	}
	// app:1 is used, app:2 pinned: older than the last, they stay. Pinning
	// updates app:2's record, which does not make it newer.
	e.container("c1", "app:1", nil)
	pin, err := e.client.ImageService().Get(e.nsCtx(), "docker.io/library/app:2")
	assert.NilError(t, err)
	pin.Labels = map[string]string{plan.PinnedLabel: plan.PinnedValue}
	_, err = e.client.ImageService().Update(e.nsCtx(), pin, "labels")
	assert.NilError(t, err)
	all := []string{"docker.io/library/app:1", "docker.io/library/app:2", "docker.io/library/app:3", "docker.io/library/app:4", "example.com/tools:1", "example.com/tools:2"}

	// Bad input: a clear error, nothing changed.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"prune", "-f", "--keep-last", "1"}, "invalid --keep-last 1: it keeps named images among those -a removes; use it with -a"},
		{[]string{"prune", "-a", "-f", "--keep-last", "-1"}, "invalid --keep-last -1"},
		{[]string{"prune", "-a", "-f", "--filter", "reference=app:["}, "invalid filter 'reference=app:[': syntax error in pattern"},
		{[]string{"images", "--filter", "reference!=[a-"}, "invalid filter 'reference!=[a-': syntax error in pattern"},
		{[]string{"images", "--filter", "label=a"}, "invalid filter 'label': images takes dangling, reference and reference!"},
		{[]string{"prune", "-f", "--filter", "reference=app"}, "invalid filter 'reference': it matches names, and a dangling image has none"},
	} {
		_, stderr, code := e.run(t, tc.args...)
		assert.Check(t, is.Equal(code, 1), tc.args)
		assert.Check(t, is.Contains(stderr, tc.want), tc.args)
	}
	assert.Check(t, is.DeepEqual(namesOf(e.names()), all))

	stdout, _, code := e.run(t, "images", "--filter", "reference=app:*", "--filter", "reference!=*:2")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.DeepEqual(repoTags(stdout), []string{"app:1", "app:3", "app:4"}))

	// Limited to the app repository, keep-last 1 removes app:3 alone.
	stdout, stderr, code := e.run(t, "prune", "-a", "-f", "--keep-last", "1", "--filter", "reference=app")
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.Contains(stdout, "untagged: app:3\n"))
	assert.Check(t, is.DeepEqual(namesOf(e.names()), []string{"docker.io/library/app:1", "docker.io/library/app:2", "docker.io/library/app:4", "example.com/tools:1", "example.com/tools:2"}))

	// reference! keeps tools:1 from a prune of everything but the last.
	_, stderr, code = e.run(t, "prune", "-a", "-f", "--keep-last", "1", "--filter", "reference!=*/*:1")
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.DeepEqual(namesOf(e.names()), []string{"docker.io/library/app:1", "docker.io/library/app:2", "docker.io/library/app:4", "example.com/tools:1", "example.com/tools:2"}))

	// Now tools:1 goes; the last of each repository, the used and the
	// pinned stay.
	_, stderr, code = e.run(t, "prune", "-a", "-f", "--keep-last", "1")
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.DeepEqual(namesOf(e.names()), []string{"docker.io/library/app:1", "docker.io/library/app:2", "docker.io/library/app:4", "example.com/tools:2"}))

	// A pull that moves a tag onto a new image updates the tag's record,
	// which keeps its creation time: the image is as new as its content.
	err = e.client.ContainerService().Delete(e.nsCtx(), "c1")
	assert.NilError(t, err)
	fresh := newImage(t, "app5")
	e.writeDangling(fresh)
	moved, err := e.client.ImageService().Get(e.nsCtx(), "docker.io/library/app:1")
	assert.NilError(t, err)
	moved.Target = fresh.Target
	_, err = e.client.ImageService().Update(e.nsCtx(), moved, "target")
	assert.NilError(t, err)
	_, stderr, code = e.run(t, "prune", "-a", "-f", "--keep-last", "1")
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.DeepEqual(namesOf(e.names()), []string{"docker.io/library/app:1", "docker.io/library/app:2", "example.com/tools:2"}))
	assert.Check(t, is.Equal(e.names()["docker.io/library/app:1"], fresh.Target.Digest))
}

// repoTags reads the REPOSITORY:TAG of each row of `imgprune images`.
func repoTags(table string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(table), "\n")[1:] {
		f := strings.Fields(line)
		out = append(out, f[0]+":"+f[1])
	}
	slices.Sort(out)
	return out
}
