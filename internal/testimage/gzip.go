package testimage

import (
	"bytes"
	"compress/gzip"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Gzip returns l compressed with gzip, as registries serve layers: media
// type ocispec.MediaTypeImageLayerGzip, l's digest as its diff ID.
func Gzip(l Layer) Layer {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	mustTar(err)
	_, err = zw.Write(l.Blob)
	mustTar(err)
	mustTar(zw.Close())
	return Layer{
		Blob: buf.Bytes(),
		Desc: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageLayerGzip,
			Digest:    digest.SHA256.FromBytes(buf.Bytes()),
			Size:      int64(buf.Len()),
		},
		DiffID: l.diffID(),
	}
}

// ZeroLayer returns an uncompressed tar layer holding one file of size
// zero bytes at path: what compresses best, as a bomb's layer does.
func ZeroLayer(path string, size int) Layer {
	return FileLayer(path, make([]byte, size))
}

func (l Layer) diffID() digest.Digest {
	if l.DiffID != "" {
		return l.DiffID
	}
	return l.Desc.Digest
}
