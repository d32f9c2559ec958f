package containers

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// FuzzDecodeCRI: any bytes in CRI's metadata extension decode to a
// container that names an image by valid digests, or to a clear error.
func FuzzDecodeCRI(f *testing.F) {
	target, config := digest.FromString("target"), digest.FromString("config")
	for _, seed := range []string{
		`{"Version":"v1","Metadata":{"ID":"c1","ImageRef":"` + config.String() + `","ImageDigest":"` + target.String() + `","ImageName":"docker.io/library/app:1"}}`,
		`{"Version":"v1","Metadata":{"ImageRef":"` + config.String() + `"}}`,
		`{"Version":"v1","Metadata":{"ImageRef":"sha256:zz","ImageDigest":"md5:00"}}`,
		`{"Version":"v1","Metadata":{"ImageName":"` + strings.Repeat("a", 1<<16) + `"}}`,
		`{"Version":"v1","Metadata":null}`, `{"Version":"v2"}`, `null`, `[]`, `""`, "\xff\xfe", `{"Version":`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeCRI(data)
		if err != nil {
			assert.Check(t, is.ErrorContains(err, "decode CRI container metadata"))
			assert.Check(t, is.DeepEqual(c, plan.Container{}))
			return
		}
		assert.Check(t, is.Equal(c.Source, "cri"))
		assert.Check(t, c.Image != "" || c.ImageID != "" || c.ConfigID != "")
		if c.ImageID != "" {
			assert.Check(t, c.ImageID.Validate())
		}
		if c.ConfigID != "" {
			assert.Check(t, c.ConfigID.Validate())
		}
	})
}
