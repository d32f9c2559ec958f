package testctrd

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"gotest.tools/v3/assert"
	"gotest.tools/v3/assert/cmp"
)

// startDaemon starts a daemon in a fresh short temporary directory and stops
// it when the test ends.
func startDaemon(t *testing.T, opts ...Option) *Daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctrd")
	assert.NilError(t, err)
	d, err := Start(dir, opts...)
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	})
	return d
}

func newClient(t *testing.T, ctx context.Context, d *Daemon) *client.Client {
	t.Helper()
	c, err := d.Client(ctx)
	assert.NilError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testImage() images.Image {
	img := images.Image{
		Name:   "docker.io/library/testctrd:latest",
		Labels: map[string]string{"imgprune.test": "testctrd"},
	}
	img.Target.MediaType = "application/vnd.oci.image.manifest.v1+json"
	img.Target.Digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	img.Target.Size = 1234
	return img
}

func TestDaemon(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	d := startDaemon(t)
	assert.Assert(t, d.PID > 0)
	assert.Assert(t, processAlive(d.PID), "pid %d", d.PID)
	assert.Equal(t, d.Address, filepath.Join(d.Dir, "containerd.sock"))

	c := newClient(t, ctx, d)
	v, err := c.Version(ctx)
	assert.NilError(t, err)
	assert.Assert(t, v.Version != "")
	t.Logf("containerd %s at %s (pid %d)", v.Version, d.Address, d.PID)

	nsctx := namespaces.WithNamespace(ctx, "test")
	is := c.ImageService()
	img := testImage()
	created, err := is.Create(nsctx, img)
	assert.NilError(t, err)
	assert.Check(t, !created.CreatedAt.IsZero())

	got, err := is.Get(nsctx, img.Name)
	assert.NilError(t, err)
	assert.Check(t, cmp.Equal(got.Name, img.Name))
	assert.Check(t, cmp.DeepEqual(got.Target, img.Target))
	assert.Check(t, cmp.DeepEqual(got.Labels, img.Labels))

	_, err = is.Create(nsctx, img)
	assert.Check(t, errdefs.IsAlreadyExists(err), "second create: %v", err)

	// Image records are namespace scoped.
	_, err = is.Get(namespaces.WithNamespace(ctx, "other"), img.Name)
	assert.Check(t, errdefs.IsNotFound(err), "get in other namespace: %v", err)
	nss, err := c.NamespaceService().List(ctx)
	assert.NilError(t, err)
	assert.Check(t, cmp.Contains(nss, "test"))

	assert.NilError(t, c.Close())
	assert.NilError(t, d.Stop())
	assert.Check(t, !processAlive(d.PID), "pid %d still running after Stop", d.PID)
	if os.Getenv("KEEP") == "" {
		_, err = os.Stat(d.Dir)
		assert.Check(t, os.IsNotExist(err), "stat %s: %v", d.Dir, err)
	}
	assert.Check(t, cmp.Len(mountsUnder(t, d.Dir), 0))

	// Stop is idempotent.
	assert.NilError(t, d.Stop())
}

func TestRestartKeepsStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nsctx := namespaces.WithNamespace(ctx, "test")

	d := startDaemon(t)
	c := newClient(t, ctx, d)
	_, err := c.ImageService().Create(nsctx, testImage())
	assert.NilError(t, err)
	assert.NilError(t, c.Close())

	t.Setenv("KEEP", "1")
	assert.NilError(t, d.Stop())
	assert.Check(t, !processAlive(d.PID))
	assert.NilError(t, os.Setenv("KEEP", ""))

	d2, err := Start(d.Dir)
	assert.NilError(t, err)
	t.Cleanup(func() { _ = d2.Stop() })
	assert.Check(t, d2.PID != d.PID)
	c2 := newClient(t, ctx, d2)
	got, err := c2.ImageService().Get(nsctx, testImage().Name)
	assert.NilError(t, err)
	assert.Check(t, cmp.Equal(got.Target.Digest, testImage().Target.Digest))
}

// criPlugins are the plugins that WithCRI enables, as type and ID.
var criPlugins = [][2]string{
	{"io.containerd.grpc.v1", "cri"},
	{"io.containerd.cri.v1", "images"},
	{"io.containerd.cri.v1", "runtime"},
	{"io.containerd.podsandbox.controller.v1", "podsandbox"},
}

// pluginErrs returns the loaded plugins of c, as "type.id", with their
// init errors ("" when they loaded).
func pluginErrs(t *testing.T, ctx context.Context, c *client.Client) map[string]string {
	t.Helper()
	resp, err := c.IntrospectionService().Plugins(ctx)
	assert.NilError(t, err)
	out := map[string]string{}
	for _, p := range resp.Plugins {
		out[p.Type+"."+p.ID] = p.GetInitErr().GetMessage()
	}
	return out
}

