package main

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/imgprune/imgprune/internal/testnode"
)

// Contenders on a Kubernetes node's store.
const (
	cCrictl   = "crictl rmi --prune"
	cCRIPrune = "imgprune prune -a (k8s.io)"
	cCRIDry   = "imgprune prune -a --dry-run (k8s.io)"
)

// criNode is a seeded node store and the registry its images came from.
type criNode struct {
	seeded
	reg *testnode.Registry
}

// seedCRI builds a node's store under dir as a cluster leaves it: w.names
// images pulled through CRI from a local registry, one in ten with a pod
// whose container was created from it (by tag, repo@digest or image ID in
// turn), a tag pulled again onto a new image after a container was made
// from it; the pods stopped, the daemon stopped, the store kept.
func seedCRI(ctx context.Context, dir string, w workload) (criNode, error) {
	start := time.Now()
	reg, err := testnode.StartRegistry(filepath.Join(dir, "registry"))
	if err != nil {
		return criNode{}, err
	}
	cn := criNode{reg: reg}
	if err := testnode.PushSandbox(ctx, reg); err != nil {
		return cn, err
	}
	n, err := testnode.Start(filepath.Join(dir, "node"), reg)
	if err != nil {
		return cn, err
	}
	made, err := testnode.Scenario{Images: w.names, UsedEvery: 10, CreateOnly: true}.Build(ctx, n, reg)
	if err == nil {
		err = n.StopPods()
	}
	if err == nil {
		cn.blobs, cn.snaps, err = countIn(ctx, n.Daemon.Address, testnode.Namespace)
	}
	cn.ctrs = len(made.Containers)
	if serr := n.Shutdown(); err == nil {
		err = serr
	}
	cn.dir, cn.took = n.Dir(), time.Since(start)
	return cn, err
}

// countIn counts a namespace's blobs and overlayfs snapshots.
func countIn(ctx context.Context, address, ns string) (blobs, snaps int, err error) {
	c, err := client.New(address)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	return count(namespaces.WithNamespace(ctx, ns), c)
}

// onNode starts a node on a copy of the seeded store, waits until its
// daemon settled, runs f and removes the copy.
func (cn criNode) onNode(ctx context.Context, f func(n *testnode.Node) error) error {
	dir, err := copyStore(cn.seeded)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	n, err := testnode.Open(dir, cn.reg)
	if err != nil {
		return err
	}
	defer n.Stop()
	c, err := n.Daemon.Client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	// CRI loads its image store as it starts; one listing waits for it.
	if _, err := n.Images(); err != nil {
		return err
	}
	if err := startupCollected(ctx, c, testnode.Namespace); err != nil {
		return err
	}
	return f(n)
}

// measureCRI seeds a node's store and times imgprune against crictl's
// prune, each on its own copy.
func measureCRI(ctx context.Context, bin string, w workload, step func(string, func() (run, error)) error, dir string) (criNode, error) {
	cn, err := seedCRI(ctx, dir, w)
	if err != nil {
		return cn, err
	}
	args := func(n *testnode.Node, more ...string) []string {
		return append([]string{"--namespace", testnode.Namespace, "--address", n.Daemon.Address, "--root", filepath.Join(n.Dir(), "root"),
			"prune", "-a", "--force", "--format", "json"}, more...)
	}
	imgpruneOn := func(more ...string) func() (run, error) {
		return func() (run, error) {
			var r run
			err := cn.onNode(ctx, func(n *testnode.Node) error {
				var err error
				r, err = exeIn(ctx, bin, args(n, more...))
				return err
			})
			return r, err
		}
	}
	if err := step(cCRIDry, imgpruneOn("--dry-run")); err != nil {
		return cn, err
	}
	if err := step(cCRIPrune, imgpruneOn()); err != nil {
		return cn, err
	}
	err = step(cCrictl, func() (run, error) {
		var r run
		err := cn.onNode(ctx, func(n *testnode.Node) error {
			start := time.Now()
			if _, err := n.Crictl("rmi", "--prune"); err != nil {
				return err
			}
			r.wall = time.Since(start)
			return nil
		})
		return r, err
	})
	return cn, err
}
