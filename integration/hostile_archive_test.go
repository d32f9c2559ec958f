package integration

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/internal/testimage"
)

// withEntries is the archive of imgs with extra tar entries after its own.
func withEntries(t *testing.T, extra []tar.Header, data map[string][]byte, imgs ...testimage.Image) *bytes.Buffer {
	t.Helper()
	var valid bytes.Buffer
	assert.NilError(t, testimage.WriteArchive(&valid, imgs...))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(&valid)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		assert.NilError(t, err)
		assert.NilError(t, tw.WriteHeader(h))
		_, err = io.Copy(tw, tr)
		assert.NilError(t, err)
	}
	for _, h := range extra {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(data[h.Name]))
		}
		assert.NilError(t, tw.WriteHeader(&h))
		_, err := tw.Write(data[h.Name][:h.Size])
		assert.NilError(t, err)
	}
	assert.NilError(t, tw.Close())
	return &out
}

// TestLoadOfHostileArchives: entries that climb out of the archive, absolute
// paths and links out of the tree are never written or followed: the
// archive's image loads, and nothing appears outside the store.
func TestLoadOfHostileArchives(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	assert.NilError(t, os.WriteFile(secret, []byte("not a blob"), 0o600))
	// A link named as the secret's blob: followed, the store would hold it.
	secretBlob := "blobs/sha256/" + digest.FromString("not a blob").Encoded()
	for _, tc := range []struct {
		name  string
		entry tar.Header
	}{
		{name: "climbs out", entry: tar.Header{Name: "../../../../../../" + outside[1:] + "/climbed", Typeflag: tar.TypeReg, Mode: 0o644}},
		{name: "absolute", entry: tar.Header{Name: outside + "/absolute", Typeflag: tar.TypeReg, Mode: 0o644}},
		{name: "symlink out", entry: tar.Header{Name: secretBlob, Typeflag: tar.TypeSymlink, Linkname: secret}},
		{name: "hard link out", entry: tar.Header{Name: secretBlob, Typeflag: tar.TypeLink, Linkname: secret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			img := newImage(t, "app", "example.com/app:1")
			archive := withEntries(t, []tar.Header{tc.entry}, map[string][]byte{tc.entry.Name: []byte("evil")}, img)

			_, err := e.svc.Load(e.ctx, archive)

			assert.NilError(t, err)
			assert.Check(t, is.Equal(e.names()["example.com/app:1"], img.Target.Digest))
			entries, err := os.ReadDir(outside)
			assert.NilError(t, err)
			assert.Check(t, is.Len(entries, 1), "something was written beside the secret")
			data, err := os.ReadFile(secret)
			assert.NilError(t, err)
			assert.Check(t, is.Equal(string(data), "not a blob"))
			_, err = e.client.ContentStore().Info(e.nsCtx(), digest.FromString("not a blob"))
			assert.Check(t, errdefs.IsNotFound(err), "the store took a file outside the archive: %v", err)
		})
	}
}

