package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	mobyclient "github.com/moby/moby/client"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/daemon/server"
	"github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/internal/testimage"
)

// serve runs the Engine API over the test's namespace on a unix socket and
// returns its path and a moby client (which negotiates its version).
func (e *env) serve(t *testing.T) (string, *mobyclient.Client) {
	t.Helper()
	return e.serveService(t, e.svc)
}

// serveService serves the Engine API over svc.
func (e *env) serveService(t *testing.T, svc *imgsvc.Service) (string, *mobyclient.Client) {
	t.Helper()
	dir, err := os.MkdirTemp("", "imgprune-serve")
	assert.NilError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	assert.NilError(t, err)
	ctx, stop := context.WithCancel(e.ctx)
	served := make(chan error, 1)
	go func() { served <- server.New(svc).Serve(ctx, l, 10*time.Second) }()
	t.Cleanup(func() {
		stop()
		assert.Check(t, <-served)
	})
	c, err := mobyclient.New(mobyclient.WithHost("unix://" + sock))
	assert.NilError(t, err)
	t.Cleanup(func() { c.Close() })
	return sock, c
}

// apiLoad loads imgs through the API and returns docker's lines.
func apiLoad(t *testing.T, ctx context.Context, c *mobyclient.Client, imgs ...testimage.Image) string {
	t.Helper()
	var archive bytes.Buffer
	assert.NilError(t, testimage.WriteArchive(&archive, imgs...))
	res, err := c.ImageLoad(ctx, &archive, mobyclient.ImageLoadWithQuiet(true))
	assert.NilError(t, err)
	defer res.Close()
	out, err := io.ReadAll(res)
	assert.NilError(t, err)
	return string(out)
}

func apiCreate(t *testing.T, ctx context.Context, c *mobyclient.Client, ref string) string {
	t.Helper()
	res, err := c.ContainerCreate(ctx, mobyclient.ContainerCreateOptions{Config: &container.Config{Image: ref, Cmd: []string{"sleep", "60"}}})
	assert.NilError(t, err)
	return res.ID
}

// TestServeVersions: the client negotiates the newest version served; a
// version outside those served is refused with the Engine's words; the
// oldest served answers under its /v1.24 prefix.
func TestServeVersions(t *testing.T) {
	e := newEnv(t)
	sock, c := e.serve(t)

	ping, err := c.Ping(e.ctx, mobyclient.PingOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(ping.APIVersion, server.APIVersion))
	v, err := c.ServerVersion(e.ctx, mobyclient.ServerVersionOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(v.APIVersion, server.APIVersion))
	assert.Check(t, is.Equal(v.MinAPIVersion, server.MinAPIVersion))
	info, err := c.Info(e.ctx, mobyclient.InfoOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(info.Info.Driver, snapshotter))

	hc := unixHTTP(sock)
	for path, want := range map[string]int{
		"/v1.24/images/json":          http.StatusOK,
		"/v1.56/_ping":                http.StatusOK,
		"/v1.23/images/json":          http.StatusBadRequest,
		"/v1.99/images/json":          http.StatusBadRequest,
		"/v1.56/nothing":              http.StatusNotFound,
		"/images/json?filters=%7Bbad": http.StatusBadRequest,
		"/images/json?filters=%7B%22nope%22%3A%7B%22x%22%3Atrue%7D%7D": http.StatusBadRequest,
	} {
		resp, err := hc.Get("http://imgprune" + path)
		assert.NilError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Check(t, is.Equal(resp.StatusCode, want), "%s: %s", path, body)
		assert.Check(t, is.Equal(resp.Header.Get("Api-Version"), server.APIVersion), path)
		if want != http.StatusOK {
			assert.Check(t, is.Contains(string(body), `"message":`), path)
		}
	}
	resp, err := hc.Get("http://imgprune/v1.23/_ping")
	assert.NilError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Check(t, is.Contains(string(body), "client version 1.23 is too old. Minimum supported API version is 1.24"))
}

