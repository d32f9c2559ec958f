package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestNewLayer(t *testing.T) {
	for _, tc := range []struct {
		seed string
		size int
	}{
		{seed: "a", size: 0},
		{seed: "a", size: 1},
		{seed: "b", size: 1024},
		{seed: "c", size: 4097},
		{seed: "", size: 100},
	} {
		t.Run(fmt.Sprintf("%q/%d", tc.seed, tc.size), func(t *testing.T) {
			l := NewLayer(tc.seed, tc.size)
			assert.DeepEqual(t, l, NewLayer(tc.seed, tc.size))

			assert.Equal(t, l.Desc.MediaType, ocispec.MediaTypeImageLayer)
			assert.Equal(t, l.Desc.Digest, digest.SHA256.FromBytes(l.Blob))
			assert.Equal(t, l.Desc.Size, int64(len(l.Blob)))

			entries := readTar(t, l.Blob)
			assert.Equal(t, len(entries), 2)
			dir, file := entries[0], entries[1]
			assert.Equal(t, dir.hdr.Typeflag, byte(tar.TypeDir))
			assert.Equal(t, dir.hdr.Name, "data/")
			assert.Equal(t, file.hdr.Typeflag, byte(tar.TypeReg))
			assert.Check(t, is.Equal(filepath.Dir(file.hdr.Name), "data"))
			assert.Check(t, is.Equal(file.hdr.Size, int64(tc.size)))
			assert.Check(t, is.Len(file.data, tc.size))
			for _, e := range entries {
				assert.Check(t, e.hdr.ModTime.Equal(DefaultCreated), e.hdr.ModTime)
				assert.Check(t, is.Equal(e.hdr.Uid, 0))
				assert.Check(t, is.Equal(e.hdr.Gid, 0))
			}
			assert.Check(t, is.Equal(file.hdr.Mode, int64(0o644)))
		})
	}

	t.Run("seeds differ", func(t *testing.T) {
		a, b := NewLayer("a", 64), NewLayer("b", 64)
		assert.Check(t, a.Desc.Digest != b.Desc.Digest)
		fa, fb := readTar(t, a.Blob)[1], readTar(t, b.Blob)[1]
		assert.Check(t, fa.hdr.Name != fb.hdr.Name)
		assert.Check(t, !bytes.Equal(fa.data, fb.data))
	})
	t.Run("size prefix", func(t *testing.T) {
		// Same seed: the smaller file's data is a prefix of the larger one.
		small, big := readTar(t, NewLayer("s", 10).Blob)[1], readTar(t, NewLayer("s", 20).Blob)[1]
		assert.DeepEqual(t, small.data, big.data[:10])
	})
}

func TestNewDeterministic(t *testing.T) {
	created := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, tc := range []struct {
		name string
		opts func() []Opt
	}{
		{name: "default", opts: func() []Opt { return nil }},
		{name: "names", opts: func() []Opt {
			return []Opt{WithNames("docker.io/library/alpine:3.20", "docker.io/library/alpine:latest")}
		}},
		{name: "labels", opts: func() []Opt { return []Opt{WithLabels(map[string]string{"a": "1", "b": "2", "c": "3"})} }},
		{name: "created", opts: func() []Opt { return []Opt{WithCreated(created)} }},
		{name: "layers", opts: func() []Opt { return []Opt{WithLayers(NewLayer("x", 10), NewLayer("y", 20))} }},
		{name: "no layers", opts: func() []Opt { return []Opt{WithLayers()} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := New(tc.opts()...), New(tc.opts()...)
			assertSameImage(t, a, b)
			assert.Equal(t, a.Target.Digest, digest.SHA256.FromBytes(a.Manifest))
			assert.Equal(t, a.ConfigDesc.Digest, digest.SHA256.FromBytes(a.Config))
		})
	}

	t.Run("options change the image", func(t *testing.T) {
		seen := map[digest.Digest]string{}
		for name, img := range map[string]Image{
			"default": New(),
			"names":   New(WithNames("example.com/a:1")),
			"labels":  New(WithLabels(map[string]string{"a": "1"})),
			"created": New(WithCreated(created)),
			"layers":  New(WithLayers(NewLayer("x", 10))),
		} {
			other, dup := seen[img.Target.Digest]
			assert.Check(t, !dup, "%s and %s have the same target", name, other)
			seen[img.Target.Digest] = name
		}
	})

	t.Run("names do not change blobs", func(t *testing.T) {
		l := NewLayer("x", 10)
		a := New(WithNames("example.com/a:1"), WithLayers(l))
		b := New(WithNames("example.com/b:1"), WithLayers(l))
		assert.Equal(t, a.Target.Digest, b.Target.Digest)
	})

	t.Run("defaults", func(t *testing.T) {
		img := New()
		assert.Check(t, img.Created.Equal(DefaultCreated))
		assert.Check(t, is.Len(img.Layers, 1))
		assert.Check(t, is.Len(readTar(t, img.Layers[0].Blob)[1].data, 1024))
		assert.Check(t, is.Len(img.Names, 0))
	})
}

