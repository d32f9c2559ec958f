package plan

import (
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// criImage is what `crictl pull repo:tag` makes: the tag, the digest and the
// ID record, each labelled as CRI's, created at created.
func criImage(repoTag string, target digest.Digest, created time.Time, opts ...func(*images.Image)) []images.Image {
	repo := repoTag[:len(repoTag)-len(":1")]
	config := digest.FromString("config of " + target.String())
	var out []images.Image
	for _, name := range []string{repoTag, repo + "@" + target.String(), config.String()} {
		out = append(out, record(name, target, append([]func(*images.Image){criManaged, withCreated(created)}, opts...)...))
	}
	return out
}

func withLabel(k, v string) func(*images.Image) {
	return func(r *images.Image) {
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		r.Labels[k] = v
	}
}

func cat(lists ...[]images.Image) []images.Image { return slices.Concat(lists...) }

// TestMakePlanCRIImagesWhole checks that a CRI image keeps every name while
// anything uses it, and loses them all when nothing does and the filters
// select it: the set the kubelet's image garbage collection keeps.
func TestMakePlanCRIImagesWhole(t *testing.T) {
	a := criImage("registry.k8s.io/app:1", targetA, epoch)
	b := criImage("registry.k8s.io/app:2", targetB, epoch.Add(time.Hour))
	c := criImage("registry.k8s.io/tools:1", targetC, epoch.Add(2*time.Hour))
	namesOf := func(rs ...[]images.Image) []string {
		var out []string
		for _, r := range cat(rs...) {
			out = append(out, r.Name)
		}
		return out
	}
	tests := []struct {
		name     string
		snapshot Snapshot
		filters  Filters
		wantGone []digest.Digest // whole images removed; every other record stays
	}{
		{
			name:     "unused images go whole",
			snapshot: Snapshot{Records: cat(a, b)},
			wantGone: []digest.Digest{targetA, targetB},
		},
		{
			name: "an image run by its digest keeps its tag and ID too",
			snapshot: Snapshot{Records: cat(a, b), Containers: []Container{
				{ID: "c1", Source: "cri", Image: "registry.k8s.io/app@" + targetA.String(), ImageID: targetA},
			}},
			wantGone: []digest.Digest{targetB},
		},
		{
			name: "an image run by its ID alone keeps every name",
			snapshot: Snapshot{Records: cat(a, b), Containers: []Container{
				{ID: "c1", Source: "cri", ConfigID: digest.FromString("config of " + targetB.String())},
			}},
			wantGone: []digest.Digest{targetA},
		},
		{
			name: "the old image of a moved tag, known by its rootfs, keeps its digest and ID",
			snapshot: Snapshot{
				Records: cat(
					[]images.Image{record("registry.k8s.io/app:1", targetB, criManaged)}, // the tag moved to b
					a[1:], b[1:],
				),
				Containers: []Container{{ID: "c1", Source: "rootfs", Rootfs: &Parent{Snapshotter: "overlayfs", Key: "chain-a"}}},
				Lineage:    Lineage{{Snapshotter: "overlayfs", Key: "chain-a"}: {targetA}},
			},
			wantGone: []digest.Digest{targetB},
		},
		{
			name: "the image a moved tag names now goes when no container runs it: CRI runs the image it recorded",
			snapshot: Snapshot{
				Records: cat([]images.Image{record("registry.k8s.io/app:1", targetB, criManaged)}, a[1:], b[1:]),
				Containers: []Container{{ID: "c1", Source: "cri", Image: "registry.k8s.io/app:1", ImageID: targetA,
					ConfigID: digest.FromString("config of " + targetA.String()), RunsRecorded: true}},
			},
			wantGone: []digest.Digest{targetB},
		},
		{
			name: "a CRI container whose recorded image no record names any more is known by its name",
			snapshot: Snapshot{
				Records: cat(a, b),
				Containers: []Container{{ID: "c1", Source: "cri", Image: "registry.k8s.io/app:2",
					ConfigID: digest.FromString("a config no record names"), RunsRecorded: true}},
			},
			wantGone: []digest.Digest{targetA},
		},
		{
			name: "until and keep-last read when a record given back was first made",
			snapshot: Snapshot{Records: cat(
				criImage("registry.k8s.io/app:1", targetA, epoch.Add(3*time.Hour), withLabel(CreatedAtLabel, epoch.Format(time.RFC3339Nano))),
				criImage("registry.k8s.io/app:2", targetB, epoch.Add(time.Hour)),
			)},
			filters:  Filters{KeepLast: 1, Until: epoch.Add(2 * time.Hour)},
			wantGone: []digest.Digest{targetA},
		},
		{
			name:     "the pinned sandbox image stays",
			snapshot: Snapshot{Records: cat(criImage("registry.k8s.io/pause:1", targetA, epoch, withLabel(PinnedLabel, PinnedValue)), b)},
			wantGone: []digest.Digest{targetB},
		},
		{
			name:     "reference selects an image by any of its names, a tag or a digest, and takes them all",
			snapshot: Snapshot{Records: cat(a, b, c)},
			filters:  Filters{References: []string{"registry.k8s.io/app:1", "registry.k8s.io/tools@*"}},
			wantGone: []digest.Digest{targetA, targetC},
		},
		{
			name:     "reference! keeps an image any of whose names it matches",
			snapshot: Snapshot{Records: cat(a, b, c)},
			filters:  Filters{NotReferences: []string{"registry.k8s.io/app:2"}},
			wantGone: []digest.Digest{targetA, targetC},
		},
		{
			name:     "until against the newest record: a tag moved onto a new pull is new",
			snapshot: Snapshot{Records: cat([]images.Image{record("registry.k8s.io/app:1", targetB, criManaged)}, a[1:], b[1:])},
			filters:  Filters{Until: epoch.Add(30 * time.Minute)},
			wantGone: []digest.Digest{targetA},
		},
		{
			name:     "keep-last keeps whole images",
			snapshot: Snapshot{Records: cat(a, b, c)},
			filters:  Filters{KeepLast: 1},
			wantGone: []digest.Digest{targetA},
		},
		{
			name: "label selects by the image's config",
			snapshot: Snapshot{Records: cat(a, b), Labels: map[digest.Digest]map[string]string{
				targetA: {"env": "ci"},
			}},
			filters:  Filters{Labels: []string{"env=ci"}},
			wantGone: []digest.Digest{targetA},
		},
		{
			name:     "without -a only an image that has no name left goes",
			snapshot: Snapshot{Records: cat(a, b[2:])},
			filters:  Filters{DanglingOnly: true},
			wantGone: []digest.Digest{targetB},
		},
		{
			name:     "another tool's name of a CRI image goes with it",
			snapshot: Snapshot{Records: cat(a, []images.Image{record("example.com/copy:1", targetA)})},
			wantGone: []digest.Digest{targetA},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Make(tc.snapshot, tc.filters)
			assert.Check(t, is.Len(p.Adopt, 0), "a CRI image is never adopted")
			assert.Check(t, is.Len(p.EnsureDangling, 0))
			byTarget := ByTarget(tc.snapshot.Records)
			removed := map[string]bool{}
			for _, r := range p.Remove {
				removed[r.Name] = true
			}
			var gone []digest.Digest
			for _, tp := range p.Targets {
				assert.Check(t, tp.Gone, "a CRI image loses no name unless it goes: %v", tp.Untag)
				gone = append(gone, tp.Target.Digest)
				assert.Check(t, is.DeepEqual(tp.Untag, namesOf(SortRecords(byTarget[tp.Target.Digest]).Names, SortRecords(byTarget[tp.Target.Digest]).IDs)))
			}
			assert.Check(t, is.DeepEqual(sortedDigests(gone), sortedDigests(tc.wantGone)))
			for target, rs := range byTarget {
				for _, r := range rs {
					goes := false
					for _, g := range tc.wantGone {
						goes = goes || g == target
					}
					assert.Check(t, is.Equal(removed[r.Name], goes), r.Name)
				}
			}
		})
	}
}

// TestMakePlanRemovesCRIImagesOneAfterTheOther: the records of each CRI
// image are deleted one after the other, under its first name, so that a
// prune stopped midway leaves few images part-removed; docker's names and
// the dangling records keep their places.
func TestMakePlanRemovesCRIImagesOneAfterTheOther(t *testing.T) {
	a := criImage("registry.k8s.io/app:1", targetA, epoch)
	b := criImage("registry.k8s.io/app:2", targetB, epoch)
	p := Make(Snapshot{Records: cat(a, b, store(record("docker.io/library/z:1", targetC)))}, Filters{})
	var got []string
	for _, r := range p.Remove {
		got = append(got, r.Name)
	}
	assert.Check(t, is.DeepEqual(got, []string{
		"docker.io/library/z:1",
		a[0].Name, a[1].Name, a[2].Name,
		b[0].Name, b[1].Name, b[2].Name,
		DanglingName(targetC),
	}))
}

func sortedDigests(ds []digest.Digest) []digest.Digest { return slices.Sorted(slices.Values(ds)) }