// TestServeImages: load, list, inspect, tag and the images part of df, as
// the Engine answers them.
func TestServeImages(t *testing.T) {
	e := newEnv(t)
	sock, c := e.serve(t)
	ctx := e.ctx
	img := testimage.New(testimage.WithNames("docker.io/library/busybox:latest"), testimage.WithLayers(layer(t, "busybox")), testimage.WithLabels(map[string]string{"tier": "base"}))

	out := apiLoad(t, ctx, c, img)
	assert.Check(t, is.Contains(out, `"stream":"Loaded image: busybox:latest\n"`))

	_, err := c.ImageTag(ctx, mobyclient.ImageTagOptions{Source: "busybox", Target: "example.com/app:1"})
	assert.NilError(t, err)
	_, err = c.ImageTag(ctx, mobyclient.ImageTagOptions{Source: "nothing:here", Target: "example.com/app:2"})
	assert.Check(t, errdefs.IsNotFound(err), "%v", err)

	list, err := c.ImageList(ctx, mobyclient.ImageListOptions{})
	assert.NilError(t, err)
	assert.Assert(t, is.Len(list.Items, 1))
	sum := list.Items[0]
	assert.Check(t, is.Equal(sum.ID, img.Target.Digest.String()))
	assert.Check(t, is.DeepEqual(sum.RepoTags, []string{"busybox:latest", "example.com/app:1"}))
	assert.Check(t, is.DeepEqual(sum.RepoDigests, []string{"busybox@" + img.Target.Digest.String(), "example.com/app@" + img.Target.Digest.String()}))
	// Docker's size: the content and the snapshots it is unpacked into.
	assert.Check(t, sum.Size > img.Size(), "size %d, content %d", sum.Size, img.Size())
	assert.Check(t, is.Equal(sum.Labels["tier"], "base"))

	both := []string{"busybox:latest", "example.com/app:1"}
	for _, tc := range []struct {
		filter, value string
		// tags are the image's tags shown, nil when the image is not.
		tags []string
	}{
		{"dangling", "true", nil},
		{"dangling", "false", both},
		{"label", "tier=base", both},
		{"label", "tier=other", nil},
		{"label!", "tier=base", nil},
		// As the Engine, a reference filter shows the names that match.
		{"reference", "busybox", []string{"busybox:latest"}},
		{"reference", "example.com/*", []string{"example.com/app:1"}},
		{"reference", "alpine", nil},
		{"reference!", "busybox", []string{"example.com/app:1"}},
		{"reference!", "example.com/*", []string{"busybox:latest"}},
	} {
		list, err := c.ImageList(ctx, mobyclient.ImageListOptions{Filters: make(mobyclient.Filters).Add(tc.filter, tc.value)})
		assert.NilError(t, err, "%s=%s", tc.filter, tc.value)
		if tc.tags == nil {
			assert.Check(t, is.Len(list.Items, 0), "%s=%s", tc.filter, tc.value)
			continue
		}
		if assert.Check(t, is.Len(list.Items, 1), "%s=%s", tc.filter, tc.value) {
			assert.Check(t, is.DeepEqual(list.Items[0].RepoTags, tc.tags), "%s=%s", tc.filter, tc.value)
		}
	}
	// An image none of whose names pass is not shown.
	list, err = c.ImageList(ctx, mobyclient.ImageListOptions{Filters: make(mobyclient.Filters).Add("reference!", "busybox", "example.com/*")})
	assert.NilError(t, err)
	assert.Check(t, is.Len(list.Items, 0))
	for _, bad := range [][2]string{{"dangling", "maybe"}, {"reference", "app:["}, {"reference!", "[a-"}} {
		_, err = c.ImageList(ctx, mobyclient.ImageListOptions{Filters: make(mobyclient.Filters).Add(bad[0], bad[1])})
		assert.Check(t, errdefs.IsInvalidArgument(err), "%s=%s: %v", bad[0], bad[1], err)
	}

	for _, ref := range []string{"busybox", "busybox:latest", img.Target.Digest.String(), img.Target.Digest.Encoded()[:12], "busybox@" + img.Target.Digest.String()} {
		inspect, err := c.ImageInspect(ctx, ref)
		assert.NilError(t, err, ref)
		assert.Check(t, is.Equal(inspect.ID, img.Target.Digest.String()), ref)
		assert.Check(t, is.DeepEqual(inspect.RepoTags, []string{"busybox:latest", "example.com/app:1"}), ref)
		assert.Check(t, is.Equal(inspect.Config.Labels["tier"], "base"), ref)
		assert.Check(t, is.Len(inspect.RootFS.Layers, 1), ref)
		assert.Check(t, is.Equal(inspect.Size, sum.Size), ref)
	}
	_, err = c.ImageInspect(ctx, "nothing:here")
	assert.Check(t, errdefs.IsNotFound(err), "%v", err)
	assert.Check(t, is.ErrorContains(err, "No such image: nothing:here"))

	du, err := c.DiskUsage(ctx, mobyclient.DiskUsageOptions{Images: true})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(du.Images.TotalCount, int64(1)))
	assert.Check(t, is.Equal(du.Images.TotalSize, sum.Size))
	assert.Check(t, is.Equal(du.Images.Reclaimable, sum.Size))
	// Before API 1.52, df has its older shape, whose lists are always
	// there, empty or not.
	code, body := apiGet(t, sock, "/v1.41/system/df")
	assert.Check(t, is.Equal(code, http.StatusOK))
	for _, key := range []string{`"LayersSize":`, `"Images":[{`, `"Containers":[]`, `"Volumes":[]`, `"BuildCache":[]`} {
		assert.Check(t, is.Contains(body, key))
	}
}

