package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/internal/testimage"
)

// snapshotCount counts the snapshots of the test's namespace.
func (e *env) snapshotCount() int {
	e.t.Helper()
	n := 0
	err := e.client.SnapshotService(snapshotter).Walk(e.nsCtx(), func(context.Context, snapshots.Info) error {
		n++
		return nil
	})
	assert.NilError(e.t, err)
	return n
}

// TestLoadUnpacksAndPruneCountsSnapshots loads an archive as docker load
// does, then checks that a prune frees the snapshots too and counts them.
func TestLoadUnpacksAndPruneCountsSnapshots(t *testing.T) {
	e := newEnv(t)
	set := testimage.NewSet(testimage.SetOptions{Count: 3, LayersPerImage: 2, SharedRate: 0.5, LayerSize: 64 << 10, Seed: t.Name(), NamePrefix: "example.com/load/app"})
	nameless := newImage(t, "nameless")
	var archive bytes.Buffer
	assert.NilError(t, testimage.WriteArchive(&archive, append(set, nameless)...))

	loaded, err := e.svc.Load(e.ctx, &archive)
	assert.NilError(t, err)
	// Each name, and the nameless image by its dangling record, in the
	// archive's order: what the Engine tells of a load.
	var got []string
	for _, img := range loaded {
		got = append(got, img.Name)
	}
	assert.Check(t, is.DeepEqual(got, []string{set[0].Names[0], set[1].Names[0], set[2].Names[0], "moby-dangling@" + nameless.Target.Digest.String()}))

	names := e.names()
	for _, img := range append(set, nameless) {
		// Every target got its dangling record as it entered.
		assert.Check(t, is.Equal(names["moby-dangling@"+img.Target.Digest.String()], img.Target.Digest))
		assert.Check(t, e.hasContent(img))
	}
	assert.Check(t, is.Equal(names[set[0].Names[0]], set[0].Target.Digest))
	assert.Check(t, e.snapshotCount() > 0)

	rows, err := e.svc.Images(e.ctx)
	assert.NilError(t, err)
	assert.Check(t, is.Len(rows, 4))
	assert.Check(t, is.Equal(rows[3].Name, ""), "the nameless image is listed last, as <none>")
	assert.Check(t, is.Equal(rows[3].ID, nameless.Target.Digest))

	dry := e.prune([]string{"dangling=false"}, prune.DryRun())
	rep := e.prune([]string{"dangling=false"})

	content := uniqueBytes(append(set, nameless), nil)
	assert.Check(t, rep.SpaceReclaimed > uint64(content), "snapshots were not counted: %d <= %d", rep.SpaceReclaimed, content)
	assert.Check(t, is.Equal(rep.SpaceReclaimed, dry.SpaceReclaimed))
	assert.Check(t, is.Equal(e.snapshotCount(), 0))
	assert.Check(t, is.Len(e.names(), 0))
}

// TestTagMovesNameAndOldTargetDangles: moving a name leaves the old target
// as <none>, kept by its dangling record until a prune.
func TestTagMovesNameAndOldTargetDangles(t *testing.T) {
	e := newEnv(t)
	v1 := newImage(t, "v1", "example.com/app:v1")
	v2 := newImage(t, "v2", "example.com/app:v2")
	e.write(v1, v2)

	_, err := e.svc.Tag(e.ctx, "example.com/app:v1", "example.com/app:latest")
	assert.NilError(t, err)
	_, err = e.svc.Tag(e.ctx, v2.Target.Digest.Encoded()[:12], "example.com/app:v1")
	assert.NilError(t, err)
	_, err = e.svc.Tag(e.ctx, "example.com/app:v2", "example.com/app:latest")
	assert.NilError(t, err)

	names := e.names()
	assert.Check(t, is.DeepEqual(names, map[string]digest.Digest{
		"example.com/app:v1":                         v2.Target.Digest,
		"example.com/app:v2":                         v2.Target.Digest,
		"example.com/app:latest":                     v2.Target.Digest,
		"moby-dangling@" + v1.Target.Digest.String(): v1.Target.Digest,
		"moby-dangling@" + v2.Target.Digest.String(): v2.Target.Digest,
	}))
	assert.Check(t, e.hasContent(v1), "the old target keeps its content")

	rep := e.prune(nil)
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(v1.Size())))
	assert.Check(t, e.hasNoContent(v1))
	assert.Check(t, e.hasContent(v2))

	_, err = e.svc.Tag(e.ctx, "example.com/nope:1", "example.com/x:1")
	assert.Check(t, is.ErrorContains(err, "no such image"))
	_, err = e.svc.Tag(e.ctx, "example.com/app:v2", "Bad Name")
	assert.Check(t, is.ErrorContains(err, "invalid target name"))
}

