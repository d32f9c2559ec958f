//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/internal/testcmd"
	"github.com/imgprune/imgprune/internal/testengine"
)

// imgprune runs imgprune against the engine's containerd and returns its
// stdout, stderr and exit code.
func imgprune(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	stdout, stderr, code, err := testcmd.Run(exec.Command(imgpruneBin, append(append([]string{}, imgpruneArgs...), args...)...))
	assert.NilError(t, err)
	return stdout, stderr, code
}

// TestCheckKeepsTheEnginesContainers: the engine holds each container's
// files by a lease with no expiry; `imgprune check --older-than 0 --delete`
// lists those leases and keeps them, with the engine's API and without it,
// even when told to remove every lease with no expiry: a created, a stopped
// and a running container keep their files and start again.
func TestCheckKeepsTheEnginesContainers(t *testing.T) {
	c := newCLI(t, engineSock)
	c.ok("load", "-i", archive)
	c.ok("create", "--name", "chk-created", "e2e/app:1", "keep", "/kept", "created")
	copied := filepath.Join(t.TempDir(), "data")
	assert.NilError(t, os.WriteFile(copied, []byte("copied in\n"), 0o644))
	c.ok("cp", copied, "chk-created:/kept")
	assert.Check(t, is.Equal(c.ok("run", "--name", "chk-stopped", "e2e/app:1", "keep", "/kept", "stopped"), "stopped\n"))
	c.ok("run", "-d", "--name", "chk-running", "e2e/app:1", "serve")
	defer c.run("", "rm", "-f", "chk-created", "chk-stopped", "chk-running")
	waitLogs(t, c, "chk-running", "serving\n")
	assert.Check(t, is.Equal(c.ok("exec", "chk-running", "/app", "keep", "/kept", "running"), "running\n"))
	ids := strings.Fields(c.ok("ps", "-a", "-q", "--no-trunc", "--filter", "name=chk-"))
	assert.Assert(t, is.Len(ids, 3))

	for _, args := range [][]string{
		{"--docker-host", "unix://" + engineSock, "check", "--older-than", "0", "--delete"},
		{"--docker-host", "none", "check", "--older-than", "0", "--delete", "--unexpiring-leases"},
	} {
		stdout, stderr, code := imgprune(t, args...)
		assert.Check(t, is.Equal(code, 0), "imgprune %v: %s%s", args, stdout, stderr)
		for _, id := range ids {
			assert.Check(t, is.Contains(stdout, "Kept lease: "+id), "imgprune %v", args)
		}
		assert.Check(t, !strings.Contains(stdout, "Deleted lease"), "imgprune %v: %s", args, stdout)
		t.Logf("imgprune %v:\n%s", args, stdout)
	}

	assert.Check(t, is.Equal(c.ok("exec", "chk-running", "/app", "keep", "/kept", "lost"), "running\n"))
	assert.Check(t, is.Equal(c.ok("start", "-a", "chk-stopped"), "stopped\n"))
	assert.Check(t, is.Equal(c.ok("start", "-a", "chk-created"), "copied in\n"))
}

// TestOfflinePruneKeepsAStoppedEnginesContainers: on a Docker host whose
// engine and containerd are stopped, `imgprune --offline prune -a` keeps the
// image of every container (created and stopped ones have no containerd
// record; their files are held by leases), even after its tag moved, and
// removes the unused one; the engine then starts every container.
func TestOfflinePruneKeepsAStoppedEnginesContainers(t *testing.T) {
	dir, err := os.MkdirTemp("", "e2e-offline")
	assert.NilError(t, err)
	defer os.RemoveAll(dir)
	eng, err := testengine.Start(dir)
	assert.NilError(t, err)
	running := true
	defer func() {
		if running {
			eng.Stop()
		}
	}()
	c := newCLI(t, eng.Sock)
	c.ok("load", "-i", archive)
	c.ok("create", "--name", "off-created", "e2e/app:1", "keep", "/kept", "created")
	assert.Check(t, is.Equal(c.ok("run", "--name", "off-stopped", "e2e/app:1", "keep", "/kept", "stopped"), "stopped\n"))
	c.ok("run", "-d", "--name", "off-running", "e2e/app:1", "serve")
	waitLogs(t, c, "off-running", "serving\n")
	// The tag moves: only the containers' files tell their image.
	c.ok("tag", "e2e/other:1", "e2e/app:1")

	assert.NilError(t, eng.StopKeepingStore())
	running = false
	stdout, stderr, code, err := testcmd.Run(exec.Command(imgpruneBin, "--offline", "--root", filepath.Join(eng.Ctrd.Dir, "root"),
		"--namespace", "moby", "prune", "-a", "-f"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(code, 0), "%s%s", stdout, stderr)
	t.Logf("offline prune:\n%s%s", stdout, stderr)
	assert.NilError(t, eng.Restart())
	running = true

	c = newCLI(t, eng.Sock)
	assert.Check(t, is.Equal(c.ok("start", "-a", "off-stopped"), "stopped\n"))
	assert.Check(t, is.Equal(c.ok("start", "-a", "off-created"), "created\n"))
	c.ok("start", "off-running")
	_, code = c.run("", "image", "inspect", app.Target.Digest.String())
	assert.Check(t, is.Equal(code, 0), "the containers' image is gone")
	_, code = c.run("", "image", "inspect", old.Target.Digest.String())
	assert.Check(t, code != 0, "the unused image stayed")
	c.ok("rm", "-f", "off-created", "off-stopped", "off-running")
}