// TestServeLoadTellsUnnamedImages: a load tells each name it brought and,
// by its ID, each image that came without a name, in the archive's order,
// as the Engine does.
func TestServeLoadTellsUnnamedImages(t *testing.T) {
	e := newEnv(t)
	_, c := e.serve(t)
	named := newImage(t, "named", "docker.io/library/named:1")
	nameless, other := newImage(t, "nameless"), newImage(t, "nameless-too")

	out := apiLoad(t, e.ctx, c, nameless, named, other)

	assert.Check(t, is.Equal(out, `{"stream":"Loaded image ID: `+nameless.Target.Digest.String()+`\n"}`+"\n"+
		`{"stream":"Loaded image: named:1\n"}`+"\n"+
		`{"stream":"Loaded image ID: `+other.Target.Digest.String()+`\n"}`+"\n"))
}

// TestServeContainers: containers are records that keep their images; they
// are listed, inspected and removed as docker does.
func TestServeContainers(t *testing.T) {
	e := newEnv(t)
	_, c := e.serve(t)
	ctx := e.ctx
	img := newImage(t, "app", "docker.io/library/app:1")
	apiLoad(t, ctx, c, img)

	res, err := c.ContainerCreate(ctx, mobyclient.ContainerCreateOptions{Name: "web", Config: &container.Config{Image: "app:1", Cmd: []string{"serve"}, Labels: map[string]string{"role": "web"}}})
	assert.NilError(t, err)
	_, err = c.ContainerCreate(ctx, mobyclient.ContainerCreateOptions{Name: "web", Config: &container.Config{Image: "app:1", Cmd: []string{"serve"}}})
	assert.Check(t, errdefs.IsConflict(err), "%v", err)
	_, err = c.ContainerCreate(ctx, mobyclient.ContainerCreateOptions{Config: &container.Config{Image: "missing:1", Cmd: []string{"serve"}}})
	assert.Check(t, errdefs.IsNotFound(err), "%v", err)
	_, err = c.ContainerCreate(ctx, mobyclient.ContainerCreateOptions{Config: &container.Config{Image: "app:1"}})
	assert.Check(t, is.ErrorContains(err, "no command specified"))
	assert.Check(t, errdefs.IsInvalidArgument(err), "%v", err)

	// Its rootfs is prepared on the image's layers, as a real container's.
	_, err = e.client.SnapshotService(snapshotter).Stat(e.nsCtx(), res.ID)
	assert.Check(t, err, "the container has no rootfs snapshot")

	// Another creator's record (perhaps a running container) is not the
	// server's to show or to remove.
	e.container("foreign", "app:1", nil)
	_, err = c.ContainerRemove(ctx, "foreign", mobyclient.ContainerRemoveOptions{Force: true})
	assert.Check(t, errdefs.IsNotFound(err), "%v", err)
	_, err = e.client.ContainerService().Get(e.nsCtx(), "foreign")
	assert.Check(t, err, "the foreign record went")

	running, err := c.ContainerList(ctx, mobyclient.ContainerListOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Len(running.Items, 0), "nothing runs")
	all, err := c.ContainerList(ctx, mobyclient.ContainerListOptions{All: true})
	assert.NilError(t, err)
	assert.Assert(t, is.Len(all.Items, 1))
	assert.Check(t, is.Equal(all.Items[0].ID, res.ID))
	assert.Check(t, is.DeepEqual(all.Items[0].Names, []string{"/web"}))
	assert.Check(t, is.Equal(all.Items[0].Image, "app:1"))
	assert.Check(t, is.Equal(all.Items[0].ImageID, img.Target.Digest.String()))
	assert.Check(t, is.Equal(all.Items[0].State, container.StateCreated))

	for _, ref := range []string{res.ID, res.ID[:12], "web", "/web"} {
		inspect, err := c.ContainerInspect(ctx, ref, mobyclient.ContainerInspectOptions{})
		assert.NilError(t, err, ref)
		assert.Check(t, is.Equal(inspect.Container.ID, res.ID), ref)
		assert.Check(t, is.Equal(inspect.Container.Name, "/web"), ref)
		assert.Check(t, is.Equal(inspect.Container.Image, img.Target.Digest.String()), ref)
		assert.Check(t, is.Equal(inspect.Container.Config.Image, "app:1"), ref)
		assert.Check(t, is.Equal(inspect.Container.Config.Labels["role"], "web"), ref)
	}

	// df counts its rootfs, as ps does when asked for sizes.
	sized, err := c.ContainerList(ctx, mobyclient.ContainerListOptions{All: true, Size: true})
	assert.NilError(t, err)
	assert.Assert(t, is.Len(sized.Items, 1))
	assert.Check(t, sized.Items[0].SizeRw > 0, "no rootfs size")
	du, err := c.DiskUsage(ctx, mobyclient.DiskUsageOptions{Containers: true})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(du.Containers.TotalCount, int64(1)))
	assert.Check(t, is.Equal(du.Containers.TotalSize, sized.Items[0].SizeRw))
	assert.Check(t, is.Equal(du.Containers.Reclaimable, sized.Items[0].SizeRw))
	assert.Check(t, is.Equal(all.Items[0].SizeRw, int64(0)), "sized without size=1")

	// The record keeps its image from a prune.
	pruned, err := c.ImagePrune(ctx, mobyclient.ImagePruneOptions{Filters: make(mobyclient.Filters).Add("dangling", "false")})
	assert.NilError(t, err)
	assert.Check(t, is.Len(pruned.Report.ImagesDeleted, 0))
	assert.Check(t, e.hasContent(img))

	_, err = c.ContainerRemove(ctx, "web", mobyclient.ContainerRemoveOptions{})
	assert.NilError(t, err)
	assert.NilError(t, e.client.ContainerService().Delete(e.nsCtx(), "foreign"))
	_, err = c.ContainerInspect(ctx, "web", mobyclient.ContainerInspectOptions{})
	assert.Check(t, errdefs.IsNotFound(err), "%v", err)
	_, err = e.client.SnapshotService(snapshotter).Stat(e.nsCtx(), res.ID)
	assert.Check(t, errdefs.IsNotFound(err), "the rootfs outlived the container: %v", err)
	_, err = c.ContainerRemove(ctx, "web", mobyclient.ContainerRemoveOptions{})
	assert.Check(t, errdefs.IsNotFound(err), "%v", err)
	list, err := c.ImageList(ctx, mobyclient.ImageListOptions{})
	assert.NilError(t, err)
	assert.Assert(t, is.Len(list.Items, 1))
	pruned, err = c.ImagePrune(ctx, mobyclient.ImagePruneOptions{Filters: make(mobyclient.Filters).Add("dangling", "false")})
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(pruned.Report.ImagesDeleted, []image.DeleteResponse{{Untagged: "app:1"}, {Deleted: img.Target.Digest.String()}}))
	assert.Check(t, is.Equal(pruned.Report.SpaceReclaimed, uint64(list.Items[0].Size)))
}

