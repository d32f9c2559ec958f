package testimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer is one real, gzip-less (uncompressed) tar layer: media type
// ocispec.MediaTypeImageLayer ("application/vnd.oci.image.layer.v1.tar"), so
// diffID == digest.
type Layer struct {
	// Blob is the layer tar archive.
	Blob []byte
	// Desc describes Blob: media type, digest and size.
	Desc ocispec.Descriptor
	// DiffID is the digest of the uncompressed tar, for a compressed
	// layer (Gzip); empty for an uncompressed one, whose diff ID is its
	// digest.
	DiffID digest.Digest
}

// NewLayer returns a deterministic tar layer holding one regular file (path
// derived from seed, content size bytes of pseudo-random data from a PRNG
// seeded by seed) — same seed+size => same bytes.
//
// The archive holds a directory entry "data/" followed by the file
// "data/<12 hex digits of sha256(seed)>". Tar headers use DefaultCreated as
// ModTime, uid/gid 0 and mode 0755 (directory) / 0644 (file). A negative size
// is treated as 0.
func NewLayer(seed string, size int) Layer {
	if size < 0 {
		size = 0
	}
	sum := sha256.Sum256([]byte("testimage/layer\x00" + seed))
	data := make([]byte, size)
	// ChaCha8's output for a given seed is fixed by the Go specification of
	// math/rand/v2, so the data is stable across Go releases.
	_, _ = rand.NewChaCha8(sum).Read(data)

	dir := "data/"
	file := dir + hex.EncodeToString(sum[:6])

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mustTar(tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeDir,
		Name:     dir,
		Mode:     0o755,
		ModTime:  DefaultCreated,
		Format:   tar.FormatUSTAR,
	}))
	addFile(tw, file, 0o644, data)
	mustTar(tw.Close())

	return layerOf(buf.Bytes())
}

// FileLayer returns a deterministic tar layer holding one executable file
// at path (no leading slash) with data: a program for containers to run.
func FileLayer(path string, data []byte) Layer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	addFile(tw, path, 0o755, data)
	mustTar(tw.Close())
	return layerOf(buf.Bytes())
}

// addFile writes a regular file into a layer.
func addFile(tw *tar.Writer, name string, mode int64, data []byte) {
	mustTar(tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     mode,
		Size:     int64(len(data)),
		ModTime:  DefaultCreated,
		Format:   tar.FormatUSTAR,
	}))
	_, err := tw.Write(data)
	mustTar(err)
}

// layerOf describes an uncompressed tar layer.
func layerOf(blob []byte) Layer {
	return Layer{
		Blob: blob,
		Desc: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageLayer,
			Digest:    digest.SHA256.FromBytes(blob),
			Size:      int64(len(blob)),
		},
	}
}

// mustTar panics on errors that cannot happen when writing to a bytes.Buffer
// with well-formed headers.
func mustTar(err error) {
	if err != nil {
		panic(fmt.Sprintf("testimage: writing layer tar: %v", err))
	}
}
