package prune

import (
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store"
)

func TestParseFreeGoal(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    FreeGoal
		wantErr string
	}{
		{in: "20%", want: FreeGoal{Percent: 20}},
		{in: " 12.5 % ", want: FreeGoal{Percent: 12.5}},
		{in: "100%", want: FreeGoal{Percent: 100}},
		{in: "50GB", want: FreeGoal{Bytes: 50_000_000_000}},
		{in: "50GiB", want: FreeGoal{Bytes: 50 << 30}},
		{in: "1024", want: FreeGoal{Bytes: 1024}},
		{in: "0%", wantErr: "a percentage is above 0 and at most 100"},
		{in: "101%", wantErr: "a percentage is above 0 and at most 100"},
		{in: "lots", wantErr: "use a percentage (20%) or a size (50GB)"},
		{in: "-5GB", wantErr: "use a percentage (20%) or a size (50GB)"},
		{in: "0", wantErr: "use a percentage (20%) or a size (50GB)"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseFreeGoal(tc.in)
			if tc.wantErr != "" {
				assert.Check(t, is.ErrorContains(err, tc.wantErr))
				assert.Check(t, errdefs.IsInvalidArgument(err))
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(got, tc.want))
		})
	}
}

func TestFreeGoalBytesAndDiskUse(t *testing.T) {
	assert.Check(t, is.Equal(FreeGoal{Percent: 20}.bytes(1000), int64(200)))
	assert.Check(t, is.Equal(FreeGoal{Bytes: 300}.bytes(1000), int64(300)))
	assert.Check(t, is.Equal(store.Disk{Size: 1000, Free: 150}.Used(), 85.0))
	assert.Check(t, is.Equal(store.Disk{}.Used(), 0.0))
}

// TestLeastRecentlyUsed: never used first, then by last use, then by when
// the target entered; targets that do not go entirely are no candidates.
func TestLeastRecentlyUsed(t *testing.T) {
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	target := func(s string) ocispec.Descriptor { return ocispec.Descriptor{Digest: digest.FromString(s)} }
	rec := func(name string, t ocispec.Descriptor, created time.Time, labels map[string]string) images.Image {
		return images.Image{Name: name, Target: t, CreatedAt: created, Labels: labels}
	}
	old, young, usedLong, usedLately, untagged := target("old"), target("young"), target("used long ago"), target("used lately"), target("untagged")
	records := []images.Image{
		rec("example.com/young:1", young, epoch.Add(2*time.Hour), nil),
		rec("example.com/old:1", old, epoch.Add(time.Hour), nil),
		rec(plan.DanglingName(old.Digest), old, epoch.Add(3*time.Hour), plan.CreatedLabel(epoch)), // entered before its name
		rec("example.com/lately:1", usedLately, epoch, nil),
		rec(plan.DanglingName(usedLately.Digest), usedLately, epoch, plan.LastUsedLabels(epoch.Add(48*time.Hour))),
		rec("example.com/long:1", usedLong, epoch, plan.LastUsedLabels(epoch.Add(24*time.Hour))),
		rec("example.com/untagged:1", untagged, epoch, nil),
	}
	var targets []plan.TargetPlan
	for _, t := range []ocispec.Descriptor{young, usedLately, old, usedLong} {
		targets = append(targets, plan.TargetPlan{Target: t, Gone: true})
	}
	targets = append(targets, plan.TargetPlan{Target: untagged, Untag: []string{"example.com/untagged:1"}})
	got := leastRecentlyUsed(records, targets)
	assert.Check(t, is.DeepEqual(got, []digest.Digest{old.Digest, young.Digest, usedLong.Digest, usedLately.Digest}))
}

func TestFewestToFree(t *testing.T) {
	// Ten candidates of 10 bytes each, but the third frees nothing (its
	// layers stay with another image).
	sizes := []int64{10, 10, 0, 10, 10, 10, 10, 10, 10, 10}
	for _, tc := range []struct {
		name   string
		needed int64
		want   int
		// tries is how many counts the search makes at most.
		tries int
	}{
		// The answer's try is the search's: none is made after it.
		{name: "nothing needed", needed: 0, want: 0, tries: 1},
		{name: "the first frees enough", needed: 5, want: 1, tries: 5},
		{name: "a candidate that frees nothing is not taken last", needed: 30, want: 4, tries: 5},
		{name: "exactly all", needed: 90, want: 10, tries: 5},
		{name: "out of reach: one try", needed: 91, want: 10, tries: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tries := 0
			got, tried, err := fewestToFree(len(sizes), tc.needed, func(k int) (int, int64, error) {
				tries++
				var n int64
				for _, s := range sizes[:k] {
					n += s
				}
				return k, n, nil
			})
			assert.NilError(t, err)
			assert.Equal(t, got, tc.want)
			assert.Equal(t, tried, tc.want, "the try returned is the answer's")
			assert.Assert(t, tries <= tc.tries, "%d tries", tries)
		})
	}
	t.Run("an error stops the search", func(t *testing.T) {
		_, _, err := fewestToFree(len(sizes), 30, func(int) (int, int64, error) { return 0, 0, errdefs.ErrUnavailable })
		assert.Assert(t, errdefs.IsUnavailable(err))
	})
}