// TestServeContainerNames: every free name makes a container, and a name
// taken is refused with the container that holds it. The name check lists
// records by runtime and name together: containerd ORs separate filter
// strings, and read so every record of the server held every name.
func TestServeContainerNames(t *testing.T) {
	e := newEnv(t)
	_, c := e.serve(t)
	apiLoad(t, e.ctx, c, newImage(t, "app", "docker.io/library/app:1"))
	create := func(name string) (string, error) {
		res, err := c.ContainerCreate(e.ctx, mobyclient.ContainerCreateOptions{Name: name, Config: &container.Config{Image: "app:1", Cmd: []string{"run"}}})
		return res.ID, err
	}
	ids := map[string]string{}
	for _, name := range []string{"c1", "c2", "c3"} {
		id, err := create(name)
		assert.NilError(t, err, name)
		ids[name] = id
	}
	_, err := create("c2")
	assert.Check(t, errdefs.IsConflict(err), "%v", err)
	assert.Check(t, is.ErrorContains(err, `The container name "/c2" is already in use by container "`+ids["c2"]+`"`))

	all, err := c.ContainerList(e.ctx, mobyclient.ContainerListOptions{All: true})
	assert.NilError(t, err)
	got := map[string]string{}
	for _, s := range all.Items {
		got[strings.TrimPrefix(s.Names[0], "/")] = s.ID
	}
	assert.Check(t, is.DeepEqual(got, ids))
}

// TestServeListShowsTheImageIDOnceTheNameWent: ps shows the reference a
// container was made from while it still names the container's image, and
// the image's ID once that name was removed or moved to another image, as
// the Engine does; inspect keeps the reference as typed.
func TestServeListShowsTheImageIDOnceTheNameWent(t *testing.T) {
	e := newEnv(t)
	_, c := e.serve(t)
	app, other := newImage(t, "app", "docker.io/library/app:1"), newImage(t, "other", "docker.io/library/other:1")
	apiLoad(t, e.ctx, c, app, other)
	_, err := c.ImageTag(e.ctx, mobyclient.ImageTagOptions{Source: "other:1", Target: "moved:1"})
	assert.NilError(t, err)
	short := app.Target.Digest.Encoded()[:12]
	for name, ref := range map[string]string{"byname": "app:1", "moved": "moved:1", "byid": short, "kept": "other:1"} {
		_, err := c.ContainerCreate(e.ctx, mobyclient.ContainerCreateOptions{Name: name, Config: &container.Config{Image: ref, Cmd: []string{"run"}}})
		assert.NilError(t, err, name)
	}
	_, err = c.ImageRemove(e.ctx, "app:1", mobyclient.ImageRemoveOptions{Force: true})
	assert.NilError(t, err)
	_, err = c.ImageTag(e.ctx, mobyclient.ImageTagOptions{Source: short, Target: "moved:1"})
	assert.NilError(t, err)

	all, err := c.ContainerList(e.ctx, mobyclient.ContainerListOptions{All: true})
	assert.NilError(t, err)
	shown := map[string]string{}
	for _, s := range all.Items {
		shown[strings.TrimPrefix(s.Names[0], "/")] = s.Image
	}
	assert.Check(t, is.DeepEqual(shown, map[string]string{
		"byname": app.Target.Digest.String(),
		"moved":  other.Target.Digest.String(),
		"byid":   short,
		"kept":   "other:1",
	}))
	inspect, err := c.ContainerInspect(e.ctx, "byname", mobyclient.ContainerInspectOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(inspect.Container.Config.Image, "app:1"))
}

