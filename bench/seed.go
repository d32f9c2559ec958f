package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/imgprune/imgprune/daemon/store/embedded"
	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/internal/testimage"
)

// namespace is where the workloads are seeded: a Docker Engine's, where a
// dangling record per target is the refcount, as in the per-name pattern
// the benchmark measures against.
const namespace = "moby"

// workload is one store to prune.
type workload struct {
	// names is the number of image records; the targets are 80 % as many.
	names int
	// unpacked stores have every image unpacked into overlayfs, and their
	// containers a rootfs snapshot, as docker load and docker create leave
	// them.
	unpacked bool
	// dryOnly workloads are too large for every contender: only the dry run
	// is measured.
	dryOnly bool
	// cri workloads are a Kubernetes node's store: names images pulled
	// through containerd's CRI plugin (three records each), measured
	// against crictl's prune.
	cri bool
	// docker workloads are a Docker Engine's store: names images loaded
	// with docker load, measured against docker image prune -a.
	docker bool
}

func (w workload) String() string {
	if w.cri {
		return fmt.Sprintf("%d images, CRI node", w.names)
	}
	if w.docker {
		return fmt.Sprintf("%d images, Docker Engine", w.names)
	}
	kind := "content"
	if w.unpacked {
		kind = "unpacked"
	}
	return fmt.Sprintf("%d names, %s", w.names, kind)
}

// seeded is a workload's store at rest: a daemon directory whose root the
// contenders each get a copy of.
type seeded struct {
	dir   string
	names []string
	blobs int
	snaps int
	ctrs  int
	took  time.Duration
}

// seed writes w into a store under dir: in-process when it is content only,
// through a private containerd, stopped after, when it is unpacked. Targets
// have 3 layers, 2 of them from a shared pool; every fourth target has a
// second name; one target in ten is used by a container record, by name,
// by full ID, by short ID or by digest in turn. No dangling records: the
// store is as docker, nerdctl or ctr leave it.
func (w workload) seed(ctx context.Context, dir string) (seeded, error) {
	start := time.Now()
	targets := w.names * 4 / 5
	set := testimage.NewSet(testimage.SetOptions{Count: targets, LayersPerImage: 3, LayerSize: 512, SharedRate: 0.5, Seed: "bench", NamePrefix: "example.com/bench/app"})
	extra := w.names - targets
	for i := 0; i < targets && extra > 0; i += 4 {
		set[i].Names = append(set[i].Names, fmt.Sprintf("example.com/bench/app%d:v2", i))
		extra--
	}
	s := seeded{dir: dir}
	for _, img := range set {
		s.names = append(s.names, img.Names...)
	}
	var err error
	if w.unpacked {
		err = w.seedDaemon(ctx, dir, set, &s)
	} else {
		err = w.seedOffline(ctx, dir, set, &s)
	}
	s.took = time.Since(start)
	return s, err
}

// seedOffline writes a content-only store in-process, a thousand images
// to a transaction: what the daemon would take minutes to write.
func (w workload) seedOffline(ctx context.Context, dir string, set []testimage.Image, s *seeded) error {
	e, err := embedded.Open(ctx, filepath.Join(dir, "root"), embedded.CreateStore())
	if err != nil {
		return err
	}
	defer e.Close()
	st := e.Stores()
	ctx = namespaces.WithNamespace(ctx, namespace)
	for chunk := range slices.Chunk(set, 1000) {
		err := e.Batch(ctx, func(ctx context.Context) error {
			for _, img := range chunk {
				if _, err := img.Write(ctx, st.Content, st.Images); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for i := 5; i < len(set); i += 10 {
		if _, err := st.Containers.Create(ctx, w.containerRecord(set[i], i)); err != nil {
			return err
		}
		s.ctrs++
	}
	return st.Content.Walk(ctx, func(content.Info) error { s.blobs++; return nil })
}

// seedDaemon writes the store through a daemon, which unpacks it.
func (w workload) seedDaemon(ctx context.Context, dir string, set []testimage.Image, s *seeded) error {
	return withDaemon(ctx, dir, func(_ *testctrd.Daemon, c *client.Client) error {
		ctx := namespaces.WithNamespace(ctx, namespace)
		// The daemon collects by itself as records come and go: hold what
		// is written until its record is there.
		l, err := c.LeasesService().Create(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour))
		if err != nil {
			return err
		}
		defer c.LeasesService().Delete(context.WithoutCancel(ctx), l)
		ctx = leases.WithLease(ctx, l.ID)
		var g errgroup.Group
		g.SetLimit(4)
		for _, img := range set {
			g.Go(func() error {
				records, err := img.Write(ctx, c.ContentStore(), c.ImageService())
				if err != nil {
					return err
				}
				return client.NewImage(c, records[0]).Unpack(ctx, "overlayfs")
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		for i := 5; i < len(set); i += 10 {
			if err := w.container(ctx, c, set[i], i); err != nil {
				return err
			}
			s.ctrs++
		}
		s.blobs, s.snaps, err = count(ctx, c)
		return err
	})
}

// containerRecord is a container that uses img in one of four forms: by
// name, full ID, short ID or digest.
func (w workload) containerRecord(img testimage.Image, i int) containers.Container {
	id := img.Target.Digest
	ref := []string{img.Names[0], id.String(), id.Encoded()[:12], fmt.Sprintf("example.com/bench/app%d@%s", i, id)}[(i/10)%4]
	return containers.Container{
		ID:      fmt.Sprintf("ctr-%d", i),
		Image:   ref,
		Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		Spec:    &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte("{}")},
	}
}

// container makes img's container record, with a rootfs snapshot in an
// unpacked store.
func (w workload) container(ctx context.Context, c *client.Client, img testimage.Image, i int) error {
	ctr := w.containerRecord(img, i)
	if w.unpacked {
		diffIDs, err := client.NewImage(c, images.Image{Name: img.Names[0], Target: img.Target}).RootFS(ctx)
		if err != nil {
			return err
		}
		ctr.Snapshotter, ctr.SnapshotKey = "overlayfs", ctr.ID
		if _, err := c.SnapshotService("overlayfs").Prepare(ctx, ctr.SnapshotKey, identity.ChainID(diffIDs).String()); err != nil {
			return fmt.Errorf("rootfs of %s: %w", ctr.ID, err)
		}
	}
	_, err := c.ContainerService().Create(ctx, ctr)
	return err
}

// count counts the namespace's blobs and overlayfs snapshots.
func count(ctx context.Context, c *client.Client) (blobs, snaps int, err error) {
	if err := c.ContentStore().Walk(ctx, func(content.Info) error { blobs++; return nil }); err != nil {
		return 0, 0, err
	}
	err = c.SnapshotService("overlayfs").Walk(ctx, func(context.Context, snapshots.Info) error { snaps++; return nil })
	return blobs, snaps, err
}

// copyStore copies the seeded root into a new daemon directory.
func copyStore(s seeded) (string, error) {
	dir, err := os.MkdirTemp("", "bench")
	if err != nil {
		return "", err
	}
	out, err := exec.Command("cp", "-a", filepath.Join(s.dir, "root"), filepath.Join(dir, "root")).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("copy store: %v: %s", err, out)
	}
	// The copy's writeback must not land in the timed run.
	unix.Sync()
	return dir, nil
}