// TestStartWithCRI starts a Kubernetes node's containerd. It needs the runc
// and runc shim of `make node-deps`, and crictl for its last checks; it is
// skipped without runc or the shim.
func TestStartWithCRI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repo, err := RepoRoot()
	assert.NilError(t, err)
	nodeBin := filepath.Join(repo, "_output", "e2e", "bin")
	for _, name := range []string{"runc", "containerd-shim-runc-v2"} {
		if _, err := os.Stat(filepath.Join(nodeBin, name)); err != nil {
			t.Skipf("no %s in %s: run make node-deps", name, nodeBin)
		}
	}

	const sandbox = "127.0.0.1:1/testctrd/pause:1"
	dir, err := os.MkdirTemp("", "ctrd")
	assert.NilError(t, err)
	d, err := Start(dir, WithCRI(sandbox))
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	})
	assert.Check(t, d.CRI)
	assert.Check(t, cmp.Equal(d.CRIEndpoint(), "unix://"+d.Address))
	fi, err := os.Stat(d.RegistryHostsDir())
	assert.NilError(t, err)
	assert.Check(t, fi.IsDir())

	c := newClient(t, ctx, d)
	loaded := pluginErrs(t, ctx, c)
	for _, p := range criPlugins {
		msg, ok := loaded[p[0]+"."+p[1]]
		assert.Check(t, ok, "plugin %s.%s not loaded", p[0], p[1])
		assert.Check(t, cmp.Equal(msg, ""), "plugin %s.%s", p[0], p[1])
	}
	config, err := os.ReadFile(filepath.Join(d.Dir, "config.toml"))
	assert.NilError(t, err)
	for _, want := range []string{
		"sandbox = '" + sandbox + "'",
		"config_path = '" + d.RegistryHostsDir() + "'",
		"BinaryName = '" + filepath.Join(nodeBin, "runc") + "'",
		"SystemdCgroup = false",
	} {
		assert.Check(t, cmp.Contains(string(config), want))
	}

	crictl := filepath.Join(nodeBin, "crictl")
	if _, err := os.Stat(crictl); err != nil {
		t.Logf("no crictl in %s (make node-deps): CRI API not checked", nodeBin)
		return
	}
	out, err := exec.CommandContext(ctx, crictl, "--runtime-endpoint", d.CRIEndpoint(), "--image-endpoint", d.CRIEndpoint(), "version").CombinedOutput()
	assert.NilError(t, err, "%s", out)
	assert.Check(t, cmp.Contains(string(out), "RuntimeName:  containerd"))
	// DIR/crictl.yaml names both endpoints.
	out, err = exec.CommandContext(ctx, crictl, "--config", filepath.Join(d.Dir, "crictl.yaml"), "info").CombinedOutput()
	assert.NilError(t, err, "%s", out)
	assert.Check(t, cmp.Regexp(`"type": "RuntimeReady"`, string(out)))
	assert.Check(t, cmp.Contains(string(out), `"Root": "`+filepath.Join(d.Dir, "runc")+`"`))
}

func TestWithCRINeedsSandboxImage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "daemon")
	_, err := Start(dir, WithCRI(""))
	assert.ErrorContains(t, err, "sandbox image")
	_, err = os.Stat(dir)
	assert.Check(t, os.IsNotExist(err))
}

// TestStartIgnoresCRIEnv: without WithCRI, IMGPRUNE_CRI in the test's
// environment does not reach hack/containerd-up.sh.
func TestStartIgnoresCRIEnv(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Setenv(criEnv, "1")
	t.Setenv(sandboxImageEnv, "127.0.0.1:1/testctrd/pause:1")
	d := startDaemon(t)
	assert.Check(t, !d.CRI)
	loaded := pluginErrs(t, ctx, newClient(t, ctx, d))
	for _, p := range criPlugins {
		_, ok := loaded[p[0]+"."+p[1]]
		assert.Check(t, !ok, "plugin %s.%s loaded", p[0], p[1])
	}
}

// TestStartWithOwnCollectionsAndTraceLog checks that the options win over
// the environment: containerd's own collection schedule, and a trace log
// with the collections' times in it.
func TestStartWithOwnCollectionsAndTraceLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Setenv(gcEnv, "test")
	t.Setenv(logLevelEnv, "info")
	d := startDaemon(t, WithOwnCollections(), WithTraceLog())
	config, err := os.ReadFile(filepath.Join(d.Dir, "config.toml"))
	assert.NilError(t, err)
	assert.Check(t, !strings.Contains(string(config), "pause_threshold"), "the test schedule is in the config:\n%s", config)

	c := newClient(t, ctx, d)
	ctx = namespaces.WithNamespace(ctx, "testctrd")
	_, err = c.ImageService().Create(ctx, testImage())
	assert.NilError(t, err)
	assert.NilError(t, c.ImageService().Delete(ctx, testImage().Name, images.SynchronousDelete()))
	log, err := os.ReadFile(filepath.Join(d.Dir, "containerd.log"))
	assert.NilError(t, err)
	assert.Check(t, cmp.Contains(string(log), `msg="garbage collected"`))
}