// TestServePruneDontDeleteUsedDangling is Moby's test of the same name: a
// dangling image a container uses by its ID is not pruned.
func TestServePruneDontDeleteUsedDangling(t *testing.T) {
	e := newEnv(t)
	_, c := e.serve(t)
	img := newImage(t, "dangling")
	apiLoad(t, e.ctx, c, img)
	id := img.Target.Digest.String()
	_, err := c.ImageInspect(e.ctx, id)
	assert.NilError(t, err)
	apiCreate(t, e.ctx, c, id)

	res, err := c.ImagePrune(e.ctx, mobyclient.ImagePruneOptions{Filters: make(mobyclient.Filters).Add("dangling", "true")})
	assert.NilError(t, err)

	for _, d := range res.Report.ImagesDeleted {
		assert.Check(t, !strings.Contains(d.Deleted, id) && !strings.Contains(d.Untagged, id), "used dangling image deleted: %+v", d)
	}
	_, err = c.ImageInspect(e.ctx, id)
	assert.Check(t, err, "the used dangling image should still exist")
}

// TestServePruneLexicographicalOrder is Moby's TestPruneLexographicalOrder:
// a container made from the image ID keeps the alphabetically last name.
func TestServePruneLexicographicalOrder(t *testing.T) {
	e := newEnv(t)
	_, c := e.serve(t)
	img := newImage(t, "busybox", "docker.io/library/busybox:latest")
	apiLoad(t, e.ctx, c, img)
	inspect, err := c.ImageInspect(e.ctx, "busybox:latest")
	assert.NilError(t, err)
	tags := []string{"h", "a", "j", "o", "s", "q", "w", "e", "r", "t"}
	for _, tag := range append(tags, "z") {
		_, err = c.ImageTag(e.ctx, mobyclient.ImageTagOptions{Source: inspect.ID, Target: "busybox:" + tag})
		assert.NilError(t, err)
	}
	_, err = c.ImageRemove(e.ctx, "busybox:latest", mobyclient.ImageRemoveOptions{Force: true})
	assert.NilError(t, err)
	apiCreate(t, e.ctx, c, inspect.ID)

	res, err := c.ImagePrune(e.ctx, mobyclient.ImagePruneOptions{Filters: make(mobyclient.Filters).Add("dangling", "false")})
	assert.NilError(t, err)

	assert.Check(t, is.Len(res.Report.ImagesDeleted, len(tags)))
	for _, p := range res.Report.ImagesDeleted {
		assert.Check(t, is.Equal(p.Deleted, ""))
		assert.Check(t, p.Untagged != "busybox:z")
	}
}

// TestServePruneReportsUnusedImageTotalSizeReclaimed is Moby's test of the
// same name: the space reclaimed is the images' total size in df.
func TestServePruneReportsUnusedImageTotalSizeReclaimed(t *testing.T) {
	e := newEnv(t)
	_, c := e.serve(t)
	apiLoad(t, e.ctx, c, newImage(t, "busybox", "docker.io/library/busybox:latest"))
	id := apiCreate(t, e.ctx, c, "busybox:latest")
	_, err := c.ContainerRemove(e.ctx, id, mobyclient.ContainerRemoveOptions{Force: true})
	assert.NilError(t, err)

	du, err := c.DiskUsage(e.ctx, mobyclient.DiskUsageOptions{Images: true})
	assert.NilError(t, err)
	total := uint64(du.Images.TotalSize)
	assert.Assert(t, total > 0)

	res, err := c.ImagePrune(e.ctx, mobyclient.ImagePruneOptions{Filters: make(mobyclient.Filters).Add("dangling", "false")})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(res.Report.SpaceReclaimed, total))

	du, err = c.DiskUsage(e.ctx, mobyclient.DiskUsageOptions{Images: true})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(du.Images.TotalSize, int64(0)))
}

