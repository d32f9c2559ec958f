package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/daemon/store/embedded"
	"github.com/imgprune/imgprune/internal/testimage"
)

// limitedImages answers a list of more than max records as a daemon
// answers one larger than its 16 MiB message limit.
type limitedImages struct {
	images.Store
	max int
	// lists counts the lists asked, some of them side by side.
	lists *atomic.Int32
}

func (l limitedImages) List(ctx context.Context, filters ...string) ([]images.Image, error) {
	l.lists.Add(1)
	records, err := l.Store.List(ctx, filters...)
	if err == nil && len(records) > l.max {
		return nil, fmt.Errorf("grpc: trying to send message larger than max: %w", errdefs.ErrResourceExhausted)
	}
	return records, err
}

// TestImagesListedInParts: a store too large to list at once is listed by
// the leading digits of its targets, every record once.
func TestImagesListedInParts(t *testing.T) {
	e, err := embedded.Open(context.Background(), t.TempDir(), embedded.CreateStore())
	assert.NilError(t, err)
	defer e.Close()
	ctx := namespaces.WithNamespace(context.Background(), "moby")
	stores := e.Stores()
	const n = 60
	for i := range n {
		img := testimage.New(testimage.WithNames(fmt.Sprintf("docker.io/library/app%d:1", i)), testimage.WithLayers(testimage.NewLayer(fmt.Sprint(i), 64)))
		_, err := img.Write(ctx, stores.Content, stores.Images)
		assert.NilError(t, err)
	}
	var lists atomic.Int32
	stores.Images = limitedImages{Store: stores.Images, max: 3, lists: &lists}

	records, err := store.ListRecords(ctx, stores.Images)
	assert.NilError(t, err)
	seen := map[string]bool{}
	for _, r := range records {
		assert.Check(t, !seen[r.Name], "listed twice: %s", r.Name)
		seen[r.Name] = true
	}
	assert.Check(t, is.Len(seen, n))
	assert.Check(t, lists.Load() > 1+2+2, "listed in %d parts: not split twice", lists.Load())
}
