package integration

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/internal/testimage"
)

// rewriteTar copies an archive, letting edit change each entry (or drop it,
// by returning a nil header).
func rewriteTar(f *testing.F, data []byte, edit func(hdr *tar.Header, body []byte) (*tar.Header, []byte)) []byte {
	var out bytes.Buffer
	tr := tar.NewReader(bytes.NewReader(data))
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		assert.NilError(f, err)
		body, err := io.ReadAll(tr)
		assert.NilError(f, err)
		hdr, body = edit(hdr, body)
		if hdr == nil {
			continue
		}
		hdr.Size = int64(len(body))
		assert.NilError(f, tw.WriteHeader(hdr))
		_, err = tw.Write(body)
		assert.NilError(f, err)
	}
	assert.NilError(f, tw.Close())
	return out.Bytes()
}

// loadSeeds are archives that must fail cleanly: truncated, corrupt, with
// wrong digests, escaping paths and sizes larger than the archive, beside
// the good archives they are made from.
func loadSeeds(f *testing.F) [][]byte {
	img := testimage.New(testimage.WithNames("example.com/fuzz/app:1"), testimage.WithLayers(testimage.NewLayer("fuzz/new", 4096)))
	var oci bytes.Buffer
	assert.NilError(f, testimage.WriteArchive(&oci, img))
	good := oci.Bytes()
	docker := dockerArchive(f, good).Bytes()
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0xff
	wrongDigest := rewriteTar(f, good, func(hdr *tar.Header, body []byte) (*tar.Header, []byte) {
		if strings.HasPrefix(hdr.Name, "blobs/sha256/") && len(body) > 1000 {
			body = bytes.Clone(body)
			body[0] ^= 0xff
		}
		return hdr, body
	})
	escaping := rewriteTar(f, good, func(hdr *tar.Header, body []byte) (*tar.Header, []byte) {
		if strings.HasPrefix(hdr.Name, "blobs/sha256/") {
			hdr.Name = "../../" + hdr.Name
		}
		return hdr, body
	})
	missingBlob := rewriteTar(f, good, func(hdr *tar.Header, body []byte) (*tar.Header, []byte) {
		if strings.HasPrefix(hdr.Name, "blobs/sha256/") && len(body) > 1000 {
			return nil, nil
		}
		return hdr, body
	})
	var huge bytes.Buffer
	tw := tar.NewWriter(&huge)
	assert.NilError(f, tw.WriteHeader(&tar.Header{Name: "index.json", Mode: 0o644, Size: 1 << 40, Typeflag: tar.TypeReg}))
	huge.WriteString(`{"schemaVersion":2,"manifests":[`)
	return [][]byte{
		good, docker, good[:len(good)/2], good[:len(good)-1024], good[:512], flipped, wrongDigest,
		escaping, missingBlob, huge.Bytes(), nil, []byte("not an archive"),
	}
}

// visibleState is what a user of the store sees: the names and their
// targets, the content with its labels, and the leases. A dangling record
// of a target that has a name is imgprune's refcount, which any read of
// the store may add: it is not part of it.
type visibleState struct {
	Names   map[string]digest.Digest
	Content map[digest.Digest]map[string]string
	Leases  int
}

func (e *env) visible() visibleState {
	e.t.Helper()
	st := e.state()
	named := map[digest.Digest]bool{}
	for _, r := range st.Images {
		if !plan.IsDangling(r.Name) {
			named[r.Target.Digest] = true
		}
	}
	v := visibleState{Names: map[string]digest.Digest{}, Content: map[digest.Digest]map[string]string{}, Leases: len(st.Leases)}
	for _, r := range st.Images {
		if !plan.IsDangling(r.Name) || !named[r.Target.Digest] {
			v.Names[r.Name] = r.Target.Digest
		}
	}
	for _, info := range st.Content {
		v.Content[info.Digest] = info.Labels
	}
	return v
}

// FuzzLoad: an archive either loads, or fails with a clear error and leaves
// the store as its user sees it; one that cannot be read whole writes
// nothing at all. The image already there keeps its name and content.
func FuzzLoad(f *testing.F) {
	for _, seed := range loadSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e := newEnv(t)
		old := newImage(t, "old", "example.com/fuzz/app:1")
		e.write(old)
		before, raw := e.visible(), e.state()

		_, err := e.svc.Load(e.ctx, bytes.NewReader(data))
		if err == nil {
			return
		}
		assert.Check(t, is.ErrorContains(err, "load: "))
		assert.Check(t, is.DeepEqual(e.visible(), before))
		if !isReadable(data) {
			assert.Check(t, is.DeepEqual(e.state(), raw), "an archive that cannot be read changed the store")
		}
		assert.Check(t, e.hasContent(old))
	})
}

// isReadable tells whether every entry of data reads whole as a tar.
func isReadable(data []byte) bool {
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		_, err := tr.Next()
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return false
		}
	}
}