// dockerArchive rewrites an OCI archive as `docker save` without the
// containerd image store writes it: manifest.json only.
func dockerArchive(t testing.TB, oci []byte) *bytes.Buffer {
	t.Helper()
	var out bytes.Buffer
	tr := tar.NewReader(bytes.NewReader(oci))
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		assert.NilError(t, err)
		if hdr.Name == "oci-layout" || hdr.Name == "index.json" {
			continue
		}
		assert.NilError(t, tw.WriteHeader(hdr))
		_, err = io.Copy(tw, tr)
		assert.NilError(t, err)
	}
	assert.NilError(t, tw.Close())
	return &out
}

func TestLoadDockerArchive(t *testing.T) {
	e := newEnv(t)
	img := newImage(t, "alpine", "docker.io/library/alpine:3.20")
	var oci bytes.Buffer
	assert.NilError(t, testimage.WriteArchive(&oci, img))

	loaded, err := e.svc.Load(e.ctx, dockerArchive(t, oci.Bytes()))
	assert.NilError(t, err)
	assert.Assert(t, is.Len(loaded, 1))
	assert.Check(t, is.Equal(loaded[0].Name, "docker.io/library/alpine:3.20"))
	// containerd writes a Docker manifest of its own for such an archive.
	target := loaded[0].Target.Digest
	assert.Check(t, is.DeepEqual(e.names(), map[string]digest.Digest{
		"docker.io/library/alpine:3.20":    target,
		"moby-dangling@" + target.String(): target,
	}))
	assert.Check(t, e.snapshotCount() > 0)

	_, err = e.svc.Load(e.ctx, bytes.NewReader([]byte("not an archive")))
	assert.Check(t, err != nil)
	assert.Check(t, is.Len(e.names(), 2), "a bad archive changes nothing")
}

// TestLoadKeepsTheTargetItRenames: a load that moves a name another tool
// made leaves the old target counted, so its content survives; no other
// target another tool named is adopted.
func TestLoadKeepsTheTargetItRenames(t *testing.T) {
	e := newEnv(t)
	old, bystander := newImage(t, "old", "example.com/app:1"), newImage(t, "bystander", "example.com/other:1")
	e.write(old, bystander)
	e.container("c1", old.Target.Digest.String(), nil)
	newer := newImage(t, "new", "example.com/app:1")
	var archive bytes.Buffer
	assert.NilError(t, testimage.WriteArchive(&archive, newer))

	_, err := e.svc.Load(e.ctx, &archive)
	assert.NilError(t, err)

	names := e.names()
	assert.Check(t, is.Equal(names["example.com/app:1"], newer.Target.Digest))
	assert.Check(t, is.Equal(names["moby-dangling@"+old.Target.Digest.String()], old.Target.Digest))
	assert.Check(t, e.hasContent(old), "the renamed target's content was collected")
	assert.Check(t, is.Equal(names["moby-dangling@"+newer.Target.Digest.String()], newer.Target.Digest), "a loaded target has its dangling record upfront")
	_, adopted := names["moby-dangling@"+bystander.Target.Digest.String()]
	assert.Check(t, !adopted, "a target the load does not touch was adopted")
}