func TestStartWithoutBinary(t *testing.T) {
	t.Setenv(BinaryEnv, filepath.Join(t.TempDir(), "no-containerd"))
	dir := filepath.Join(t.TempDir(), "daemon")
	_, err := Start(dir)
	assert.ErrorContains(t, err, "make containerd")
	_, err = os.Stat(dir)
	assert.Check(t, os.IsNotExist(err))
}

// TestSnapshotters checks that layered snapshots can be prepared, committed,
// mounted and viewed. The native snapshotter must work everywhere; overlayfs
// is skipped only when containerd reports that its plugin failed to load.
func TestSnapshotters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	d := startDaemon(t)
	c := newClient(t, ctx, d)
	resp, err := c.IntrospectionService().Plugins(ctx)
	assert.NilError(t, err)
	initErr := map[string]string{}
	for _, p := range resp.Plugins {
		if p.Type == "io.containerd.snapshotter.v1" {
			initErr[p.ID] = p.GetInitErr().GetMessage()
		}
	}

	for _, tc := range []struct{ name, mountType string }{
		{name: "native", mountType: "bind"},
		{name: "overlayfs", mountType: "overlay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, ok := initErr[tc.name]
			assert.Assert(t, ok, "snapshotter %s not registered", tc.name)
			if msg != "" {
				if tc.name == "native" {
					t.Fatalf("native snapshotter failed to load: %s", msg)
				}
				t.Skipf("%s snapshotter unavailable on this host: %s", tc.name, msg)
			}
			checkSnapshotter(t, nsLeaseCtx(t, ctx, c), c, tc.name, tc.mountType)
		})
	}
}

// nsLeaseCtx returns a context in namespace "test" holding a lease, so the
// garbage collector keeps the test's snapshots until the test ends.
func nsLeaseCtx(t *testing.T, ctx context.Context, c *client.Client) context.Context {
	t.Helper()
	ctx = namespaces.WithNamespace(ctx, "test")
	ctx, done, err := c.WithLease(ctx)
	assert.NilError(t, err)
	t.Cleanup(func() { _ = done(context.WithoutCancel(ctx)) })
	return ctx
}

func checkSnapshotter(t *testing.T, ctx context.Context, c *client.Client, name, layeredMountType string) {
	sn := c.SnapshotService(name)

	mounts, err := sn.Prepare(ctx, "base-active", "")
	assert.NilError(t, err)
	withMounted(t, mounts, func(root string) {
		assert.NilError(t, os.WriteFile(filepath.Join(root, "base"), []byte("base\n"), 0o644))
	})
	assert.NilError(t, sn.Commit(ctx, "base", "base-active"))

	mounts, err = sn.Prepare(ctx, "top-active", "base")
	assert.NilError(t, err)
	withMounted(t, mounts, func(root string) {
		assert.NilError(t, os.WriteFile(filepath.Join(root, "top"), []byte("top\n"), 0o644))
	})
	assert.NilError(t, sn.Commit(ctx, "top", "top-active"))

	// A view of two layers needs a real layered mount for overlayfs
	// (two lower directories).
	mounts, err = sn.View(ctx, "top-view", "top")
	assert.NilError(t, err)
	assert.Assert(t, len(mounts) > 0)
	assert.Check(t, cmp.Equal(mounts[0].Type, layeredMountType), "mounts: %+v", mounts)
	withMounted(t, mounts, func(root string) {
		for _, f := range []string{"base", "top"} {
			b, err := os.ReadFile(filepath.Join(root, f))
			assert.NilError(t, err)
			assert.Check(t, cmp.Equal(string(b), f+"\n"))
		}
	})

	info, err := sn.Stat(ctx, "top")
	assert.NilError(t, err)
	assert.Check(t, cmp.Equal(info.Parent, "base"))
	assert.NilError(t, sn.Remove(ctx, "top-view"))
	assert.NilError(t, sn.Remove(ctx, "top"))
	assert.NilError(t, sn.Remove(ctx, "base"))
}

func withMounted(t *testing.T, mounts []mount.Mount, fn func(root string)) {
	t.Helper()
	target := t.TempDir()
	assert.NilError(t, mount.All(mounts, target), "mounts: %+v", mounts)
	defer func() {
		assert.Check(t, mount.UnmountAll(target, 0))
	}()
	fn(target)
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z'
}

// mountsUnder returns the mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	assert.NilError(t, err)
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if m := fields[4]; m == dir || strings.HasPrefix(m, dir+"/") {
			out = append(out, m)
		}
	}
	assert.NilError(t, sc.Err())
	return out
}
