//go:build e2e

// Package node runs imgprune on a real Kubernetes node's store: containerd
// with its CRI plugin, images pulled through CRI from a local registry, and
// pods run with crictl, as a kubelet runs them. `make e2e` builds what it
// needs (hack/install-node.sh).
package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/internal/testnode"
)

var (
	reg      *testnode.Registry
	imgprune string
	tmp      string
)

func TestMain(m *testing.M) {
	code, err := setUp(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setUp(m *testing.M) (int, error) {
	repo, err := testctrd.RepoRoot()
	if err != nil {
		return 0, err
	}
	if tmp, err = os.MkdirTemp("", "node"); err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	imgprune = filepath.Join(tmp, "imgprune")
	if out, err := exec.Command("go", "build", "-o", imgprune, filepath.Join(repo, "cmd", "imgprune")).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build imgprune: %v: %s", err, out)
	}
	if reg, err = testnode.StartRegistry(filepath.Join(tmp, "registry")); err != nil {
		return 0, err
	}
	defer reg.Stop()
	if err := testnode.PushSandbox(context.Background(), reg); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// startNode starts a node of its own for t, stopped when t ends.
func startNode(t *testing.T) *testnode.Node {
	t.Helper()
	dir, err := os.MkdirTemp(tmp, "n")
	if err != nil {
		t.Fatal(err)
	}
	n, err := testnode.Start(dir, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Logf("stop node: %v", err)
		}
	})
	return n
}

// imgpruneOn is imgprune with args on n's namespace k8s.io, its socket and
// its root, as an operator runs it on a node.
func imgpruneOn(n *testnode.Node, args ...string) *exec.Cmd {
	return exec.Command(imgprune, append([]string{"--address", n.Daemon.Address, "--namespace", testnode.Namespace,
		"--root", filepath.Join(n.Dir(), "root"), "--docker-host", "none"}, args...)...)
}

// prune runs `imgprune prune -a -f` on n's store and returns its output.
func prune(t *testing.T, n *testnode.Node, args ...string) string {
	t.Helper()
	out, err := imgpruneOn(n, append([]string{"prune", "-a", "-f"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("imgprune prune: %v\n%s", err, out)
	}
	return string(out)
}
