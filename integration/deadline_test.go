package integration

import (
	"context"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/internal/testctrd"
)

// TestAStoppedDaemonFailsInBoundedTime: a containerd that stops answering
// (SIGSTOP, by PID) makes prune, its dry run and check fail within their phase
// timeout, and a watch unhealthy within three checks, instead of hanging.
func TestAStoppedDaemonFailsInBoundedTime(t *testing.T) {
	dir, err := os.MkdirTemp("", "imgprune-stop")
	assert.NilError(t, err)
	d, err := testctrd.Start(dir)
	assert.NilError(t, err)
	t.Cleanup(func() {
		syscall.Kill(d.PID, syscall.SIGCONT)
		d.Stop()
	})
	c, err := d.Client(context.Background())
	assert.NilError(t, err)
	t.Cleanup(func() { c.Close() })
	e := &env{ctx: context.Background(), t: t, client: c, ns: "moby"}
	e.write(newImage(t, "app", "example.com/app:1"))
	w := startWatch(t, d, "--interval", "200ms", "--high", "99%", "--low", "98%", "--phase-timeout", "2s")

	assert.NilError(t, syscall.Kill(d.PID, syscall.SIGSTOP))
	const bound = 20 * time.Second
	for _, args := range [][]string{
		{"prune", "-a", "-f"},
		{"prune", "-a", "--dry-run"},
		{"check", "--delete"},
	} {
		start := time.Now()
		cmd := imgpruneCmd(t, d, "moby", append([]string{"--docker-host", "none", "--phase-timeout", "2s"}, args...)...)
		// One that hangs is killed, to fail here rather than at the
		// test binary's timeout.
		hung := time.AfterFunc(2*bound, func() { cmd.Process.Kill() })
		_, stderr, code := runCmd(t, cmd)
		hung.Stop()
		took := time.Since(start)
		assert.Check(t, code != 0, "imgprune %v succeeded against a stopped daemon", args)
		assert.Check(t, is.Contains(stderr, "deadline exceeded"), "imgprune %v", args)
		assert.Check(t, took < bound, "imgprune %v took %v", args, took)
	}
	unhealthy := false
	for deadline := time.Now().Add(bound); !unhealthy && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		code, _ := w.get(t, "/healthz")
		unhealthy = code == http.StatusServiceUnavailable
	}
	assert.Check(t, unhealthy, "the watch stayed healthy beside a stopped daemon: %s", w.log.String())

	// Answering again, the next prune finishes the job.
	assert.NilError(t, syscall.Kill(d.PID, syscall.SIGCONT))
	_, stderr, code := runCmd(t, imgpruneCmd(t, d, "moby", "--docker-host", "none", "prune", "-a", "-f"))
	assert.Check(t, is.Equal(code, 0), stderr)
	_, present := e.names()["example.com/app:1"]
	assert.Check(t, !present)
}
