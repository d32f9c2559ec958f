package testimage

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"slices"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/reference"
	distref "github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// WriteArchive writes imgs as an OCI image-layout tar archive (oci-layout
// file, index.json, blobs/sha256/...) to w.
//
// index.json lists one manifest descriptor per name, with annotations
// "org.opencontainers.image.ref.name" set to the name's tag (e.g. "3.20") and
// "io.containerd.image.name" set to the full name, so that containerd's
// client.Import (archive.ImportIndex) and `docker load` assign the full names.
// An image with no names is listed once without name annotations. Blobs shared
// by several images are written once.
//
// Like containerd's exporter, the archive also carries a Docker-style
// manifest.json (RepoTags are the familiar forms of the tagged names), which
// `docker load` without the containerd image store needs; containerd ignores
// it when oci-layout is present. Entries are sorted by name and every tar
// header is fixed (ModTime DefaultCreated, uid/gid 0), so the same images
// always produce the same archive bytes.
func WriteArchive(w io.Writer, imgs ...Image) error {
	var (
		blobs     = map[string][]byte{} // tar path -> data
		manifests []ocispec.Descriptor
		dockerMfs = []dockerManifest{}
		seenMf    = map[digest.Digest]int{} // manifest digest -> index in dockerMfs
	)
	for _, img := range imgs {
		for _, b := range img.Blobs() {
			blobs[blobPath(b.Desc.Digest)] = b.Data
		}

		di, ok := seenMf[img.Target.Digest]
		if !ok {
			di = len(dockerMfs)
			seenMf[img.Target.Digest] = di
			dm := dockerManifest{
				Config:   blobPath(img.ConfigDesc.Digest),
				RepoTags: []string{},
				Layers:   []string{},
			}
			for _, l := range img.Layers {
				dm.Layers = append(dm.Layers, blobPath(l.Desc.Digest))
			}
			dockerMfs = append(dockerMfs, dm)
		}

		if len(img.Names) == 0 {
			manifests = append(manifests, img.Target)
			continue
		}
		for _, name := range img.Names {
			desc := img.Target
			desc.Annotations = map[string]string{
				images.AnnotationImageName: name,
				ocispec.AnnotationRefName:  ociReferenceName(name),
			}
			manifests = append(manifests, desc)

			tag, err := familiarTag(name)
			if err != nil {
				return err
			}
			if tag != "" && !slices.Contains(dockerMfs[di].RepoTags, tag) {
				dockerMfs[di].RepoTags = append(dockerMfs[di].RepoTags, tag)
			}
		}
	}
	if manifests == nil {
		manifests = []ocispec.Descriptor{}
	}

	files := map[string][]byte{
		ocispec.ImageLayoutFile: mustJSON(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}),
		ocispec.ImageIndexFile: mustJSON(ocispec.Index{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageIndex,
			Manifests: manifests,
		}),
		"manifest.json": mustJSON(dockerMfs),
	}
	for p, data := range blobs {
		files[p] = data
	}

	return writeTar(w, files)
}

// writeTar writes files, and the blob folders, as a tar in name order.
func writeTar(w io.Writer, files map[string][]byte) error {
	dirs := []string{"blobs/", "blobs/sha256/"}
	names := make([]string, 0, len(files)+len(dirs))
	names = append(names, dirs...)
	for p := range files {
		names = append(names, p)
	}
	slices.Sort(names)

	tw := tar.NewWriter(w)
	for _, name := range names {
		hdr := &tar.Header{
			Name:    name,
			ModTime: DefaultCreated,
			Format:  tar.FormatUSTAR,
		}
		data, isFile := files[name]
		if isFile {
			hdr.Typeflag = tar.TypeReg
			hdr.Mode = 0o644
			hdr.Size = int64(len(data))
		} else {
			hdr.Typeflag = tar.TypeDir
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write archive entry %s: %w", name, err)
		}
		if isFile {
			if _, err := tw.Write(data); err != nil {
				return fmt.Errorf("write archive entry %s: %w", name, err)
			}
		}
	}
	return tw.Close()
}

// dockerManifest is one entry of a Docker save/load manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func blobPath(d digest.Digest) string {
	return path.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

// ociReferenceName returns the OCI ref name for a full image name the same way
// containerd's archive exporter and importer do: the tag ("3.20" for
// "docker.io/library/alpine:3.20"), or the full name for by-digest names.
func ociReferenceName(name string) string {
	if spec, err := reference.Parse(name); err == nil && spec.Object != "" && spec.Object[0] != '@' {
		return spec.Object
	}
	return name
}

// familiarTag returns the familiar "repo:tag" form used in Docker's
// manifest.json RepoTags, or "" when name has no tag (by-digest names cannot
// be RepoTags).
func familiarTag(name string) (string, error) {
	named, err := distref.ParseNormalizedNamed(name)
	if err != nil {
		return "", fmt.Errorf("image name %q: %w", name, err)
	}
	tagged, ok := named.(distref.NamedTagged)
	if !ok {
		return "", nil
	}
	if _, canonical := named.(distref.Canonical); canonical {
		// name:tag@digest: Docker only accepts plain name:tag here.
		t, err := distref.WithTag(distref.TrimNamed(named), tagged.Tag())
		if err != nil {
			return "", fmt.Errorf("image name %q: %w", name, err)
		}
		tagged = t
	}
	return distref.FamiliarString(tagged), nil
}
