package plan

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Snapshot is what a prune decides on: the namespace's records and the
// containers of every source, listed once, each target's image config
// labels, and where each target is unpacked.
type Snapshot struct {
	Records    []images.Image
	Containers []Container
	// Labels are the config labels of each target, all platforms merged.
	Labels map[digest.Digest]map[string]string
	// Lineage maps unpacked chain IDs to their targets, for containers known
	// by their rootfs.
	Lineage Lineage
	// Arrived is when each target's content arrived in the namespace: a tag
	// moved onto a new image is as new as the image, though its record was
	// created long before.
	Arrived map[digest.Digest]time.Time
	// DanglingRecords is set where the store follows Moby's convention
	// (namespace moby): a dangling record per target is its refcount, and
	// targets that stay without one are adopted. Elsewhere (nerdctl's and
	// ctr's default, CRI's k8s.io) no tool knows it: the names are the
	// refcount, none is adopted, and a used target keeps a name.
	DanglingRecords bool
}

// Plan is what a prune does. It is a pure function of a Snapshot and Filters.
type Plan struct {
	// Adopt lists the dangling records to create before anything goes, in
	// target order: one for each target that stays and lacks one (another
	// tool named it). A target that goes entirely is never adopted.
	Adopt []images.Image
	// Remove lists the records to delete, in the order to delete them:
	// named records first, by name (the records of a CRI image together,
	// under its first name), dangling records last, so that an interrupted
	// prune leaves every target it did not finish still counted.
	Remove []images.Image
	// EnsureDangling lists used targets that lose every name: their
	// dangling record is made sure of again just before their names go and
	// after, since another client may remove it meanwhile.
	EnsureDangling []ocispec.Descriptor
	// Targets lists, in report order, every target the prune touches:
	// named ones by their first name removed, then the others by digest.
	Targets []TargetPlan
	// Warnings are containers whose reference could not be resolved.
	Warnings []string
	// Used lists the targets containers use, sorted.
	Used []digest.Digest
}

// TargetPlan is what happens to one target.
type TargetPlan struct {
	Target ocispec.Descriptor
	// Untag lists the names removed from the target, sorted.
	Untag []string
	// Gone is set when every record of the target goes, so its content is
	// left to the garbage collector.
	Gone bool
	// Named is set when the target had a name before the prune.
	Named bool
}

