package plan

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

var (
	epoch   = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	targetA = digest.FromString("a")
	targetB = digest.FromString("b")
	targetC = digest.FromString("c")
)

func record(name string, target digest.Digest, opts ...func(*images.Image)) images.Image {
	r := images.Image{
		Name:      name,
		Target:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: target, Size: 100},
		CreatedAt: epoch,
	}
	for _, o := range opts {
		o(&r)
	}
	return r
}

var criConfig = digest.FromString("cri config")

func criManaged(r *images.Image) {
	r.Labels = map[string]string{CRIImageLabel: CRIImageManaged}
}

func withCreated(t time.Time) func(*images.Image) { return func(r *images.Image) { r.CreatedAt = t } }
func withUpdated(t time.Time) func(*images.Image) { return func(r *images.Image) { r.UpdatedAt = t } }
func pinned(r *images.Image)                      { r.Labels = map[string]string{PinnedLabel: PinnedValue} }

// store is a snapshot where every target has its dangling record.
func store(records ...images.Image) []images.Image {
	seen := map[digest.Digest]bool{}
	for _, r := range records {
		if !seen[r.Target.Digest] && !IsDangling(r.Name) {
			seen[r.Target.Digest] = true
			records = append(records, record(DanglingName(r.Target.Digest), r.Target.Digest))
		}
	}
	return records
}

// goneTargets are the targets p lets go entirely, in report order.
func goneTargets(p Plan) []digest.Digest {
	var gone []digest.Digest
	for _, tp := range p.Targets {
		if tp.Gone {
			gone = append(gone, tp.Target.Digest)
		}
	}
	return gone
}

func names(p Plan) []string {
	var out []string
	for _, r := range p.Remove {
		out = append(out, r.Name)
	}
	return out
}

