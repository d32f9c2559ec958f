package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/internal/testctrd"
)

// watching is an `imgprune watch` process.
type watching struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	addr string
}

// startWatch starts `imgprune watch` with args on d's namespace moby, and
// waits until its /healthz answers.
func startWatch(t *testing.T, d *testctrd.Daemon, args ...string) *watching {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	addr := l.Addr().String()
	l.Close()
	cmd := imgpruneCmd(t, d, "moby", append([]string{"--docker-host", "none", "watch", "--listen", addr}, args...)...)
	w := &watching{cmd: cmd, log: &bytes.Buffer{}, addr: addr}
	cmd.Stdout, cmd.Stderr = w.log, w.log
	assert.NilError(t, cmd.Start())
	killOnCleanup(t, cmd)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := w.get(t, "/healthz"); code == http.StatusOK {
			return w
		}
		assert.Assert(t, time.Now().Before(deadline), "imgprune watch did not become healthy: %s", w.log.String())
	}
}

// get asks the watch's HTTP server for path.
func (w *watching) get(t *testing.T, path string) (int, string) {
	resp, err := http.Get("http://" + w.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// stop sends SIGTERM and checks that the watch exits 0.
func (w *watching) stop(t *testing.T) {
	t.Helper()
	assert.NilError(t, w.cmd.Process.Signal(syscall.SIGTERM))
	err := w.cmd.Wait()
	assert.Check(t, err, "imgprune watch did not exit 0 on SIGTERM: %s", w.log.String())
}

// usedShare is the share of the filesystem at path in use, in percent.
func usedShare(t *testing.T, path string) float64 {
	size := float64(diskSize(t, path))
	return 100 * (size - float64(freeOf(t, path))) / size
}

func diskSize(t *testing.T, path string) int64 {
	size, _ := statfs(t, path)
	return size
}

// TestWatch: `imgprune watch` stamps the last use of an image within a
// second of a container being made, from containerd's events alone; and
// when a fill of the disk crosses --high, it prunes the least recently used
// images until the use is under --low, and no more. It stops on SIGTERM
// with exit 0.
func TestWatch(t *testing.T) {
	e, d := fixedDisk(t, "64m")
	root := filepath.Join(d.Dir, "root")
	e.lruStore()
	const own = lruOwn

	// An interval of an hour: only the events can tell the watch of the
	// container in time.
	w := startWatch(t, d, "--interval", "1h", "--high", "99%", "--low", "98%")
	// The subscription opens as the watch starts, not in step with /healthz:
	// a container made before it is told of at the next check only, in an
	// hour. So containers are made until one is told of, each given a
	// second.
	var stamp time.Time
	for i := 0; stamp.IsZero() && i < 10; i++ {
		e.container(fmt.Sprint("c", i), "example.com/used:1", nil)
		for made := time.Now(); stamp.IsZero() && time.Since(made) < time.Second; {
			time.Sleep(20 * time.Millisecond)
			stamp = e.lastUsed("example.com/used:1")
		}
	}
	assert.Check(t, !stamp.IsZero(), "no last use recorded within a second of a container: %s", w.log.String())
	w.stop(t)

	// Fill the disk past --high; the prune must bring it under --low by
	// about one and a half images: b and late go (never used, b first),
	// c (used 3 hours ago) and a (an hour ago) stay.
	size := diskSize(t, root)
	high := usedShare(t, root) + 5
	fill := int64((high+3)/100*float64(size)) - (size - freeOf(t, root))
	low := 100 * (float64(size-freeOf(t, root)+fill) - 1.5*own) / float64(size)
	metricsFile := filepath.Join(t.TempDir(), "imgprune.prom")
	w = startWatch(t, d, "--interval", "200ms", "--high", fmt.Sprintf("%.2f%%", high), "--low", fmt.Sprintf("%.2f%%", low), "--metrics-file", metricsFile)
	filler := filepath.Join(filepath.Dir(d.Dir), "fill")
	assert.NilError(t, os.WriteFile(filler, make([]byte, fill), 0o600))
	gone := func() bool {
		names := e.names()
		_, hasB := names["example.com/b:1"]
		_, hasLate := names["example.com/late:1"]
		return !hasB && !hasLate
	}
	for deadline := time.Now().Add(10 * time.Second); !gone() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	assert.Check(t, gone(), "the watch did not prune: %s", w.log.String())
	// A check or two more: nothing else goes.
	time.Sleep(500 * time.Millisecond)
	code, body := w.get(t, "/metrics")
	assert.Check(t, is.Equal(code, http.StatusOK))
	assert.Check(t, is.Contains(body, `imgprune_prunes_total{namespace="moby"} 1`))
	w.stop(t)
	names := e.names()
	for _, kept := range []string{"example.com/a:1", "example.com/c:1", "example.com/used:1"} {
		assert.Check(t, is.Contains(names, kept))
	}
	assert.Check(t, usedShare(t, root) <= low, "used %.2f%%, low %.2f%%", usedShare(t, root), low)
	_, err := os.Stat(filler)
	assert.Check(t, err, "the fill is not the watch's to remove")
	prom, err := os.ReadFile(metricsFile)
	assert.NilError(t, err)
	assert.Check(t, is.Contains(string(prom), `imgprune_prunes_total{namespace="moby"} 1`))
	assert.Check(t, strings.Contains(w.log.String(), "pruned"), w.log.String())
}