// TestServePruneDontDeleteUsedImage is Moby's test of the same name: a
// container made from any of the six forms of its image's reference keeps
// it, whether the image has one tag or two.
func TestServePruneDontDeleteUsedImage(t *testing.T) {
	forms := map[string]func(image.InspectResponse) string{
		"full id":                              func(i image.InspectResponse) string { return i.ID },
		"full id without sha256 prefix":        func(i image.InspectResponse) string { return strings.TrimPrefix(i.ID, "sha256:") },
		"truncated id (without sha256 prefix)": func(i image.InspectResponse) string { return strings.TrimPrefix(i.ID, "sha256:")[:8] },
		"repo and digest without tag":          func(i image.InspectResponse) string { return "busybox@" + i.ID },
		"tagged and digested":                  func(i image.InspectResponse) string { return "busybox:latest@" + i.ID },
		"repo digest":                          func(i image.InspectResponse) string { return i.RepoDigests[0] },
	}
	for _, twoTags := range []bool{false, true} {
		for form, ref := range forms {
			name := "single tag/" + form
			if twoTags {
				name = "two tags/" + form
			}
			t.Run(name, func(t *testing.T) {
				e := newEnv(t)
				_, c := e.serve(t)
				img := newImage(t, "busybox", "docker.io/library/busybox:latest")
				apiLoad(t, e.ctx, c, img)
				if twoTags {
					_, err := c.ImageTag(e.ctx, mobyclient.ImageTagOptions{Source: "busybox:latest", Target: "busybox:a"})
					assert.NilError(t, err)
				}
				inspect, err := c.ImageInspect(e.ctx, "busybox:latest")
				assert.NilError(t, err)
				apiCreate(t, e.ctx, c, ref(inspect.InspectResponse))

				res, err := c.ImagePrune(e.ctx, mobyclient.ImagePruneOptions{Filters: make(mobyclient.Filters).Add("dangling", "false")})
				assert.NilError(t, err)

				if twoTags {
					assert.Check(t, is.DeepEqual(res.Report.ImagesDeleted, []image.DeleteResponse{{Untagged: "busybox:a"}}))
					_, err = c.ImageInspect(e.ctx, "busybox:a")
					assert.Check(t, errdefs.IsNotFound(err), "busybox:a should be gone: %v", err)
				} else {
					assert.Check(t, is.Len(res.Report.ImagesDeleted, 0))
				}
				_, err = c.ImageInspect(e.ctx, "busybox:latest")
				assert.Check(t, err, "busybox:latest should still exist")
				assert.Check(t, e.hasContent(img))
			})
		}
	}
}

// TestServePruneLabelFilterNegative is Moby's test of the same name.
func TestServePruneLabelFilterNegative(t *testing.T) {
	e := newEnv(t)
	_, c := e.serve(t)
	with := testimage.New(testimage.WithNames("docker.io/library/withlabel:latest"), testimage.WithLayers(layer(t, "with")), testimage.WithLabels(map[string]string{"on_prune": "keep"}))
	without := testimage.New(testimage.WithNames("docker.io/library/nolabel:latest"), testimage.WithLayers(layer(t, "without")))
	apiLoad(t, e.ctx, c, with, without)

	res, err := c.ImagePrune(e.ctx, mobyclient.ImagePruneOptions{Filters: make(mobyclient.Filters).Add("label!", "on_prune=keep").Add("dangling", "false")})
	assert.NilError(t, err)

	_, err = c.ImageInspect(e.ctx, without.Target.Digest.String())
	assert.Check(t, errdefs.IsNotFound(err), "nolabel image should be gone: %v", err)
	var deleted []string
	for _, d := range res.Report.ImagesDeleted {
		if d.Deleted != "" {
			deleted = append(deleted, d.Deleted)
		}
		assert.Check(t, d.Deleted != with.Target.Digest.String() && d.Untagged != "withlabel:latest")
	}
	assert.Check(t, is.Contains(deleted, without.Target.Digest.String()))
	_, err = c.ImageInspect(e.ctx, with.Target.Digest.String())
	assert.Check(t, err)
}

