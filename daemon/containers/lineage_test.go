package containers

import (
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/reach"
)

// TestLineageOf: an index's platforms and a manifest's config lead to the
// chains they are unpacked to; targets that share layers share a chain.
func TestLineageOf(t *testing.T) {
	d := digest.FromString
	blobs := map[digest.Digest]content.Info{}
	add := func(name string, labels map[string]string) digest.Digest {
		blobs[d(name)] = content.Info{Digest: d(name), Labels: labels}
		return d(name)
	}
	cfgA := add("config a", map[string]string{reach.LabelRefSnapshot + "overlayfs": "chain-1", reach.LabelRefSnapshot + "native": "chain-1"})
	cfgB := add("config b", map[string]string{reach.LabelRefSnapshot + "overlayfs": "chain-1"})
	cfgArm := add("config arm", nil) // not unpacked on this host
	manA := add("manifest a", map[string]string{reach.LabelRefContent + ".config": cfgA.String(), reach.LabelRefContent + ".l.0": add("layer", nil).String()})
	manArm := add("manifest arm", map[string]string{reach.LabelRefContent + ".config": cfgArm.String()})
	index := add("index", map[string]string{reach.LabelRefContent + ".m.0": manA.String(), reach.LabelRefContent + ".m.1": manArm.String()})
	manB := add("manifest b", map[string]string{reach.LabelRefContent + ".config": cfgB.String()})

	l := lineageOf(blobs, []digest.Digest{index, manB, d("missing")})
	assert.Check(t, is.DeepEqual(l, plan.Lineage{
		{Snapshotter: "overlayfs", Key: "chain-1"}: {index, manB},
		{Snapshotter: "native", Key: "chain-1"}:    {index},
	}))
	configs := configsBelow(blobs, index)
	slices.Sort(configs)
	want := []digest.Digest{cfgA, cfgArm}
	slices.Sort(want)
	assert.Check(t, is.DeepEqual(configs, want))
}
