package plan

import (
	"cmp"
	"maps"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestResolveUsage(t *testing.T) {
	// Two targets whose IDs share a prefix, to test ambiguity.
	var ab1, ab2 digest.Digest
	for i := 0; ab2 == ""; i++ {
		d := digest.FromString(string(rune('a'+i%26)) + string(rune(i)))
		switch {
		case ab1 == "":
			ab1 = d
		case d.Encoded()[:1] == ab1.Encoded()[:1]:
			ab2 = d
		}
	}
	records := []images.Image{
		record("docker.io/library/busybox:latest", targetA),
		record("docker.io/library/busybox:1.36", targetB),
		record("docker.io/library/deadbeef:latest", targetC),
		record("example.com/one:1", ab1),
		record("example.com/two:1", ab2),
		record(criConfig.String(), targetC, criManaged),
	}
	chain := Parent{Snapshotter: "overlayfs", Key: "sha256:chain"}
	lineage := Lineage{chain: {targetA, targetB}}
	tests := []struct {
		name        string
		ctr         Container
		wantTargets []digest.Digest
		wantNames   []string
		wantKeepOne []digest.Digest
		wantWarning bool
	}{
		{name: "familiar name means latest", ctr: Container{Image: "busybox"}, wantTargets: []digest.Digest{targetA}, wantNames: []string{"docker.io/library/busybox:latest"}},
		{name: "tag", ctr: Container{Image: "busybox:1.36"}, wantTargets: []digest.Digest{targetB}, wantNames: []string{"docker.io/library/busybox:1.36"}},
		{name: "full ID", ctr: Container{Image: targetB.String()}, wantTargets: []digest.Digest{targetB}, wantKeepOne: []digest.Digest{targetB}},
		{name: "sha256-less full ID", ctr: Container{Image: targetB.Encoded()}, wantTargets: []digest.Digest{targetB}, wantKeepOne: []digest.Digest{targetB}},
		{name: "truncated ID", ctr: Container{Image: targetB.Encoded()[:8]}, wantTargets: []digest.Digest{targetB}, wantKeepOne: []digest.Digest{targetB}},
		{name: "truncated sha256: ID", ctr: Container{Image: "sha256:" + targetB.Encoded()[:8]}, wantTargets: []digest.Digest{targetB}, wantKeepOne: []digest.Digest{targetB}},
		{name: "a hex name that exists is a name", ctr: Container{Image: "deadbeef"}, wantTargets: []digest.Digest{targetC}, wantNames: []string{"docker.io/library/deadbeef:latest"}},
		{name: "repo@digest", ctr: Container{Image: "busybox@" + targetB.String()}, wantTargets: []digest.Digest{targetB}, wantKeepOne: []digest.Digest{targetB}},
		{name: "repo:tag@digest", ctr: Container{Image: "busybox:1.36@" + targetA.String()}, wantTargets: []digest.Digest{targetA}, wantNames: []string{"docker.io/library/busybox:1.36"}},
		{name: "unknown digest warns", ctr: Container{Image: "busybox@" + digest.FromString("x").String()}, wantWarning: true},
		{name: "unknown name warns", ctr: Container{Image: "nosuch:1"}, wantWarning: true},
		{name: "unknown name with image ID warns and protects the ID", ctr: Container{Image: "nosuch:1", ImageID: targetC}, wantTargets: []digest.Digest{targetC}, wantWarning: true},
		{name: "ambiguous prefix protects all, keeps no name", ctr: Container{Image: ab1.Encoded()[:1]}, wantTargets: []digest.Digest{ab1, ab2}, wantWarning: true},
		{name: "no reference, image ID only", ctr: Container{ImageID: targetA}, wantTargets: []digest.Digest{targetA}},
		{name: "CRI: config digest finds the ID record", ctr: Container{ConfigID: criConfig}, wantTargets: []digest.Digest{targetC}},
		{name: "CRI: name it runs and config digest", ctr: Container{Image: "docker.io/library/deadbeef:latest", ConfigID: criConfig}, wantTargets: []digest.Digest{targetC}, wantNames: []string{"docker.io/library/deadbeef:latest"}},
		{name: "CRI: the ID record as typed is a name", ctr: Container{Image: criConfig.String()}, wantTargets: []digest.Digest{targetC}, wantNames: []string{criConfig.String()}},
		{name: "rootfs: every target unpacked on the chain", ctr: Container{Rootfs: &chain}, wantTargets: []digest.Digest{targetA, targetB}},
		{name: "rootfs: a chain no image has", ctr: Container{Rootfs: &Parent{Snapshotter: "native", Key: "sha256:chain"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.ctr.ID = "c1"
			u := ResolveUsage(records, []Container{tc.ctr}, lineage)
			assert.Check(t, is.DeepEqual(keys(u.Targets), sorted(tc.wantTargets)))
			assert.Check(t, is.DeepEqual(namesOf(u.Names), sorted(tc.wantNames)))
			assert.Check(t, is.DeepEqual(keys(u.KeepOne), sorted(tc.wantKeepOne)))
			assert.Check(t, is.Equal(len(u.Warnings) > 0, tc.wantWarning), "warnings: %v", u.Warnings)
		})
	}
}

func keys(m map[digest.Digest]bool) []digest.Digest {
	return slices.Sorted(maps.Keys(m))
}

func namesOf(m map[string]bool) []string {
	return slices.Sorted(maps.Keys(m))
}

func sorted[S ~[]E, E cmp.Ordered](s S) S {
	if len(s) == 0 {
		return nil
	}
	return slices.Sorted(slices.Values(s))
}