// TestServePruneErrors: bad filters are 400, a prune already running 409;
// neither changes anything.
func TestServePruneErrors(t *testing.T) {
	e := newEnv(t)
	sock, c := e.serve(t)
	img := newImage(t, "kept", "docker.io/library/kept:1")
	apiLoad(t, e.ctx, c, img)
	before := e.names()

	for _, tc := range []struct {
		filters mobyclient.Filters
		want    string
	}{
		{make(mobyclient.Filters).Add("dangling", "maybe"), "invalid filter 'dangling=[maybe]'"},
		{make(mobyclient.Filters).Add("until", "notatime"), `invalid value for 'until' filter: failed to parse value as time or duration: invalid seconds "notatime": invalid syntax`},
		{make(mobyclient.Filters).Add("reference", "kept:["), "invalid filter 'reference=kept:[': syntax error in pattern"},
		{make(mobyclient.Filters).Add("before", "kept"), "invalid filter 'before'"},
	} {
		_, err := c.ImagePrune(e.ctx, mobyclient.ImagePruneOptions{Filters: tc.filters})
		assert.Check(t, errdefs.IsInvalidArgument(err), "%v: %v", tc.filters, err)
		assert.Check(t, is.Equal(strings.TrimPrefix(fmt.Sprint(err), "Error response from daemon: "), tc.want))
	}
	// The list words them as the Engine does too.
	for key, value := range map[string]string{"until": "notatime", "dangling": "maybe"} {
		_, err := c.ImageList(e.ctx, mobyclient.ImageListOptions{Filters: make(mobyclient.Filters).Add(key, value)})
		assert.Check(t, errdefs.IsInvalidArgument(err), "%v", err)
	}
	_, err := c.ImageList(e.ctx, mobyclient.ImageListOptions{Filters: make(mobyclient.Filters).Add("until", "notatime")})
	assert.Check(t, is.ErrorContains(err, `invalid value for 'until' filter: failed to parse value as time or duration: invalid seconds "notatime": invalid syntax`))
	assert.Check(t, is.DeepEqual(e.names(), before))

	// Another prune of the namespace holds the lock.
	_, release := e.blockedPrune(t)
	_, err = c.ImagePrune(e.ctx, mobyclient.ImagePruneOptions{})
	assert.Check(t, errdefs.IsConflict(err), "%v", err)
	assert.Check(t, is.ErrorContains(err, "a prune operation is already running"))
	assert.Check(t, release())
	// Prunes refused, by bad filters or by the lock, are not prunes run.
	_, body := apiGet(t, sock, "/metrics")
	assert.Check(t, !strings.Contains(body, `imgprune_prunes_total{namespace="`+e.ns+`"}`), body)
	assert.Check(t, is.DeepEqual(e.names(), before))
}

// apiGet GETs path from the server on sock.
func apiGet(t *testing.T, sock, path string) (int, string) {
	t.Helper()
	hc := unixHTTP(sock)
	resp, err := hc.Get("http://imgprune" + path)
	assert.NilError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	assert.NilError(t, err)
	return resp.StatusCode, string(body)
}

// TestServeMetrics: each prune through the API adds to /metrics.
func TestServeMetrics(t *testing.T) {
	e := newEnv(t)
	sock, c := e.serve(t)
	img := newImage(t, "old", "docker.io/library/old:1")
	apiLoad(t, e.ctx, c, img)
	for range 2 {
		_, err := c.ImagePrune(e.ctx, mobyclient.ImagePruneOptions{Filters: make(mobyclient.Filters).Add("dangling", "false")})
		assert.NilError(t, err)
	}
	code, body := apiGet(t, sock, "/metrics")
	assert.Check(t, is.Equal(code, http.StatusOK))
	ns := `{namespace="` + e.ns + `"}`
	assert.Check(t, is.Contains(body, "imgprune_prunes_total"+ns+" 2\n"))
	assert.Check(t, is.Contains(body, "imgprune_images_deleted_total"+ns+" 1\n"))
	assert.Check(t, is.Contains(body, "imgprune_prune_failures_total"+ns+" 0\n"))
	assert.Check(t, is.Contains(body, "imgprune_last_success_timestamp_seconds"+ns))
}

// TestServeStopsAPruneCleanly: a server told to stop while a prune runs
// interrupts the prune between deletions and still answers with its
// partial report; the next prune finishes the job.
func TestServeStopsAPruneCleanly(t *testing.T) {
	e := newEnv(t)
	// The server stops once the prune deleted a:1: a SIGTERM mid-prune.
	a, _, ctx, svc := e.interruptedPrune(t, true)
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	assert.NilError(t, err)
	served := make(chan error, 1)
	go func() { served <- server.New(svc).Serve(ctx, l, 10*time.Second) }()

	hc := unixHTTP(sock)
	resp, err := hc.Post("http://imgprune/v1.56/images/prune?filters=%7B%22dangling%22%3A%7B%22false%22%3Atrue%7D%7D", "application/json", nil)
	assert.NilError(t, err)
	var rep prune.Report
	assert.NilError(t, json.NewDecoder(resp.Body).Decode(&rep))
	resp.Body.Close()

	assert.Check(t, is.Equal(resp.StatusCode, http.StatusOK))
	assert.Check(t, is.DeepEqual(rep.ImagesDeleted, []image.DeleteResponse{{Untagged: "example.com/a:1"}, {Deleted: a.Target.Digest.String()}}))
	assert.Check(t, is.DeepEqual(rep.Failures, []prune.Failure{{Name: "prune", Error: "stopped early: 1 record left for the next prune"}}))
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(a.Size())))
	assert.Check(t, <-served, "the server stops cleanly")
	_, err = net.Dial("unix", sock)
	assert.Check(t, err != nil, "the server still accepts")

	again := e.prune([]string{"dangling=false"})
	assert.Check(t, again.Err())
	assert.Check(t, is.Len(e.names(), 0))
}