func TestMakePlan(t *testing.T) {
	all := Filters{}
	danglingOnly := Filters{DanglingOnly: true}
	dA, dB, dC := DanglingName(targetA), DanglingName(targetB), DanglingName(targetC)
	tests := []struct {
		name       string
		snapshot   Snapshot
		filters    Filters
		wantRemove []string
		wantGone   []digest.Digest
		wantEnsure []digest.Digest
		wantAdopt  []digest.Digest
		wantWarn   string
	}{
		{
			name: "an unused CRI image loses its tag, digest and ID records",
			snapshot: Snapshot{Records: []images.Image{
				record("registry.k8s.io/app:1", targetA, criManaged),
				record("registry.k8s.io/app@"+targetA.String(), targetA, criManaged),
				record(criConfig.String(), targetA, criManaged),
			}},
			filters:    all,
			wantRemove: []string{"registry.k8s.io/app:1", "registry.k8s.io/app@" + targetA.String(), criConfig.String()},
			wantGone:   []digest.Digest{targetA},
		},
		{
			name: "a used CRI image keeps every name: its tag, its digest and its ID record",
			snapshot: Snapshot{
				Records: []images.Image{
					record("registry.k8s.io/app:1", targetA, criManaged),
					record("registry.k8s.io/app@"+targetA.String(), targetA, criManaged),
					record(criConfig.String(), targetA, criManaged),
				},
				Containers: []Container{{ID: "c1", Source: "cri", Image: "registry.k8s.io/app:1", ImageID: targetA, ConfigID: criConfig}},
			},
			filters: all,
		},
		{
			name: "a container known by its rootfs alone keeps its target's content",
			snapshot: Snapshot{
				Records:    []images.Image{record("docker.io/library/old:1", targetA), record("docker.io/library/other:1", targetB)},
				Containers: []Container{{ID: "c1", Source: "rootfs", Rootfs: &Parent{Snapshotter: "native", Key: "chain-a"}}},
				Lineage:    Lineage{{Snapshotter: "native", Key: "chain-a"}: {targetA}},
			},
			filters:    all,
			wantRemove: []string{"docker.io/library/old:1", "docker.io/library/other:1"},
			wantGone:   []digest.Digest{targetB},
			wantEnsure: []digest.Digest{targetA},
			wantAdopt:  []digest.Digest{targetA},
		},
		{
			name:       "only targets that stay are adopted",
			snapshot:   Snapshot{Records: []images.Image{record("docker.io/library/a:1", targetA), record("docker.io/library/b:1", targetB), record("docker.io/library/b:2", targetB, withCreated(epoch.Add(2*time.Hour)))}},
			filters:    Filters{Until: epoch.Add(time.Hour)},
			wantRemove: []string{"docker.io/library/a:1", "docker.io/library/b:1"},
			wantGone:   []digest.Digest{targetA},
			wantAdopt:  []digest.Digest{targetB},
		},
		{
			name: "reference selects names; a target keeping one stays, a nameless one matches nothing",
			snapshot: Snapshot{Records: store(
				record("docker.io/library/app:1", targetA), record("docker.io/library/app:2", targetB), record("docker.io/library/tools:2", targetB),
				record(dC, targetC),
			)},
			filters:    Filters{References: []string{"app"}},
			wantRemove: []string{"docker.io/library/app:1", "docker.io/library/app:2", dA},
			wantGone:   []digest.Digest{targetA},
		},
		{
			name: "a digest name goes with the tag of its repository that matched, unless reference! keeps it",
			snapshot: Snapshot{Records: store(
				record("docker.io/library/app:1", targetA), record("docker.io/library/app@"+targetA.String(), targetA),
				record("docker.io/library/app:2", targetB), record("docker.io/library/app@"+targetB.String(), targetB),
				record("docker.io/library/other@"+targetA.String(), targetA),
			)},
			filters:    Filters{References: []string{"app:1", "app:2"}, NotReferences: []string{"app@" + targetB.String()}},
			wantRemove: []string{"docker.io/library/app:1", "docker.io/library/app:2", "docker.io/library/app@" + targetA.String()},
		},
		{
			name:       "reference! keeps what it matches",
			snapshot:   Snapshot{Records: store(record("docker.io/library/app:1", targetA), record("docker.io/library/app:keep", targetB), record(dC, targetC))},
			filters:    Filters{NotReferences: []string{"*:keep"}},
			wantRemove: []string{"docker.io/library/app:1", dC, dA}, // dangling records by target
			wantGone:   []digest.Digest{targetA, targetC},
		},
		{
			name: "a CRI image without a name left matches no reference",
			snapshot: Snapshot{Records: []images.Image{
				record(criConfig.String(), targetA, criManaged),
				record("registry.k8s.io/app:1", targetB, criManaged), record(digest.FromString("cfg b").String(), targetB, criManaged),
			}},
			filters:    Filters{References: []string{"registry.k8s.io/*"}},
			wantRemove: []string{"registry.k8s.io/app:1", digest.FromString("cfg b").String()},
			wantGone:   []digest.Digest{targetB},
		},
		{
			name: "keep-last keeps the newest images of each repository, a tag and a digest as one",
			snapshot: Snapshot{Records: store(
				record("docker.io/library/app:1", targetA, withCreated(epoch)),
				record("docker.io/library/app:2", targetB, withCreated(epoch.Add(time.Hour))),
				record("docker.io/library/app@"+targetB.String(), targetB, withCreated(epoch.Add(time.Hour))),
				record("docker.io/library/app:3", targetC, withCreated(epoch.Add(2*time.Hour))),
				record("docker.io/library/other:1", targetA, withCreated(epoch)),
			)},
			filters:    Filters{KeepLast: 2},
			wantRemove: []string{"docker.io/library/app:1"},
		},
		{
			name: "keep-last ranks an image by its newest name's arrival, not by a later change of labels",
			snapshot: Snapshot{Records: store(
				record("docker.io/library/app:latest", targetA, withCreated(epoch), withUpdated(epoch.Add(3*time.Hour))),
				record("docker.io/library/app:3", targetA, withCreated(epoch.Add(time.Hour))),
				record("docker.io/library/app:2", targetB, withCreated(epoch.Add(2*time.Hour))),
				record("docker.io/library/app:1", targetC, withCreated(epoch.Add(90*time.Minute))),
			)},
			filters:    Filters{KeepLast: 2},
			wantRemove: []string{"docker.io/library/app:3", "docker.io/library/app:latest", dA},
			wantGone:   []digest.Digest{targetA},
		},
		{
			name: "keep-last ranks a tag moved onto a new image by when the image arrived",
			snapshot: Snapshot{
				Records: store(
					record("docker.io/library/app:latest", targetA, withCreated(epoch)),
					record("docker.io/library/app:2", targetB, withCreated(epoch.Add(2*time.Hour))),
					record("docker.io/library/app:1", targetC, withCreated(epoch.Add(time.Hour))),
				),
				Arrived: map[digest.Digest]time.Time{targetA: epoch.Add(3 * time.Hour), targetB: epoch.Add(2 * time.Hour), targetC: epoch.Add(time.Hour)},
			},
			filters:    Filters{KeepLast: 2},
			wantRemove: []string{"docker.io/library/app:1", dC},
			wantGone:   []digest.Digest{targetC},
		},
		{
			name: "keep-last counts used and pinned images but never removes them",
			snapshot: Snapshot{
				Records: store(
					record("docker.io/library/app:1", targetA, withCreated(epoch)),
					record("docker.io/library/app:2", targetB, withCreated(epoch.Add(time.Hour)), pinned),
					record("docker.io/library/app:3", targetC, withCreated(epoch.Add(2*time.Hour))),
				),
				Containers: []Container{{ID: "c1", Image: "app:1"}},
			},
			filters: Filters{KeepLast: 1},
			// app:3 is the last; app:2 is pinned and app:1 used, so nothing goes.
		},
		{
			name:       "targets limits the prune to the targets given",
			snapshot:   Snapshot{Records: []images.Image{record("docker.io/library/a:1", targetA), record("docker.io/library/b:1", targetB), record(dB, targetB)}},
			filters:    Filters{Targets: map[digest.Digest]bool{targetB: true}},
			wantRemove: []string{"docker.io/library/b:1", dB},
			wantGone:   []digest.Digest{targetB},
			wantAdopt:  []digest.Digest{targetA},
		},
		{
			name:      "a dangling-only prune adopts the named targets it keeps",
			snapshot:  Snapshot{Records: []images.Image{record("docker.io/library/a:1", targetA)}},
			filters:   danglingOnly,
			wantAdopt: []digest.Digest{targetA},
		},
		{
			name:       "dangling only removes nameless targets",
			snapshot:   Snapshot{Records: store(record("docker.io/library/a:1", targetA), record(dB, targetB))},
			filters:    danglingOnly,
			wantRemove: []string{dB},
			wantGone:   []digest.Digest{targetB},
		},
		{
			name:       "all removes names first and dangling records last",
			snapshot:   Snapshot{Records: store(record("docker.io/library/b:1", targetB), record("docker.io/library/a:1", targetA), record("docker.io/library/a:2", targetA))},
			filters:    all,
			wantRemove: []string{"docker.io/library/a:1", "docker.io/library/a:2", "docker.io/library/b:1", dB, dA},
			wantGone:   []digest.Digest{targetA, targetB}, // in report order: by name
		},
		{
			name: "container by name keeps that name and untags the others",
			snapshot: Snapshot{
				Records:    store(record("docker.io/library/a:1", targetA), record("docker.io/library/a:latest", targetA)),
				Containers: []Container{{ID: "c1", Image: "a"}},
			},
			filters:    all,
			wantRemove: []string{"docker.io/library/a:1"},
		},
		{
			name: "container by full ID keeps the alphabetically last name",
			snapshot: Snapshot{
				Records:    store(record("docker.io/library/a:1", targetA), record("docker.io/library/z:1", targetA), record("docker.io/library/m:1", targetA)),
				Containers: []Container{{ID: "c1", Image: targetA.String()}},
			},
			filters:    all,
			wantRemove: []string{"docker.io/library/a:1", "docker.io/library/m:1"},
		},
		{
			name: "container by sha256-less ID",
			snapshot: Snapshot{
				Records:    store(record("docker.io/library/a:1", targetA), record("docker.io/library/b:1", targetA)),
				Containers: []Container{{ID: "c1", Image: targetA.Encoded()}},
			},
			filters:    all,
			wantRemove: []string{"docker.io/library/a:1"},
		},
		{
			name: "container by truncated ID",
			snapshot: Snapshot{
				Records:    store(record("docker.io/library/a:1", targetA), record("docker.io/library/b:1", targetB)),
				Containers: []Container{{ID: "c1", Image: targetA.Encoded()[:12]}},
			},
			filters:    all,
			wantRemove: []string{"docker.io/library/b:1", dB},
			wantGone:   []digest.Digest{targetB},
		},
		{
			name: "container by digest keeps a name",
			snapshot: Snapshot{
				Records:    store(record("docker.io/library/a:1", targetA)),
				Containers: []Container{{ID: "c1", Image: "a@" + targetA.String()}},
			},
			filters: all,
		},
		{
			name: "container by repo:tag@digest protects repo:tag and the digest",
			snapshot: Snapshot{
				Records:    store(record("docker.io/library/a:1", targetB), record("docker.io/library/a:2", targetA)),
				Containers: []Container{{ID: "c1", Image: "a:1@" + targetA.String()}},
			},
			filters:    all,
			wantRemove: []string{"docker.io/library/a:2"},
			wantEnsure: []digest.Digest{targetA}, // used, and losing its last name
		},
		{
			name: "container used a target whose tag moved: its content stays",
			snapshot: Snapshot{
				Records:    store(record("docker.io/library/a:1", targetB), record(dA, targetA)),
				Containers: []Container{{ID: "c1", Image: "a:1", ImageID: targetA}},
			},
			filters: all,
		},
		{
			name: "last name of a used target without its dangling record: created first",
			snapshot: Snapshot{
				Records:    []images.Image{record("docker.io/library/a:1", targetA)},
				Containers: []Container{{ID: "c1", Image: "gone:1", ImageID: targetA}},
			},
			filters:    all,
			wantRemove: []string{"docker.io/library/a:1"},
			wantEnsure: []digest.Digest{targetA},
			wantAdopt:  []digest.Digest{targetA},
			wantWarn:   "container c1",
		},
		{
			name: "unresolvable reference warns and blocks nothing",
			snapshot: Snapshot{
				Records:    store(record("docker.io/library/a:1", targetA)),
				Containers: []Container{{ID: "c1", Image: "Not A Ref!"}},
			},
			filters:    all,
			wantRemove: []string{"docker.io/library/a:1", dA},
			wantGone:   []digest.Digest{targetA},
			wantWarn:   "invalid reference",
		},
		{
			name:     "pinned images are never pruned",
			snapshot: Snapshot{Records: store(record("docker.io/library/a:1", targetA, pinned), record(dC, targetC, pinned))},
			filters:  all,
		},
		{
			name: "until keeps records created after it",
			snapshot: Snapshot{Records: store(
				record("docker.io/library/old:1", targetA),
				record("docker.io/library/new:1", targetA, withCreated(epoch.Add(2*time.Hour))),
			)},
			filters:    Filters{Until: epoch.Add(time.Hour)},
			wantRemove: []string{"docker.io/library/old:1"},
		},
		{
			name: "label and label! against config labels",
			snapshot: Snapshot{
				Records: store(record("docker.io/library/a:1", targetA), record("docker.io/library/b:1", targetB), record("docker.io/library/c:1", targetC)),
				Labels: map[digest.Digest]map[string]string{
					targetA: {"env": "ci", "keep": "yes"},
					targetB: {"env": "ci"},
					targetC: {"env": "prod"},
				},
			},
			filters:    Filters{Labels: []string{"env=ci"}, NotLabels: []string{"keep"}},
			wantRemove: []string{"docker.io/library/b:1", dB},
			wantGone:   []digest.Digest{targetB},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A Moby-convention store, as a Docker Engine's.
			tc.snapshot.DanglingRecords = true
			p := Make(tc.snapshot, tc.filters)
			assert.Check(t, is.DeepEqual(names(p), tc.wantRemove))
			assert.Check(t, is.DeepEqual(goneTargets(p), tc.wantGone))
			var ensure []digest.Digest
			for _, d := range p.EnsureDangling {
				ensure = append(ensure, d.Digest)
			}
			assert.Check(t, is.DeepEqual(ensure, tc.wantEnsure))
			var adopt []digest.Digest
			for _, r := range p.Adopt {
				assert.Check(t, is.Equal(r.Name, DanglingName(r.Target.Digest)))
				adopt = append(adopt, r.Target.Digest)
			}
			assert.Check(t, is.DeepEqual(adopt, tc.wantAdopt))
			if tc.wantWarn == "" {
				assert.Check(t, is.Len(p.Warnings, 0))
			} else {
				assert.Check(t, is.Len(p.Warnings, 1))
				assert.Check(t, strings.Contains(strings.Join(p.Warnings, "\n"), tc.wantWarn), p.Warnings)
			}
			// A free-space goal narrows a plan to some of its targets: each
			// must go as it does in the whole plan, whatever else goes.
			for _, tp := range p.Targets {
				narrow := tc.filters
				narrow.Targets = map[digest.Digest]bool{tp.Target.Digest: true}
				np := Make(tc.snapshot, narrow)
				if assert.Check(t, is.Len(np.Targets, 1), tp.Target.Digest) {
					assert.Check(t, is.DeepEqual(np.Targets[0], tp), tp.Target.Digest)
				}
			}
		})
	}
}

