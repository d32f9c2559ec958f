// Package integration tests imgprune against a real containerd daemon that
// the tests start themselves.
package integration

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/types/known/anypb"
	"gotest.tools/v3/assert"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/internal/testimage"
)

var daemon *testctrd.Daemon

// snapshotter is the one the tests unpack into.
var snapshotter = envOr("IMGPRUNE_TEST_SNAPSHOTTER", "native")

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func TestMain(m *testing.M) {
	if os.Getenv(holdLockEnv) != "" {
		os.Exit(holdLock())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "imgprune-it")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	daemon, err = testctrd.Start(dir)
	if err != nil {
		// Never skip: a test run without containerd tests nothing.
		fmt.Fprintln(os.Stderr, "start containerd:", err)
		return 1
	}
	defer daemon.Stop()
	defer func() {
		if binPath != "" {
			os.RemoveAll(filepath.Dir(binPath))
		}
	}()
	return m.Run()
}

// env is one test's own namespace on the shared daemon.
type env struct {
	ctx    context.Context
	t      testing.TB
	client *client.Client
	ns     string
	svc    *imgsvc.Service
}

var nsInvalid = regexp.MustCompile(`[^a-z0-9]+`)

func newEnv(t *testing.T, opts ...imgsvc.Opt) *env {
	t.Helper()
	ns := strings.Trim(nsInvalid.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(ns) > 60 {
		// The tail tells the test apart to a reader; the hash of the whole
		// name keeps two tests whose names end alike apart.
		h := fnv.New32a()
		h.Write([]byte(t.Name()))
		ns = fmt.Sprintf("%s-%08x", strings.TrimLeft(ns[len(ns)-51:], "-"), h.Sum32())
	}
	c, err := client.New(daemon.Address, client.WithDefaultNamespace(ns))
	assert.NilError(t, err)
	t.Cleanup(func() { c.Close() })
	e := &env{ctx: context.Background(), t: t, client: c, ns: ns}
	// Each test's namespace is a Docker Engine's store, unless it says
	// otherwise.
	e.svc = imgsvc.NewFromClient(c, ns, append([]imgsvc.Opt{imgsvc.WithSnapshotter(snapshotter), imgsvc.WithDanglingRecords(true)}, opts...)...)
	return e
}

// nsCtx is the test's context in its namespace.
func (e *env) nsCtx() context.Context {
	return namespaces.WithNamespace(e.ctx, e.ns)
}

// write writes imgs and their name records, as another tool would: without
// dangling records.
func (e *env) write(imgs ...testimage.Image) {
	e.t.Helper()
	ctx, done, err := e.client.WithLease(e.nsCtx(), leases.WithRandomID())
	assert.NilError(e.t, err)
	defer done(ctx)
	for _, img := range imgs {
		_, err := img.Write(ctx, e.client.ContentStore(), e.client.ImageService())
		assert.NilError(e.t, err)
	}
}

// writeDangling writes img with only its dangling record: an image whose
// last name was removed.
func (e *env) writeDangling(img testimage.Image) {
	e.t.Helper()
	ctx, done, err := e.client.WithLease(e.nsCtx(), leases.WithRandomID())
	assert.NilError(e.t, err)
	defer done(ctx)
	_, err = img.Write(ctx, e.client.ContentStore(), e.client.ImageService())
	assert.NilError(e.t, err)
	_, err = e.client.ImageService().Create(ctx, images.Image{Name: "moby-dangling@" + img.Target.Digest.String(), Target: img.Target})
	assert.NilError(e.t, err)
}

// container creates a container record (no task) created by ref.
func (e *env) container(id, ref string, labels map[string]string) {
	e.t.Helper()
	_, err := e.client.ContainerService().Create(e.nsCtx(), containers.Container{
		ID:      id,
		Image:   ref,
		Labels:  labels,
		Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		Spec:    &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte("{}")},
	})
	assert.NilError(e.t, err)
}

// names lists the record names of the namespace, dangling ones included.
func (e *env) names() map[string]digest.Digest {
	e.t.Helper()
	records, err := e.client.ImageService().List(e.nsCtx())
	assert.NilError(e.t, err)
	out := map[string]digest.Digest{}
	for _, r := range records {
		out[r.Name] = r.Target.Digest
	}
	return out
}

// hasContent reports whether every blob of img is in the namespace.
func (e *env) hasContent(img testimage.Image) bool {
	e.t.Helper()
	for _, b := range img.Blobs() {
		if _, err := e.client.ContentStore().Info(e.nsCtx(), b.Desc.Digest); err != nil {
			return false
		}
	}
	return true
}

// hasNoContent reports whether no blob of img is in the namespace.
func (e *env) hasNoContent(img testimage.Image) bool {
	e.t.Helper()
	for _, b := range img.Blobs() {
		if _, err := e.client.ContentStore().Info(e.nsCtx(), b.Desc.Digest); err == nil {
			return false
		}
	}
	return true
}

// prune runs a prune with filter flags; it fails the test on error.
func (e *env) prune(flags []string, opts ...prune.Opt) prune.Report {
	e.t.Helper()
	args, err := plan.ParseFilterFlags(flags)
	assert.NilError(e.t, err)
	f, err := plan.ParseFilters(args, time.Now())
	assert.NilError(e.t, err)
	rep, err := e.svc.Prune(e.ctx, f, opts...)
	assert.NilError(e.t, err)
	return rep
}

// uniqueBytes is the size of the blobs of gone that none of kept has.
func uniqueBytes(gone []testimage.Image, kept []testimage.Image) int64 {
	keep := map[digest.Digest]bool{}
	for _, img := range kept {
		for _, b := range img.Blobs() {
			keep[b.Desc.Digest] = true
		}
	}
	seen := map[digest.Digest]bool{}
	var n int64
	for _, img := range gone {
		for _, b := range img.Blobs() {
			if !keep[b.Desc.Digest] && !seen[b.Desc.Digest] {
				seen[b.Desc.Digest] = true
				n += b.Desc.Size
			}
		}
	}
	return n
}