// TestLoadRefusesLayersThatExpandPastTheLimit: a gzip layer of 64 KiB that
// expands to 64 MiB (a bomb, to scale) is refused before anything is
// unpacked or named, and the store is as it was; within the limit it loads,
// and blobs the store already has do not count again.
func TestLoadRefusesLayersThatExpandPastTheLimit(t *testing.T) {
	bomb := testimage.Gzip(testimage.ZeroLayer("zeros", 64<<20))
	assert.Assert(t, bomb.Desc.Size < 1<<20, "the layer should compress to little, is %d bytes", bomb.Desc.Size)
	img := testimage.New(testimage.WithNames("example.com/bomb:1"), testimage.WithLayers(bomb))
	archive := func() *bytes.Buffer {
		var b bytes.Buffer
		assert.NilError(t, testimage.WriteArchive(&b, img))
		return &b
	}
	const limit = 16 << 20

	t.Run("past the limit", func(t *testing.T) {
		e := newEnv(t, imgsvc.WithUnpackLimit(limit))
		kept := newImage(t, "kept", "example.com/kept:1")
		e.write(kept)
		before, snaps := e.names(), e.snapshotCount()

		loaded, err := e.svc.Load(e.ctx, archive())

		assert.Check(t, errdefs.IsResourceExhausted(err), "%v", err)
		assert.Check(t, is.ErrorContains(err, "expand past 16MiB"))
		assert.Check(t, is.Len(loaded, 0))
		assert.Check(t, is.DeepEqual(e.names(), before))
		assert.Check(t, is.Equal(e.snapshotCount(), snaps))
		assert.Check(t, e.hasNoContent(img), "the refused archive's blobs stayed")
	})
	t.Run("within the limit", func(t *testing.T) {
		e := newEnv(t, imgsvc.WithUnpackLimit(128<<20))

		_, err := e.svc.Load(e.ctx, archive())

		assert.NilError(t, err)
		assert.Check(t, is.Equal(e.names()["example.com/bomb:1"], img.Target.Digest))
		assert.Check(t, e.snapshotCount() > 0, "not unpacked")
	})
	t.Run("already in the store", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.svc.Load(e.ctx, archive())
		assert.NilError(t, err)
		limited := imgsvc.NewFromClient(e.client, e.ns, imgsvc.WithUnpackLimit(limit))
		// Blobs count as new for a second of clock slack.
		time.Sleep(1100 * time.Millisecond)

		_, err = limited.Load(e.ctx, archive())

		assert.NilError(t, err)
	})
}

// claiming rewrites img's manifest so that its config's or its first
// layer's descriptor claims size bytes, or its own descriptor in the index
// does.
func claiming(t *testing.T, img testimage.Image, what string, size int64) testimage.Image {
	t.Helper()
	var m ocispec.Manifest
	assert.NilError(t, json.Unmarshal(img.Manifest, &m))
	switch what {
	case "config":
		m.Config.Size = size
	case "layer":
		m.Layers[0].Size = size
	}
	b, err := json.Marshal(m)
	assert.NilError(t, err)
	img.Manifest = b
	img.Target = ocispec.Descriptor{MediaType: m.MediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if what == "manifest" {
		img.Target.Size = size
	}
	return img
}

// TestLoadOfDescriptorsClaimingHugeSizes: a descriptor whose size is not its
// blob's is refused with a clear error before any name is written; nothing
// is allocated by the claim.
func TestLoadOfDescriptorsClaimingHugeSizes(t *testing.T) {
	for _, what := range []string{"config", "layer", "manifest"} {
		t.Run(what, func(t *testing.T) {
			e := newEnv(t)
			kept := newImage(t, "kept", "example.com/kept:1")
			e.write(kept)
			before := e.names()
			img := claiming(t, newImage(t, "huge", "example.com/huge:1"), what, 1<<50)
			var b bytes.Buffer
			assert.NilError(t, testimage.WriteArchive(&b, img))

			_, err := e.svc.Load(e.ctx, &b)

			assert.Check(t, errdefs.IsInvalidArgument(err), "%v", err)
			assert.Check(t, is.ErrorContains(err, "is 1125899906842624 bytes; it is"))
			assert.Check(t, is.DeepEqual(e.names(), before))
			assert.Check(t, e.hasNoContent(img), "the refused archive's blobs stayed")
		})
	}
}

// TestLoadOfAnIndexOfAHundredThousandManifests: an archive whose index
// lists 10^5 manifests (one image under as many names) is refused with a
// clear error before any of its names is written.
func TestLoadOfAnIndexOfAHundredThousandManifests(t *testing.T) {
	e := newEnv(t)
	kept := newImage(t, "kept", "example.com/kept:1")
	e.write(kept)
	before := e.names()
	names := make([]string, 100_000)
	for i := range names {
		names[i] = fmt.Sprintf("example.com/flood:%d", i)
	}
	img := newImage(t, "flood", names...)
	var b bytes.Buffer
	assert.NilError(t, testimage.WriteArchive(&b, img))

	_, err := e.svc.Load(e.ctx, &b)

	assert.Check(t, errdefs.IsInvalidArgument(err), "%v", err)
	assert.Check(t, is.ErrorContains(err, "lists more than 10000 manifests"))
	assert.Check(t, is.DeepEqual(e.names(), before))
	assert.Check(t, e.hasNoContent(img), "the refused archive's blobs stayed")
}
