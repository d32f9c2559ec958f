// Package testimage writes small, deterministic OCI images for tests, the
// demo and benchmarks.
//
// Everything in this package is a pure function of its inputs: the same
// options always produce the same bytes and digests, so tests can compare
// digests across runs and benchmarks are reproducible. Images can be written
// straight into a containerd content and image store ([Image.Write]) or into an
// OCI image-layout tar archive ([WriteArchive]) that containerd's importer and
// `docker load` both accept.
//
// Layers are real, uncompressed tar archives, so a layer's digest is also its
// diff ID and no snapshotter or differ is needed to unpack the image metadata.
package testimage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultCreated is the creation time used when none is given, and the
// modification time of every tar entry this package writes.
var DefaultCreated = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// Containerd garbage collection labels. containerd's metadata GC only follows
// references expressed by these labels (see images.ChildGCLabels), so a
// manifest blob must carry them for its config and layers to survive a GC.
const (
	gcRefConfig = "containerd.io/gc.ref.content.config"
	gcRefLayer  = "containerd.io/gc.ref.content.l." // + index
)

// Image is one image: an OCI manifest (application/vnd.oci.image.manifest.v1+json)
// with a config (application/vnd.oci.image.config.v1+json, platform
// linux/amd64, rootfs diff_ids, config.Labels, created time) and layers.
//
// Names are not part of any blob: images that differ only in names share all
// blobs and have the same Target.
type Image struct {
	// Names are fully normalized names, e.g. "docker.io/library/alpine:3.20";
	// may be empty.
	Names []string
	// Labels end up in the config's config.Labels (not on image records).
	Labels map[string]string
	// Created is the config's created time and the time of every history entry.
	Created time.Time
	// Entrypoint is the config's entrypoint: what a container runs.
	Entrypoint []string
	// Layers in manifest order (lowest first).
	Layers []Layer

	// Config is the image config JSON; ConfigDesc describes it.
	Config     []byte
	ConfigDesc ocispec.Descriptor
	// Manifest is the image manifest JSON; Target describes it.
	Manifest []byte
	Target   ocispec.Descriptor
}

// Blob is one content blob: its descriptor and bytes.
type Blob struct {
	Desc ocispec.Descriptor
	Data []byte
}

// Opt configures New.
type Opt func(*Image)

// WithNames adds names (fully normalized references such as
// "docker.io/library/alpine:3.20"). Repeated calls accumulate.
func WithNames(names ...string) Opt {
	return func(img *Image) {
		img.Names = append(img.Names, names...)
	}
}

// WithLabels merges labels into the image config's labels. The map is copied.
func WithLabels(labels map[string]string) Opt {
	return func(img *Image) {
		if len(labels) == 0 {
			return
		}
		if img.Labels == nil {
			img.Labels = make(map[string]string, len(labels))
		}
		for k, v := range labels {
			img.Labels[k] = v
		}
	}
}

// WithEntrypoint sets the config's entrypoint.
func WithEntrypoint(args ...string) Opt {
	return func(img *Image) {
		img.Entrypoint = append([]string(nil), args...)
	}
}

// WithCreated sets the image creation time (stored in UTC).
func WithCreated(t time.Time) Opt {
	return func(img *Image) {
		img.Created = t.UTC()
	}
}

// WithLayers sets the image layers (lowest first), replacing any set before.
// WithLayers() without arguments makes an image with no layers at all.
func WithLayers(layers ...Layer) Opt {
	return func(img *Image) {
		img.Layers = append(make([]Layer, 0, len(layers)), layers...)
	}
}

// New builds an image. Default: one layer NewLayer(<derived from
// names/labels/created>, 1024), Created 2024-01-01 UTC (DefaultCreated).
//
// Deterministic: same options => same bytes and digests. The config and
// manifest are marshaled with encoding/json from ocispec.Image and
// ocispec.Manifest, so the output is stable (map keys are sorted).
func New(opts ...Opt) Image {
	var img Image
	for _, o := range opts {
		o(&img)
	}
	if img.Created.IsZero() {
		img.Created = DefaultCreated
	}
	if img.Layers == nil {
		img.Layers = []Layer{NewLayer(img.defaultSeed(), 1024)}
	}
	img.build()
	return img
}

// defaultSeed derives the default layer's seed from names, labels and the
// creation time, so images built with different options get different layers.
func (img *Image) defaultSeed() string {
	var b strings.Builder
	b.WriteString("default")
	for _, n := range img.Names {
		b.WriteString("\x00n=" + n)
	}
	keys := make([]string, 0, len(img.Labels))
	for k := range img.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString("\x00l=" + k + "=" + img.Labels[k])
	}
	b.WriteString("\x00c=" + img.Created.UTC().Format(time.RFC3339Nano))
	return b.String()
}