// sortForReport sorts targets by reportKey, each key made once.
func sortForReport(targets []TargetPlan) {
	type keyed struct {
		key string
		tp  TargetPlan
	}
	ks := make([]keyed, len(targets))
	for i, tp := range targets {
		ks[i] = keyed{tp.reportKey(), tp}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
	for i := range ks {
		targets[i] = ks[i].tp
	}
}

// reportKey orders the report as a reader looks for an image: by its first
// name, then the targets without one by digest.
func (tp TargetPlan) reportKey() string {
	if len(tp.Untag) > 0 {
		return "0" + tp.Untag[0]
	}
	return "1" + tp.Target.Digest.String()
}

// Make decides, for every record in s, whether it stays or goes.
func Make(s Snapshot, f Filters) Plan {
	u := ResolveUsage(s.Records, s.Containers, s.Lineage)
	kept := keepLast(s.Records, s.Arrived, f.KeepLast)
	byTarget := ByTarget(s.Records)
	// Sized up front: these grow to a hundred thousand entries.
	p := Plan{Warnings: u.Warnings, Remove: make([]images.Image, 0, len(s.Records)), Targets: make([]TargetPlan, 0, len(byTarget))}
	var dangling []images.Image
	// group keeps the records of a CRI image together in Remove, under its
	// first name: an interrupted prune leaves few images part-removed.
	var group map[string]string
	for _, target := range slices.Sorted(maps.Keys(byTarget)) {
		d := decide(byTarget[target], u, kept, f, s.Labels[target])
		if !s.DanglingRecords {
			d = namesCount(d, u.Targets[target])
		}
		if d.whole && len(d.removeNames) > 0 {
			if group == nil {
				group = map[string]string{}
			}
			for _, r := range d.removeNames {
				group[r.Name] = d.plan.Untag[0]
			}
		}
		if d.adopt != nil {
			p.Adopt = append(p.Adopt, *d.adopt)
		}
		if d.ensureDangling {
			p.EnsureDangling = append(p.EnsureDangling, d.plan.Target)
		}
		p.Remove = append(p.Remove, d.removeNames...)
		if d.removeDangling != nil {
			dangling = append(dangling, *d.removeDangling)
		}
		if len(d.plan.Untag) > 0 || d.plan.Gone {
			p.Targets = append(p.Targets, d.plan)
		}
	}
	p.Used = slices.Sorted(maps.Keys(u.Targets))
	slices.SortFunc(p.Remove, func(a, b images.Image) int {
		if group != nil {
			if c := cmp.Compare(groupOf(group, a.Name), groupOf(group, b.Name)); c != 0 {
				return c
			}
		}
		return cmp.Compare(a.Name, b.Name)
	})
	sortForReport(p.Targets)
	p.Remove = append(p.Remove, dangling...)
	return p
}

// groupOf is the name a record is ordered under in Remove.
func groupOf(group map[string]string, name string) string {
	if g, ok := group[name]; ok {
		return g
	}
	return name
}

// decision is what a prune does with the records of one target.
type decision struct {
	plan TargetPlan
	// whole: a CRI image, whose records go together.
	whole          bool
	removeNames    []images.Image
	removeDangling *images.Image
	// adopt is the dangling record to create: the target stays and lacks one.
	adopt *images.Image
	// ensureDangling: a used target loses every name.
	ensureDangling bool
}

// namesCount turns d, decided for a store with dangling records, into the
// decision for one without: nothing is adopted, and a used target that
// would lose every name keeps its alphabetically last one, which then
// keeps its content.
func namesCount(d decision, used bool) decision {
	d.adopt = nil
	if d.ensureDangling && used {
		d.ensureDangling = false
		d.removeNames = d.removeNames[:len(d.removeNames)-1]
		d.plan.Untag = d.plan.Untag[:len(d.plan.Untag)-1]
	}
	return d
}

// TargetRecords are the records of one target by kind.
type TargetRecords struct {
	Names []images.Image // names, sorted
	IDs   []images.Image // CRI's image ID records, sorted
	// Dangling is the target's dangling record, if it has one.
	Dangling *images.Image
}

// SortRecords sorts the records of one target by kind.
func SortRecords(records []images.Image) TargetRecords {
	var tr TargetRecords
	for i, r := range records {
		switch {
		case IsDangling(r.Name):
			tr.Dangling = &records[i]
		case IsCRIImageID(r):
			tr.IDs = append(tr.IDs, r)
		default:
			tr.Names = append(tr.Names, r)
		}
	}
	byName := func(a, b images.Image) int { return cmp.Compare(a.Name, b.Name) }
	slices.SortFunc(tr.Names, byName)
	slices.SortFunc(tr.IDs, byName)
	return tr
}

// decide decides on the records of one target.
// kept are the names keep-last keeps.
func decide(records []images.Image, u Usage, kept map[string]bool, f Filters, labels map[string]string) decision {
	tr := SortRecords(records)
	d := decision{plan: TargetPlan{Target: records[0].Target, Named: len(tr.Names) > 0}}
	target := d.plan.Target.Digest
	if slices.ContainsFunc(records, IsPinned) || (f.Targets != nil && !f.Targets[target]) {
		d.adopt = adoption(tr)
		return d
	}
	used := u.Targets[target]
	if IsCRIImage(records) {
		return decideWhole(tr, d, used, kept, f, labels)
	}
	matches := f.MatchLabels(labels)
	goes := func(r images.Image) bool { return matches && !u.Names[r.Name] && f.matchCreated(r.CreatedAt) }
	if !f.DanglingOnly {
		selected := f.selectNames(tr.Names)
		for _, r := range tr.Names {
			if goes(r) && !kept[r.Name] && (selected == nil || selected[r.Name]) {
				d.removeNames = append(d.removeNames, r)
			}
		}
	}
	if used && u.KeepOne[target] && len(tr.Names) > 0 && len(d.removeNames) == len(tr.Names) {
		// Created by ID or digest: keep the alphabetically last name.
		d.removeNames = d.removeNames[:len(d.removeNames)-1]
	}
	for _, r := range d.removeNames {
		d.plan.Untag = append(d.plan.Untag, r.Name)
	}
	// Only a CRI image has ID records: it is decided whole, above.
	allGo := len(d.removeNames) == len(tr.Names)
	switch {
	case used || !allGo:
		// The target stays: its dangling record is its refcount. A used
		// target losing its last name keeps its content through it, made
		// sure of again (another client may remove it) as the names go.
		d.adopt = adoption(tr)
		d.ensureDangling = used && allGo && len(d.removeNames) > 0
	case len(d.removeNames) > 0 || (tr.Dangling != nil && matches && f.MatchNameless() && f.matchCreated(CreatedAt(*tr.Dangling))):
		d.plan.Gone = true
		d.removeDangling = tr.Dangling
	}
	return d
}

// Adoptions are the dangling records the targets of records lack, in
// target order: none for a target that has one, or whose CRI ID record
// counts its references.
func Adoptions(records []images.Image) []images.Image {
	byTarget := ByTarget(records)
	var out []images.Image
	for _, d := range slices.Sorted(maps.Keys(byTarget)) {
		if a := adoption(SortRecords(byTarget[d])); a != nil {
			out = append(out, *a)
		}
	}
	return out
}

// adoption is the dangling record a target that stays lacks, or nil. It
// carries when the target entered, its earliest record's creation, and its
// last use, when one of its names has it. A CRI
// image needs none: it keeps every name while it stays, its ID record is
// already one record per target that CRI keeps, and a dangling record would
// show in `crictl images` as a digest of the image.
func adoption(tr TargetRecords) *images.Image {
	if tr.Dangling != nil || len(tr.IDs) > 0 || slices.ContainsFunc(tr.Names, IsCRIManaged) {
		return nil
	}
	all := append(slices.Clone(tr.Names), tr.IDs...)
	if len(all) == 0 {
		return nil
	}
	first := slices.MinFunc(all, func(a, b images.Image) int { return a.CreatedAt.Compare(b.CreatedAt) })
	labels := CreatedLabel(first.CreatedAt)
	if last := LastUsed(all); !last.IsZero() {
		// The last use stamped on a name moves to the record that outlives
		// the names.
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, LastUsedLabels(last))
	}
	return &images.Image{Name: DanglingName(first.Target.Digest), Target: first.Target, CreatedAt: first.CreatedAt, Labels: labels}
}