func TestConfigAndManifest(t *testing.T) {
	created := time.Date(2023, 5, 6, 7, 8, 9, 0, time.FixedZone("X", 3600))
	labels := map[string]string{"org.example.tier": "frontend", "empty": ""}
	for _, tc := range []struct {
		name   string
		layers []Layer
	}{
		{name: "no layers", layers: []Layer{}},
		{name: "one layer", layers: []Layer{NewLayer("1", 1)}},
		{name: "three layers", layers: []Layer{NewLayer("1", 1), NewLayer("2", 2), NewLayer("3", 3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := New(WithNames("example.com/x:1"), WithLabels(labels), WithCreated(created), WithLayers(tc.layers...))

			var cfg ocispec.Image
			assert.NilError(t, json.Unmarshal(img.Config, &cfg))
			assert.Check(t, is.Equal(img.ConfigDesc.MediaType, ocispec.MediaTypeImageConfig))
			assert.Check(t, is.Equal(cfg.OS, "linux"))
			assert.Check(t, is.Equal(cfg.Architecture, "amd64"))
			assert.Check(t, cfg.Created != nil && cfg.Created.Equal(created), cfg.Created)
			assert.Check(t, is.DeepEqual(cfg.Config.Labels, labels))
			assert.Check(t, is.Equal(cfg.RootFS.Type, "layers"))
			assert.Check(t, is.Len(cfg.RootFS.DiffIDs, len(tc.layers)))
			assert.Check(t, is.Len(cfg.History, len(tc.layers)))
			for i, l := range tc.layers {
				assert.Check(t, is.Equal(cfg.RootFS.DiffIDs[i], l.Desc.Digest))
			}

			var mf ocispec.Manifest
			assert.NilError(t, json.Unmarshal(img.Manifest, &mf))
			assert.Check(t, is.Equal(mf.SchemaVersion, 2))
			assert.Check(t, is.Equal(mf.MediaType, ocispec.MediaTypeImageManifest))
			assert.Check(t, is.Equal(img.Target.MediaType, ocispec.MediaTypeImageManifest))
			assert.Check(t, is.DeepEqual(mf.Config, img.ConfigDesc))
			assert.Check(t, is.Len(mf.Layers, len(tc.layers)))
			for i, l := range tc.layers {
				assert.Check(t, is.DeepEqual(mf.Layers[i], l.Desc))
			}
		})
	}
}

func TestSizeAndBlobs(t *testing.T) {
	a, b := NewLayer("a", 100), NewLayer("b", 200)
	for _, tc := range []struct {
		name   string
		layers []Layer
		want   []digest.Digest // layer digests expected in Blobs
	}{
		{name: "two layers", layers: []Layer{a, b}, want: []digest.Digest{a.Desc.Digest, b.Desc.Digest}},
		{name: "repeated layer", layers: []Layer{a, b, a}, want: []digest.Digest{a.Desc.Digest, b.Desc.Digest}},
		{name: "no layers", layers: []Layer{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := New(WithLayers(tc.layers...))
			blobs := img.Blobs()
			assert.Assert(t, is.Len(blobs, 2+len(tc.want)))
			assert.Check(t, is.DeepEqual(blobs[0], Blob{Desc: img.Target, Data: img.Manifest}))
			assert.Check(t, is.DeepEqual(blobs[1], Blob{Desc: img.ConfigDesc, Data: img.Config}))
			want := img.Target.Size + img.ConfigDesc.Size
			for i, d := range tc.want {
				assert.Check(t, is.Equal(blobs[2+i].Desc.Digest, d))
				want += blobs[2+i].Desc.Size
			}
			for _, b := range blobs {
				assert.Check(t, is.Equal(b.Desc.Digest, digest.SHA256.FromBytes(b.Data)))
				assert.Check(t, is.Equal(b.Desc.Size, int64(len(b.Data))))
			}
			assert.Check(t, is.Equal(img.Size(), want))
		})
	}
}

func TestNewSet(t *testing.T) {
	created := time.Date(2022, 2, 2, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		opts       SetOptions
		wantShared int // shared layers per image
		wantPool   int // distinct shared layers in the set
	}{
		{name: "rate 0", opts: SetOptions{Count: 5, SharedRate: 0}, wantShared: 0, wantPool: 0},
		{name: "rate 0.5", opts: SetOptions{Count: 8, SharedRate: 0.5}, wantShared: 1, wantPool: 2},
		{name: "rate 1", opts: SetOptions{Count: 8, SharedRate: 1}, wantShared: 2, wantPool: 4},
		{name: "rate 1 single image", opts: SetOptions{Count: 1, SharedRate: 1, LayersPerImage: 3}, wantShared: 3, wantPool: 3},
		{name: "rate 0.25 four layers", opts: SetOptions{Count: 10, SharedRate: 0.25, LayersPerImage: 4, LayerSize: 100}, wantShared: 1, wantPool: 3},
		{name: "custom", opts: SetOptions{Count: 3, SharedRate: 1, NamePrefix: "docker.io/library/demo", Seed: "s", Created: created}, wantShared: 2, wantPool: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			imgs := NewSet(tc.opts)
			assert.Assert(t, is.Len(imgs, tc.opts.Count))
			again := NewSet(tc.opts)
			assert.Assert(t, is.Len(again, tc.opts.Count))
			for i := range imgs {
				assertSameImage(t, imgs[i], again[i])
			}

			o := tc.opts
			lpi := o.LayersPerImage
			if lpi == 0 {
				lpi = 2
			}
			size := o.LayerSize
			if size == 0 {
				size = 4096
			}
			prefix := o.NamePrefix
			if prefix == "" {
				prefix = DefaultNamePrefix
			}
			start := o.Created
			if start.IsZero() {
				start = DefaultCreated
			}

			// The pool, as NewSet builds it (more than enough entries).
			pool := map[digest.Digest]bool{}
			for j := range o.Count * lpi {
				pool[NewLayer(fmt.Sprintf("%s/shared/%d", o.Seed, j), size).Desc.Digest] = true
			}

			users := map[digest.Digest]int{} // layer -> number of images using it
			usedPool := map[digest.Digest]bool{}
			targets := map[digest.Digest]bool{}
			for i, img := range imgs {
				assert.Check(t, is.DeepEqual(img.Names, []string{fmt.Sprintf("%s%d:latest", prefix, i)}))
				assert.Check(t, img.Created.Equal(start.Add(time.Duration(i)*time.Second)), img.Created)
				assert.Check(t, is.Len(img.Layers, lpi))
				assert.Check(t, !targets[img.Target.Digest], "duplicate target")
				targets[img.Target.Digest] = true

				inImage := map[digest.Digest]bool{}
				var shared int
				for _, l := range img.Layers {
					assert.Check(t, !inImage[l.Desc.Digest], "layer used twice in image %d", i)
					inImage[l.Desc.Digest] = true
					users[l.Desc.Digest]++
					assert.Check(t, is.Len(readTar(t, l.Blob)[1].data, size))
					if pool[l.Desc.Digest] {
						shared++
						usedPool[l.Desc.Digest] = true
					}
				}
				assert.Check(t, is.Equal(shared, tc.wantShared), "image %d", i)
			}
			assert.Check(t, is.Len(usedPool, tc.wantPool))
			for d, n := range users {
				if !pool[d] {
					assert.Check(t, is.Equal(n, 1), "unique layer %s used by %d images", d, n)
				}
			}
			if tc.opts.SharedRate == 0 {
				for d, n := range users {
					assert.Check(t, is.Equal(n, 1), "layer %s shared at rate 0", d)
				}
			}
			if tc.opts.SharedRate == 1 {
				assert.Check(t, is.Len(users, tc.wantPool), "all layers come from the pool")
			}
		})
	}

	t.Run("count 0", func(t *testing.T) {
		assert.Check(t, is.Len(NewSet(SetOptions{}), 0))
	})
	t.Run("seed changes layers", func(t *testing.T) {
		a := NewSet(SetOptions{Count: 1, Seed: "a"})
		b := NewSet(SetOptions{Count: 1, Seed: "b"})
		assert.Check(t, a[0].Target.Digest != b[0].Target.Digest)
	})
}

