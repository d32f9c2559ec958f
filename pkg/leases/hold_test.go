package leases

import (
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// TestHoldAllExpiresWhenAsked: a hold is never renewed, so its holder says
// how long it may take; an hour by default.
func TestHoldAllExpiresWhenAsked(t *testing.T) {
	ctx, db := newStore(t)
	lm := metadata.NewLeaseManager(db)
	target := []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("t"), Size: 1}}

	for _, tc := range []struct {
		opts []HoldOpt
		want time.Duration
	}{
		{want: time.Hour},
		{opts: []HoldOpt{HoldFor(3 * time.Hour)}, want: 3 * time.Hour},
	} {
		release, err := HoldAll(ctx, lm, db.ContentStore(), target, tc.opts...)
		assert.NilError(t, err)
		ls, err := lm.List(ctx, "labels."+holdLabel)
		assert.NilError(t, err)
		assert.Assert(t, is.Len(ls, 1))
		exp, ok := expiry(ls[0])
		assert.Check(t, ok)
		left := time.Until(exp)
		assert.Check(t, left > tc.want-time.Minute && left <= tc.want, "expires in %v, want %v", left, tc.want)
		release()
	}
}