// build computes Config, ConfigDesc, Manifest and Target from the other fields.
func (img *Image) build() {
	created := img.Created.UTC()
	cfg := ocispec.Image{
		Created: &created,
		Platform: ocispec.Platform{
			Architecture: "amd64",
			OS:           "linux",
		},
		Config: ocispec.ImageConfig{
			Labels:     img.Labels,
			Entrypoint: img.Entrypoint,
		},
		RootFS: ocispec.RootFS{
			Type:    "layers",
			DiffIDs: []digest.Digest{},
		},
	}
	layerDescs := make([]ocispec.Descriptor, 0, len(img.Layers))
	for i, l := range img.Layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID())
		cfg.History = append(cfg.History, ocispec.History{
			Created:   &created,
			CreatedBy: fmt.Sprintf("testimage layer %d", i),
		})
		layerDescs = append(layerDescs, l.Desc)
	}
	img.Config = mustJSON(cfg)
	img.ConfigDesc = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageConfig,
		Digest:    digest.SHA256.FromBytes(img.Config),
		Size:      int64(len(img.Config)),
	}

	mf := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    img.ConfigDesc,
		Layers:    layerDescs,
	}
	img.Manifest = mustJSON(mf)
	img.Target = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.SHA256.FromBytes(img.Manifest),
		Size:      int64(len(img.Manifest)),
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("testimage: marshal %T: %v", v, err))
	}
	return b
}

// Size is the sum of unique blob sizes: manifest + config + layers (content
// bytes only). A layer used twice by the image is counted once.
func (img Image) Size() int64 {
	var n int64
	for _, b := range img.Blobs() {
		n += b.Desc.Size
	}
	return n
}

// Blobs returns every blob's descriptor and bytes (manifest, config, layers),
// in that order, each digest once.
func (img Image) Blobs() []Blob {
	blobs := make([]Blob, 0, 2+len(img.Layers))
	seen := make(map[digest.Digest]bool, 2+len(img.Layers))
	add := func(desc ocispec.Descriptor, data []byte) {
		if seen[desc.Digest] {
			return
		}
		seen[desc.Digest] = true
		blobs = append(blobs, Blob{Desc: desc, Data: data})
	}
	add(img.Target, img.Manifest)
	add(img.ConfigDesc, img.Config)
	for _, l := range img.Layers {
		add(l.Desc, l.Blob)
	}
	return blobs
}

// gcLabels returns the labels containerd puts on a manifest blob so that the
// metadata GC keeps its config and layers (same keys as images.ChildGCLabels
// with images.SetChildrenMappedLabels).
func (img Image) gcLabels() map[string]string {
	labels := map[string]string{
		gcRefConfig: img.ConfigDesc.Digest.String(),
	}
	for i, l := range img.Layers {
		labels[fmt.Sprintf("%s%d", gcRefLayer, i)] = l.Desc.Digest.String()
	}
	return labels
}

// Write writes the blobs into cs (skipping ones already present:
// content.WriteBlob with errdefs.IsAlreadyExists tolerated), with GC labels on
// the manifest (to config and each layer), and creates one image record per
// name in is (an existing record with the same name is updated to the new
// target). It does NOT create any dangling record: an image without names only
// gets its blobs written. Returns the created (or updated) records in name
// order.
//
// Children are written before the manifest and the manifest's GC labels are
// (re)applied even when it already existed. Between the blob writes and the
// record creation the content is unreferenced; if a GC may run concurrently,
// hold a lease on ctx (leases.WithLease) while calling Write.
//
// Image records get no labels: Labels only go into the image config, exactly
// as when the image is imported from an archive.
func (img Image) Write(ctx context.Context, cs content.Store, is images.Store) ([]images.Image, error) {
	blobs := img.Blobs()
	// Children first, manifest (blobs[0]) last.
	for _, b := range blobs[1:] {
		if err := writeBlob(ctx, cs, b, nil); err != nil {
			return nil, err
		}
	}
	labels := img.gcLabels()
	if err := writeBlob(ctx, cs, blobs[0], labels); err != nil {
		return nil, err
	}
	// The manifest may have been present already without (all) labels.
	fieldpaths := make([]string, 0, len(labels))
	for k := range labels {
		fieldpaths = append(fieldpaths, "labels."+k)
	}
	slices.Sort(fieldpaths)
	if _, err := cs.Update(ctx, content.Info{Digest: img.Target.Digest, Labels: labels}, fieldpaths...); err != nil {
		return nil, fmt.Errorf("set gc labels on manifest %s: %w", img.Target.Digest, err)
	}

	var created []images.Image
	for _, name := range img.Names {
		rec := images.Image{Name: name, Target: img.Target}
		r, err := is.Create(ctx, rec)
		if errdefs.IsAlreadyExists(err) {
			r, err = is.Update(ctx, rec, "target")
		}
		if err != nil {
			return created, fmt.Errorf("image %q: %w", name, err)
		}
		created = append(created, r)
	}
	return created, nil
}

func writeBlob(ctx context.Context, cs content.Ingester, b Blob, labels map[string]string) error {
	var opts []content.Opt
	if labels != nil {
		opts = append(opts, content.WithLabels(labels))
	}
	ref := "testimage-" + b.Desc.Digest.String()
	err := content.WriteBlob(ctx, cs, ref, bytes.NewReader(b.Data), b.Desc, opts...)
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("write blob %s: %w", b.Desc.Digest, err)
	}
	return nil
}