// unixHTTP is an HTTP client of the server on sock.
func unixHTTP(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

// TestServeImagesBeforeSince: the before and since filters of `docker
// images` compare when images were built, as the Engine's list shows it.
func TestServeImagesBeforeSince(t *testing.T) {
	e := newEnv(t)
	_, c := e.serve(t)
	older := testimage.New(testimage.WithNames("docker.io/library/older:1"), testimage.WithLayers(layer(t, "older")), testimage.WithCreated(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)))
	newer := testimage.New(testimage.WithNames("docker.io/library/newer:1"), testimage.WithLayers(layer(t, "newer")), testimage.WithCreated(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)))
	apiLoad(t, e.ctx, c, newer, older)
	list, err := c.ImageList(e.ctx, mobyclient.ImageListOptions{})
	assert.NilError(t, err)
	assert.Assert(t, is.Len(list.Items, 2))
	assert.Check(t, is.Equal(list.Items[0].Created, newer.Created.Unix()), "newest first, by when it was built")

	for _, tc := range []struct {
		filter, ref string
		want        []string
	}{
		{"before", "newer:1", []string{"older:1"}},
		{"before", "older:1", nil},
		{"since", "older:1", []string{"newer:1"}},
		{"since", newer.Target.Digest.String(), nil},
	} {
		list, err := c.ImageList(e.ctx, mobyclient.ImageListOptions{Filters: make(mobyclient.Filters).Add(tc.filter, tc.ref)})
		assert.NilError(t, err, "%s=%s", tc.filter, tc.ref)
		var got []string
		for _, sum := range list.Items {
			got = append(got, sum.RepoTags...)
		}
		assert.Check(t, is.DeepEqual(got, tc.want), "%s=%s", tc.filter, tc.ref)
	}
	_, err = c.ImageList(e.ctx, mobyclient.ImageListOptions{Filters: make(mobyclient.Filters).Add("before", "missing:1")})
	assert.Check(t, errdefs.IsNotFound(err), "%v", err)
}

// TestServeDanglingFilter: an image whose only name is a digest reference
// is not dangling, as the Engine and the prune have it.
func TestServeDanglingFilter(t *testing.T) {
	e := newEnv(t)
	_, c := e.serve(t)
	pinned := testimage.New(testimage.WithLayers(layer(t, "pinned")))
	nameless := testimage.New(testimage.WithLayers(layer(t, "nameless")))
	e.writeDangling(pinned)
	e.writeDangling(nameless)
	_, err := e.client.ImageService().Create(e.nsCtx(), images.Image{Name: "docker.io/library/pinned@" + pinned.Target.Digest.String(), Target: pinned.Target})
	assert.NilError(t, err)

	for value, want := range map[string]string{"true": nameless.Target.Digest.String(), "false": pinned.Target.Digest.String()} {
		list, err := c.ImageList(e.ctx, mobyclient.ImageListOptions{Filters: make(mobyclient.Filters).Add("dangling", value)})
		assert.NilError(t, err)
		var ids []string
		for _, sum := range list.Items {
			ids = append(ids, sum.ID)
		}
		assert.Check(t, is.DeepEqual(ids, []string{want}), "dangling=%s", value)
	}
}

// imageTaking removes every image record of the namespace, and collects,
// just before it creates a container record: a prune that took the image a
// create had resolved.
type imageTaking struct {
	containers.Store
	e *env
}

func (s imageTaking) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	for name := range s.e.names() {
		if err := s.e.client.ImageService().Delete(ctx, name, images.SynchronousDelete()); err != nil {
			return containers.Container{}, err
		}
	}
	return s.Store.Create(ctx, c)
}

// TestServeCreateWhoseImageWent: a container whose image went between its
// resolution and its record is not made: 404, and no record or rootfs is
// left.
func TestServeCreateWhoseImageWent(t *testing.T) {
	e := newEnv(t)
	stores := store.FromClient(e.client)
	stores.Containers = imageTaking{Store: stores.Containers, e: e}
	svc := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithClient(e.client), imgsvc.WithSnapshotter(snapshotter))
	_, c := e.serveService(t, svc)
	apiLoad(t, e.ctx, c, newImage(t, "app", "docker.io/library/app:1"))

	_, err := c.ContainerCreate(e.ctx, mobyclient.ContainerCreateOptions{Name: "late", Config: &container.Config{Image: "app:1", Cmd: []string{"run"}}})

	assert.Check(t, errdefs.IsNotFound(err), "%v", err)
	records, err := e.client.ContainerService().List(e.nsCtx())
	assert.NilError(t, err)
	assert.Check(t, is.Len(records, 0))
	var snaps []string
	assert.NilError(t, e.client.SnapshotService(snapshotter).Walk(e.nsCtx(), func(_ context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindActive {
			snaps = append(snaps, info.Name)
		}
		return nil
	}))
	assert.Check(t, is.Len(snaps, 0), "a rootfs was left: %v", snaps)
}
