package reach

import (
	"testing"

	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// TestReclaimShortfallIsPerSnapshotter: what one snapshotter failed to
// remove never lowers another's bytes, and never below zero.
func TestReclaimShortfallIsPerSnapshotter(t *testing.T) {
	r := NewReclaim()
	r.Content[digest.FromString("blob")] = 100
	r.Snapshots[Snapshot{"native", "a"}] = 1000
	r.Snapshots[Snapshot{"native", "b"}] = 500
	r.Snapshots[Snapshot{"overlayfs", "c"}] = 70
	assert.Check(t, is.Equal(r.Bytes(), int64(1670)))

	r.Shortfall["native"] = 500
	assert.Check(t, is.Equal(r.Bytes(), int64(1170)))
	r.Shortfall["overlayfs"] = 1000
	assert.Check(t, is.Equal(r.Bytes(), int64(1100)), "a shortfall larger than its snapshotter's bytes takes only those")
}