// TestNoDanglingRecordsWhereNamesCount: in a namespace that does not follow
// Moby's convention (nerdctl's and ctr's default), load, tag and prune
// write no moby-dangling@ record; a used target (known by its rootfs
// alone) keeps a name of its own, which keeps its content; its last name
// is neither removed, even forced, nor moved by a tag; a load that moves
// it gives the image a dangling record, the one rescue of its content.
func TestNoDanglingRecordsWhereNamesCount(t *testing.T) {
	e := newEnv(t, imgsvc.WithDanglingRecords(false))
	used := newImage(t, "used", "example.com/app:1", "example.com/app:2")
	unused := newImage(t, "unused", "example.com/gone:1")
	e.write(used, unused)
	key := "rootfs-of-used"
	e.rootfs(key, e.unpack("example.com/app:1"))
	e.containerWithRootfs("by-rootfs", "", key)
	newer := newImage(t, "new", "example.com/new:1")
	var archive bytes.Buffer
	assert.NilError(t, testimage.WriteArchive(&archive, newer))
	_, err := e.svc.Load(e.ctx, &archive)
	assert.NilError(t, err)
	_, err = e.svc.Tag(e.ctx, "example.com/new:1", "example.com/new:2")
	assert.NilError(t, err)
	noDangling := func(when string) {
		t.Helper()
		for name := range e.names() {
			assert.Check(t, !strings.HasPrefix(name, "moby-dangling@"), "%s: %s", when, name)
		}
	}
	noDangling("after load and tag")

	rep := e.prune([]string{"dangling=false"})

	assert.Check(t, rep.Err())
	noDangling("after prune")
	names := e.names()
	assert.Check(t, is.Equal(names["example.com/app:2"], used.Target.Digest), "the used target keeps its last name")
	_, kept := names["example.com/app:1"]
	assert.Check(t, !kept, "the used target's other name stayed")
	assert.Check(t, e.hasContent(used))
	assert.Check(t, e.hasNoContent(unused))
	// Its last name is what keeps it: even forced, it stays, and a tag
	// does not move it.
	_, err = e.svc.Remove(e.ctx, "example.com/app:2", true)
	assert.Check(t, errdefs.IsConflict(err), "%v", err)
	e.write(newImage(t, "other", "example.com/other:1"))
	_, err = e.svc.Tag(e.ctx, "example.com/other:1", "example.com/app:2")
	assert.Check(t, errdefs.IsConflict(err), "%v", err)
	assert.Check(t, is.Equal(e.names()["example.com/app:2"], used.Target.Digest))
	// A load that moves it rescues the content with a dangling record.
	moved := newImage(t, "moved", "example.com/app:2")
	archive.Reset()
	assert.NilError(t, testimage.WriteArchive(&archive, moved))
	_, err = e.svc.Load(e.ctx, &archive)
	assert.NilError(t, err)
	names = e.names()
	assert.Check(t, is.Equal(names["example.com/app:2"], moved.Target.Digest))
	assert.Check(t, is.Equal(names["moby-dangling@"+used.Target.Digest.String()], used.Target.Digest))
	e.collect()
	assert.Check(t, e.hasContent(used))
}

// TestLoadIndexWithoutThisPlatform: an image index with nothing for this
// host's platform loads, as with docker load, without being unpacked.
func TestLoadIndexWithoutThisPlatform(t *testing.T) {
	e := newEnv(t)
	img := newImage(t, "other")
	foreign := img.Target
	foreign.Platform = &ocispec.Platform{OS: "linux", Architecture: "s390x"}
	index, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{foreign}})
	assert.NilError(t, err)
	indexDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(index), Size: int64(len(index)),
		Annotations: map[string]string{"io.containerd.image.name": "example.com/multi:1"}}
	top, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{indexDesc}})
	assert.NilError(t, err)
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	put := func(name string, data []byte) {
		assert.NilError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))}))
		_, err := tw.Write(data)
		assert.NilError(t, err)
	}
	put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	put("index.json", top)
	put("blobs/sha256/"+indexDesc.Digest.Encoded(), index)
	for _, b := range img.Blobs() {
		put("blobs/sha256/"+b.Desc.Digest.Encoded(), b.Data)
	}
	assert.NilError(t, tw.Close())

	loaded, err := e.svc.Load(e.ctx, &archive)
	assert.NilError(t, err)
	assert.Assert(t, is.Len(loaded, 1))
	assert.Check(t, is.Equal(loaded[0].Name, "example.com/multi:1"))
	assert.Check(t, is.Equal(e.snapshotCount(), 0))
}

// TestTagRefusesSourceWithoutContent: a name is never made for content that
// is gone (collected under a record another client left behind).
func TestTagRefusesSourceWithoutContent(t *testing.T) {
	e := newEnv(t)
	ghost := newImage(t, "ghost") // never written: its content does not exist
	_, err := e.client.ImageService().Create(e.nsCtx(), images.Image{Name: "example.com/ghost:1", Target: ghost.Target})
	assert.NilError(t, err)

	_, err = e.svc.Tag(e.ctx, "example.com/ghost:1", "example.com/ghost:2")

	assert.Check(t, errdefs.IsNotFound(err), "got %v", err)
	_, ok := e.names()["example.com/ghost:2"]
	assert.Check(t, !ok)
}