// TestMakePlanIsStable checks that the plan does not depend on the order of
// the listing.
func TestMakePlanIsStable(t *testing.T) {
	records := store(record("docker.io/library/b:1", targetB), record("docker.io/library/a:1", targetA), record("docker.io/library/c:1", targetC))
	want := Make(Snapshot{Records: records}, Filters{})
	for i := 0; i < 10; i++ {
		shuffled := append([]images.Image(nil), records...)
		for j := range shuffled {
			k := (j*7 + i) % len(shuffled)
			shuffled[j], shuffled[k] = shuffled[k], shuffled[j]
		}
		assert.DeepEqual(t, Make(Snapshot{Records: shuffled}, Filters{}), want)
	}
}

// BenchmarkMakePlan plans a prune -a of a store of 5000 targets with two
// names each and 500 containers using them by name, ID and digest.
func BenchmarkMakePlan(b *testing.B) {
	var records []images.Image
	var ctrs []Container
	for i := 0; i < 5000; i++ {
		target := digest.FromString(fmt.Sprint("target", i))
		records = append(records,
			record(fmt.Sprintf("example.com/app%d:latest", i), target),
			record(fmt.Sprintf("example.com/app%d:v1", i), target),
			record(DanglingName(target), target))
		switch {
		case i%30 == 0:
			ctrs = append(ctrs, Container{ID: fmt.Sprint("c", i), Image: fmt.Sprintf("example.com/app%d", i)})
		case i%30 == 10:
			ctrs = append(ctrs, Container{ID: fmt.Sprint("c", i), Image: target.Encoded()[:12]})
		case i%30 == 20:
			ctrs = append(ctrs, Container{ID: fmt.Sprint("c", i), Image: "example.com/app@" + target.String()})
		}
	}
	s := Snapshot{Records: records, Containers: ctrs}
	b.ReportAllocs()
	for b.Loop() {
		Make(s, Filters{})
	}
}