func TestWriteArchive(t *testing.T) {
	set := NewSet(SetOptions{Count: 3, SharedRate: 0.5, LayerSize: 64})
	alpine := New(WithNames("docker.io/library/alpine:3.20", "docker.io/library/alpine:latest"),
		WithLayers(set[0].Layers[0], NewLayer("alpine", 32)))
	dangling := New(WithLayers(NewLayer("dangling", 16)))
	imgs := append(set, alpine, dangling)

	var buf bytes.Buffer
	assert.NilError(t, WriteArchive(&buf, imgs...))

	var again bytes.Buffer
	assert.NilError(t, WriteArchive(&again, imgs...))
	assert.Check(t, bytes.Equal(buf.Bytes(), again.Bytes()), "archive is not deterministic")

	entries := readTar(t, buf.Bytes())
	files := map[string][]byte{}
	for _, e := range entries {
		_, dup := files[e.hdr.Name]
		assert.Check(t, !dup, "entry %s written twice", e.hdr.Name)
		files[e.hdr.Name] = e.data
		assert.Check(t, e.hdr.ModTime.Equal(DefaultCreated), e.hdr.Name)
	}

	// Every blob of every image is present, exactly once (checked above),
	// with matching content; and there are no other blobs.
	want := map[string]bool{}
	for _, img := range imgs {
		for _, b := range img.Blobs() {
			p := "blobs/sha256/" + b.Desc.Digest.Encoded()
			want[p] = true
			assert.Check(t, bytes.Equal(files[p], b.Data), p)
		}
	}
	var blobs int
	for _, e := range entries {
		if e.hdr.Typeflag == tar.TypeReg && filepath.Dir(e.hdr.Name) == "blobs/sha256" {
			blobs++
			assert.Check(t, want[e.hdr.Name], "unexpected blob %s", e.hdr.Name)
		}
	}
	assert.Check(t, is.Equal(blobs, len(want)))

	var layout ocispec.ImageLayout
	assert.NilError(t, json.Unmarshal(files["oci-layout"], &layout))
	assert.Check(t, is.Equal(layout.Version, ocispec.ImageLayoutVersion))

	var idx ocispec.Index
	assert.NilError(t, json.Unmarshal(files["index.json"], &idx))
	assert.Check(t, is.Equal(idx.SchemaVersion, 2))
	assert.Check(t, is.Equal(idx.MediaType, ocispec.MediaTypeImageIndex))

	type entry struct {
		Digest      digest.Digest
		Name, Tag   string
		Annotations int
	}
	var got []entry
	for _, d := range idx.Manifests {
		assert.Check(t, is.Equal(d.MediaType, ocispec.MediaTypeImageManifest))
		got = append(got, entry{d.Digest, d.Annotations[images.AnnotationImageName], d.Annotations[ocispec.AnnotationRefName], len(d.Annotations)})
	}
	assert.Check(t, is.DeepEqual(got, []entry{
		{set[0].Target.Digest, "example.com/test/app0:latest", "latest", 2},
		{set[1].Target.Digest, "example.com/test/app1:latest", "latest", 2},
		{set[2].Target.Digest, "example.com/test/app2:latest", "latest", 2},
		{alpine.Target.Digest, "docker.io/library/alpine:3.20", "3.20", 2},
		{alpine.Target.Digest, "docker.io/library/alpine:latest", "latest", 2},
		{dangling.Target.Digest, "", "", 0},
	}))

	var dockerMfs []dockerManifest
	assert.NilError(t, json.Unmarshal(files["manifest.json"], &dockerMfs))
	assert.Assert(t, is.Len(dockerMfs, 5))
	assert.Check(t, is.DeepEqual(dockerMfs[3].RepoTags, []string{"alpine:3.20", "alpine:latest"}))
	assert.Check(t, is.Len(dockerMfs[4].RepoTags, 0))
	assert.Check(t, is.Equal(dockerMfs[3].Config, "blobs/sha256/"+alpine.ConfigDesc.Digest.Encoded()))

	t.Run("containerd import", func(t *testing.T) {
		ctx, st := newStore(t)
		desc, err := archive.ImportIndex(ctx, st.cs, bytes.NewReader(buf.Bytes()))
		assert.NilError(t, err)
		p, err := content.ReadBlob(ctx, st.cs, desc)
		assert.NilError(t, err)
		var imported ocispec.Index
		assert.NilError(t, json.Unmarshal(p, &imported))
		assert.Check(t, is.DeepEqual(imported.Manifests, idx.Manifests))
		for _, img := range imgs {
			for _, b := range img.Blobs() {
				_, err := st.cs.Info(ctx, b.Desc.Digest)
				assert.Check(t, err, "blob %s not imported", b.Desc.Digest)
			}
		}
	})

	t.Run("empty", func(t *testing.T) {
		var b bytes.Buffer
		assert.NilError(t, WriteArchive(&b))
		files := map[string][]byte{}
		for _, e := range readTar(t, b.Bytes()) {
			files[e.hdr.Name] = e.data
		}
		assert.Check(t, is.Equal(string(files["index.json"]), `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
		assert.Check(t, is.Equal(string(files["manifest.json"]), `[]`))
	})
}

func TestWrite(t *testing.T) {
	layer := NewLayer("shared", 128)
	a := New(WithNames("example.com/a:1", "example.com/a:latest"), WithLayers(layer, NewLayer("a", 64)))
	b := New(WithNames("example.com/b:1"), WithLayers(NewLayer("b", 64), layer))

	ctx, st := newStore(t)

	recs, err := a.Write(ctx, st.cs, st.is)
	assert.NilError(t, err)
	assert.Assert(t, is.Len(recs, 2))
	for i, r := range recs {
		assert.Check(t, is.Equal(r.Name, a.Names[i]))
		assert.Check(t, is.DeepEqual(r.Target, a.Target))
	}
	recs, err = b.Write(ctx, st.cs, st.is)
	assert.NilError(t, err)
	assert.Assert(t, is.Len(recs, 1))

	assert.Check(t, is.DeepEqual(listNames(ctx, t, st.is), map[string]digest.Digest{
		"example.com/a:1":      a.Target.Digest,
		"example.com/a:latest": a.Target.Digest,
		"example.com/b:1":      b.Target.Digest,
	}))

	// The manifest carries the GC labels to its children.
	info, err := st.cs.Info(ctx, a.Target.Digest)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(info.Labels, map[string]string{
		"containerd.io/gc.ref.content.config": a.ConfigDesc.Digest.String(),
		"containerd.io/gc.ref.content.l.0":    a.Layers[0].Desc.Digest.String(),
		"containerd.io/gc.ref.content.l.1":    a.Layers[1].Desc.Digest.String(),
	}))

	// Writing again is a no-op (blobs exist, records are updated in place).
	recs, err = a.Write(ctx, st.cs, st.is)
	assert.NilError(t, err)
	assert.Check(t, is.Len(recs, 2))

	_, err = st.db.GarbageCollect(ctx)
	assert.NilError(t, err)
	assertBlobs(ctx, t, st.cs, a, true)
	assertBlobs(ctx, t, st.cs, b, true)

	// Deleting b: its own blobs go, the layer shared with a stays.
	assert.NilError(t, st.is.Delete(ctx, "example.com/b:1"))
	_, err = st.db.GarbageCollect(ctx)
	assert.NilError(t, err)
	assertBlobs(ctx, t, st.cs, a, true)
	for _, bl := range b.Blobs() {
		_, err := st.cs.Info(ctx, bl.Desc.Digest)
		if bl.Desc.Digest == layer.Desc.Digest {
			assert.Check(t, err)
		} else {
			assert.Check(t, errdefs.IsNotFound(err), "blob %s: %v", bl.Desc.Digest, err)
		}
	}

	// Deleting one of a's names keeps everything; deleting both frees it all.
	assert.NilError(t, st.is.Delete(ctx, "example.com/a:1"))
	_, err = st.db.GarbageCollect(ctx)
	assert.NilError(t, err)
	assertBlobs(ctx, t, st.cs, a, true)

	assert.NilError(t, st.is.Delete(ctx, "example.com/a:latest"))
	_, err = st.db.GarbageCollect(ctx)
	assert.NilError(t, err)
	assertBlobs(ctx, t, st.cs, a, false)
	assert.Check(t, is.Len(listNames(ctx, t, st.is), 0))
}

func TestWriteUpdatesExistingName(t *testing.T) {
	ctx, st := newStore(t)
	old := New(WithNames("example.com/app:latest"), WithCreated(DefaultCreated))
	cur := New(WithNames("example.com/app:latest"), WithCreated(DefaultCreated.Add(time.Hour)))
	assert.Assert(t, old.Target.Digest != cur.Target.Digest)

	_, err := old.Write(ctx, st.cs, st.is)
	assert.NilError(t, err)
	recs, err := cur.Write(ctx, st.cs, st.is)
	assert.NilError(t, err)
	assert.Assert(t, is.Len(recs, 1))
	assert.Check(t, is.DeepEqual(recs[0].Target, cur.Target))
	assert.Check(t, is.DeepEqual(listNames(ctx, t, st.is), map[string]digest.Digest{
		"example.com/app:latest": cur.Target.Digest,
	}))

	// No dangling record was created for the old target, so GC frees it.
	_, err = st.db.GarbageCollect(ctx)
	assert.NilError(t, err)
	assertBlobs(ctx, t, st.cs, cur, true)
	_, err = st.cs.Info(ctx, old.Target.Digest)
	assert.Check(t, errdefs.IsNotFound(err), "old manifest: %v", err)
}

func TestWriteNoNames(t *testing.T) {
	ctx, st := newStore(t)
	img := New()
	recs, err := img.Write(ctx, st.cs, st.is)
	assert.NilError(t, err)
	assert.Check(t, is.Len(recs, 0))
	assert.Check(t, is.Len(listNames(ctx, t, st.is), 0))
	assertBlobs(ctx, t, st.cs, img, true)

	// Nothing references the blobs, so GC collects them.
	_, err = st.db.GarbageCollect(ctx)
	assert.NilError(t, err)
	assertBlobs(ctx, t, st.cs, img, false)
}

// assertSameImage is assert.DeepEqual(t, a, b) without go-cmp's slow
// element-wise walk over the blob bytes.
func assertSameImage(t *testing.T, a, b Image) {
	t.Helper()
	assert.Check(t, is.DeepEqual(a.Names, b.Names))
	assert.Check(t, is.DeepEqual(a.Labels, b.Labels))
	assert.Check(t, a.Created.Equal(b.Created) && a.Created.Location() == b.Created.Location())
	assert.Check(t, is.DeepEqual(a.Target, b.Target))
	assert.Check(t, is.DeepEqual(a.ConfigDesc, b.ConfigDesc))
	assert.Check(t, bytes.Equal(a.Manifest, b.Manifest))
	assert.Check(t, bytes.Equal(a.Config, b.Config))
	assert.Assert(t, is.Len(b.Layers, len(a.Layers)))
	assert.Check(t, (a.Layers == nil) == (b.Layers == nil))
	for i := range a.Layers {
		assert.Check(t, is.DeepEqual(a.Layers[i].Desc, b.Layers[i].Desc))
		assert.Check(t, bytes.Equal(a.Layers[i].Blob, b.Layers[i].Blob))
	}
}

type store struct {
	db *metadata.DB
	cs content.Store
	is images.Store
}

// newStore builds a real bolt-backed containerd metadata store, as
// containerd's core/metadata tests do, in the "test" namespace.
func newStore(t *testing.T) (context.Context, store) {
	t.Helper()
	ctx := namespaces.WithNamespace(t.Context(), "test")
	dir := t.TempDir()

	lcs, err := local.NewStore(filepath.Join(dir, "content"))
	assert.NilError(t, err)
	bdb, err := bolt.Open(filepath.Join(dir, "metadata.db"), 0o644, nil)
	assert.NilError(t, err)
	db := metadata.NewDB(bdb, lcs, nil)
	assert.NilError(t, db.Init(ctx))
	t.Cleanup(func() { assert.Check(t, db.Close()) })

	return ctx, store{db: db, cs: db.ContentStore(), is: metadata.NewImageStore(db)}
}

func listNames(ctx context.Context, t *testing.T, st images.Store) map[string]digest.Digest {
	t.Helper()
	list, err := st.List(ctx)
	assert.NilError(t, err)
	names := map[string]digest.Digest{}
	for _, img := range list {
		names[img.Name] = img.Target.Digest
	}
	return names
}

func assertBlobs(ctx context.Context, t *testing.T, cs content.Store, img Image, present bool) {
	t.Helper()
	for _, b := range img.Blobs() {
		info, err := cs.Info(ctx, b.Desc.Digest)
		if present {
			if assert.Check(t, err, "blob %s missing", b.Desc.Digest) {
				assert.Check(t, is.Equal(info.Size, b.Desc.Size))
			}
		} else {
			assert.Check(t, errdefs.IsNotFound(err), "blob %s: want not found, got %v", b.Desc.Digest, err)
		}
	}
}

type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, b []byte) []tarEntry {
	t.Helper()
	var entries []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries
		}
		assert.NilError(t, err)
		data, err := io.ReadAll(tr)
		assert.NilError(t, err)
		entries = append(entries, tarEntry{hdr: hdr, data: data})
	}
}
