package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/internal/testctrd"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// imgprune builds the command once per test run.
func imgprune(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		var repo, dir string
		if repo, buildErr = testctrd.RepoRoot(); buildErr != nil {
			return
		}
		if dir, buildErr = os.MkdirTemp("", "imgprune-bin"); buildErr != nil {
			return
		}
		binPath = filepath.Join(dir, "imgprune")
		out, err := exec.Command("go", "build", "-o", binPath, filepath.Join(repo, "cmd", "imgprune")).CombinedOutput()
		if err != nil {
			buildErr = err
			t.Log(string(out))
		}
	})
	assert.NilError(t, buildErr)
	return binPath
}

// run runs the command in the test's namespace and returns its stdout,
// stderr and exit code.
func (e *env) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(imgprune(t), append([]string{"--address", daemon.Address, "--namespace", e.ns, "--root", filepath.Join(daemon.Dir, "root"), "--snapshotter", snapshotter}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else {
		assert.NilError(t, err)
	}
	return stdout.String(), stderr.String(), code
}

func TestCLIPrune(t *testing.T) {
	e := newEnv(t)
	used := newImage(t, "used", "docker.io/library/used:1")
	unused := newImage(t, "unused", "docker.io/library/unused:1")
	e.write(used, unused)
	e.container("c1", "used:1", nil)

	// Bad input: a clear error, exit 1, nothing changed.
	before := e.names()
	_, stderr, code := e.run(t, "prune", "-f", "--filter", "dangling=maybe")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(stderr, "invalid filter 'dangling=maybe,true'"))
	assert.Check(t, is.DeepEqual(e.names(), before))

	dryOut, _, code := e.run(t, "prune", "-a", "--dry-run", "--format", "json")
	assert.Check(t, is.Equal(code, 0))
	out, stderr, code := e.run(t, "prune", "-a", "-f", "--format", "json")
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.Equal(out, dryOut), "the dry run reports what the prune does")
	var rep imgsvc.Report
	dec := json.NewDecoder(strings.NewReader(out))
	assert.NilError(t, dec.Decode(&rep))
	assert.Check(t, !dec.More(), "one JSON object on stdout")
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(unused.Size())))
	assert.Check(t, is.Len(rep.ImagesDeleted, 2))

	// Nothing left to prune: exit 0, docker's text.
	out, _, code = e.run(t, "prune", "-a", "-f")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Equal(out, "Total reclaimed space: 0B\n"))

	out, _, code = e.run(t, "images")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(out, "used "))
	assert.Check(t, !strings.Contains(out, "unused"))
	out, _, code = e.run(t, "images", "--format", "json")
	assert.Check(t, is.Equal(code, 0))
	var rows []imgsvc.Summary
	assert.NilError(t, json.Unmarshal([]byte(out), &rows))
	assert.Assert(t, is.Len(rows, 1))
	assert.Check(t, is.Equal(rows[0].Name, "docker.io/library/used:1"))
	assert.Check(t, is.Equal(rows[0].Size, used.Size()))
	assert.Check(t, is.Equal(rows[0].Containers, 1))
}

// TestCLIPruneFailureExitsNonZero: a blob that cannot leave the disk is a
// failure: the report is printed, the command says what failed and exits 1.
func TestCLIPruneFailureExitsNonZero(t *testing.T) {
	e := newEnv(t)
	_, stuck := e.writeStuck(t)

	out, stderr, code := e.run(t, "prune", "-a", "-f")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(out, "Deleted Images:\nuntagged: example.com/stuck:1\n"))
	assert.Check(t, is.Contains(stderr, "failed: "+stuck.Desc.Digest.String()))
	assert.Check(t, is.Contains(stderr, "pruned 1 of 1 images; "))
	assert.Check(t, is.Contains(stderr, "failed to be cleaned up"))
}
