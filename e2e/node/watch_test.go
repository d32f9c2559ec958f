//go:build e2e

package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/internal/testimage"
	"github.com/imgprune/imgprune/internal/testnode"
)

// tmpfsNode starts a node whose folder is a tmpfs of size: a disk the test
// can fill.
func tmpfsNode(t *testing.T, size string) *testnode.Node {
	t.Helper()
	mnt, err := os.MkdirTemp(tmp, "t")
	assert.NilError(t, err)
	assert.NilError(t, unix.Mount("tmpfs", mnt, "tmpfs", 0, "size="+size))
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	n, err := testnode.Start(filepath.Join(mnt, "d"), reg)
	assert.NilError(t, err)
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Logf("stop node: %v", err)
		}
	})
	return n
}

func statfs(t *testing.T, path string) (size, free int64) {
	var st unix.Statfs_t
	assert.NilError(t, unix.Statfs(path, &st))
	return int64(st.Blocks) * st.Bsize, int64(st.Bavail) * st.Bsize
}

func usedShare(t *testing.T, path string) float64 {
	size, free := statfs(t, path)
	return 100 * float64(size-free) / float64(size)
}

// TestWatchUnderDiskPressure: `imgprune watch` on a node whose disk fills
// past --high removes unused images, never used ones first, oldest first,
// then by last use, until the disk is under --low, and no more: the image a
// pod runs, the one used a moment ago and the pinned sandbox image stay.
func TestWatchUnderDiskPressure(t *testing.T) {
	ctx := context.Background()
	n := tmpfsNode(t, "160m")
	root := filepath.Join(n.Dir(), "root")
	const own = 4 << 20
	pull := func(name string) (string, testimage.Image) {
		img, err := testnode.Workload("watch-"+name, own)
		assert.NilError(t, err)
		repoTag := "watch/" + name + ":1"
		assert.NilError(t, reg.Push(ctx, repoTag, img))
		assert.NilError(t, n.Pull(reg.Ref(repoTag)))
		return reg.Ref(repoTag), img
	}
	// Pulled one after the other: never used, they go oldest first.
	old1, _ := pull("old1")
	old2, _ := pull("old2")
	newer, _ := pull("newer")
	recent, _ := pull("recent")
	running, _ := pull("running")
	pod, err := n.RunPod("watch")
	assert.NilError(t, err)
	_, err = n.RunContainer(pod, "running", running)
	assert.NilError(t, err)
	// recent was used a moment ago: a listing saw its container, and
	// stamped its last use, before the container went.
	gone, err := n.RunContainer(pod, "recent", recent)
	assert.NilError(t, err)
	out, err := imgpruneOn(n, "images").CombinedOutput()
	assert.NilError(t, err, string(out))
	_, err = n.Crictl("rm", "-f", gone)
	assert.NilError(t, err)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	addr := l.Addr().String()
	l.Close()
	watch := func(args ...string) (*exec.Cmd, *os.File) {
		logf, err := os.CreateTemp(tmp, "watch")
		assert.NilError(t, err)
		cmd := imgpruneOn(n, append([]string{"watch", "--listen", addr}, args...)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		assert.NilError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return cmd, logf
				}
			}
			assert.Assert(t, time.Now().Before(deadline), "imgprune watch did not become healthy")
		}
	}
	stop := func(cmd *exec.Cmd) {
		assert.NilError(t, cmd.Process.Signal(syscall.SIGTERM))
		assert.Check(t, cmd.Wait())
	}
	// Fill the disk past --high; freeing about one and a half images
	// brings it under --low: old1 and old2 go, the rest stays.
	size, free := statfs(t, root)
	high := usedShare(t, root) + 5
	fill := int64((high+3)/100*float64(size)) - (size - free)
	low := 100 * (float64(size-free+fill) - 1.5*2*own) / float64(size)
	assert.NilError(t, os.WriteFile(filepath.Join(filepath.Dir(n.Dir()), "fill"), make([]byte, fill), 0o600))
	cmd, logf := watch("--interval", "200ms", "--high", fmt.Sprintf("%.2f%%", high), "--low", fmt.Sprintf("%.2f%%", low))
	refs := func() map[string]bool {
		out := map[string]bool{}
		for _, img := range byID(t, n) {
			for _, tag := range img.RepoTags {
				out[tag] = true
			}
		}
		return out
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if have := refs(); !have[old1] && !have[old2] {
			break
		}
	}
	time.Sleep(time.Second) // a few checks more: nothing else goes
	stop(cmd)
	logf.Seek(0, io.SeekStart)
	log, _ := io.ReadAll(logf)
	have := refs()
	assert.Check(t, !have[old1] && !have[old2], "the two oldest never-used images go: %s", log)
	for _, kept := range []string{newer, recent, running, n.Sandbox} {
		assert.Check(t, have[kept], "%s stays", kept)
	}
	assert.Check(t, is.Len(have, 4))
	assert.Check(t, usedShare(t, root) <= low, "used %.2f%%, low %.2f%%", usedShare(t, root), low)
	noGhosts(t, n)
}