func TestAdoptions(t *testing.T) {
	records := []images.Image{
		record("docker.io/library/a:2", targetA, withCreated(epoch.Add(time.Hour))),
		record("docker.io/library/a:1", targetA),
		record("docker.io/library/b:1", targetB),
		record(DanglingName(targetB), targetB),
		record("registry.k8s.io/c:1", targetC, criManaged),
		record(criConfig.String(), targetC, criManaged),
	}
	got := Adoptions(records)
	assert.Assert(t, is.Len(got, 1), "b has its record, c's CRI ID record counts its references")
	assert.Check(t, is.Equal(got[0].Name, DanglingName(targetA)))
	assert.Check(t, is.Equal(CreatedAt(got[0]), epoch), "when its earliest name entered")
}

// TestMakePlanWhereNamesAreTheRefcount: in a store that does not follow
// Moby's convention (nerdctl's and ctr's default namespace), nothing is
// adopted and no dangling record is made sure of: a used target that would
// lose every name keeps its alphabetically last one, which keeps its
// content; unused targets go as before.
func TestMakePlanWhereNamesAreTheRefcount(t *testing.T) {
	all := Filters{}
	for _, tc := range []struct {
		name       string
		snapshot   Snapshot
		filters    Filters
		wantRemove []string
		wantGone   []digest.Digest
	}{
		{
			name: "a container known by its rootfs keeps its target a name",
			snapshot: Snapshot{
				Records:    []images.Image{record("docker.io/library/old:1", targetA), record("docker.io/library/old:2", targetA), record("docker.io/library/other:1", targetB)},
				Containers: []Container{{ID: "c1", Source: "rootfs", Rootfs: &Parent{Snapshotter: "native", Key: "chain-a"}}},
				Lineage:    Lineage{{Snapshotter: "native", Key: "chain-a"}: {targetA}},
			},
			filters:    all,
			wantRemove: []string{"docker.io/library/old:1", "docker.io/library/other:1"},
			wantGone:   []digest.Digest{targetB},
		},
		{
			name:       "a target that stays is not adopted",
			snapshot:   Snapshot{Records: []images.Image{record("docker.io/library/a:1", targetA), record("docker.io/library/b:1", targetB), record("docker.io/library/b:2", targetB, withCreated(epoch.Add(2*time.Hour)))}},
			filters:    Filters{Until: epoch.Add(time.Hour)},
			wantRemove: []string{"docker.io/library/a:1", "docker.io/library/b:1"},
			wantGone:   []digest.Digest{targetA},
		},
		{
			name:     "a dangling-only prune writes nothing",
			snapshot: Snapshot{Records: []images.Image{record("docker.io/library/a:1", targetA)}},
			filters:  Filters{DanglingOnly: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Make(tc.snapshot, tc.filters)
			assert.Check(t, is.DeepEqual(names(p), tc.wantRemove))
			assert.Check(t, is.DeepEqual(goneTargets(p), tc.wantGone))
			assert.Check(t, is.Len(p.Adopt, 0))
			assert.Check(t, is.Len(p.EnsureDangling, 0))
		})
	}
}
