package images

import (
	"cmp"
	"maps"
	"slices"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Snapshot is what a prune decides on: the namespace's records and
// containers, listed once, and each target's image config labels.
type Snapshot struct {
	Records    []images.Image
	Containers []Container
	// Labels are the config labels of each target, all platforms merged.
	Labels map[digest.Digest]map[string]string
}

// Plan is what a prune does. It is a pure function of a Snapshot and Filters.
type Plan struct {
	// Remove lists the records to delete, in the order to delete them:
	// named records first, dangling records last, so that an interrupted
	// prune leaves every target it did not finish still counted.
	Remove []images.Image
	// EnsureDangling lists targets that lose their last name but must keep
	// their content: their dangling record is made sure of before any name
	// goes.
	EnsureDangling []ocispec.Descriptor
	// Targets lists, in report order, every target the prune touches:
	// named ones by their first name removed, then the others by digest.
	Targets []TargetPlan
	// Warnings are containers whose reference could not be resolved.
	Warnings []string
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

// reportKey orders the report as a reader looks for an image: by its first
// name, then the targets without one by digest.
func (tp TargetPlan) reportKey() string {
	if len(tp.Untag) > 0 {
		return "0" + tp.Untag[0]
	}
	return "1" + tp.Target.Digest.String()
}

// MakePlan decides, for every record in s, whether it stays or goes.
func MakePlan(s Snapshot, f Filters) Plan {
	u := resolveUsage(s.Records, s.Containers)
	byTarget := map[digest.Digest][]images.Image{}
	for _, r := range s.Records {
		byTarget[r.Target.Digest] = append(byTarget[r.Target.Digest], r)
	}
	p := Plan{Warnings: u.warnings}
	var dangling []images.Image
	for _, target := range slices.Sorted(maps.Keys(byTarget)) {
		d := decide(byTarget[target], u, f, s.Labels[target])
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
	slices.SortFunc(p.Remove, func(a, b images.Image) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortStableFunc(p.Targets, func(a, b TargetPlan) int { return cmp.Compare(a.reportKey(), b.reportKey()) })
	p.Remove = append(p.Remove, dangling...)
	return p
}

// decision is what a prune does with the records of one target.
type decision struct {
	plan           TargetPlan
	removeNames    []images.Image
	removeDangling *images.Image
	// ensureDangling: the dangling record must be made before names go.
	ensureDangling bool
}

// decide decides on the records of one target.
func decide(records []images.Image, u usage, f Filters, labels map[string]string) decision {
	var names []images.Image
	var dangling *images.Image
	for i, r := range records {
		if isDangling(r.Name) {
			dangling = &records[i]
		} else {
			names = append(names, r)
		}
	}
	slices.SortFunc(names, func(a, b images.Image) int { return cmp.Compare(a.Name, b.Name) })
	d := decision{plan: TargetPlan{Target: records[0].Target, Named: len(names) > 0}}
	if slices.ContainsFunc(records, isPinned) {
		return d
	}
	target := d.plan.Target.Digest
	used := u.targets[target]
	matches := f.matchLabels(labels)
	if !f.DanglingOnly && matches {
		for _, r := range names {
			if !u.names[r.Name] && f.matchCreated(r.CreatedAt) {
				d.removeNames = append(d.removeNames, r)
			}
		}
	}
	allNamesGo := len(d.removeNames) == len(names)
	if used && u.keepOne[target] && len(names) > 0 && allNamesGo {
		// Created by ID or digest: keep the alphabetically last name.
		d.removeNames = d.removeNames[:len(d.removeNames)-1]
		allNamesGo = false
	}
	for _, r := range d.removeNames {
		d.plan.Untag = append(d.plan.Untag, r.Name)
	}
	switch {
	case used || !allNamesGo:
		// A used target losing its last name keeps its content through its
		// dangling record, made sure of (another client may remove it) just
		// before the names go.
		d.ensureDangling = used && allNamesGo && len(names) > 0
	case len(names) > 0 || (dangling != nil && matches && f.matchCreated(createdAt(*dangling))):
		d.plan.Gone = true
		d.removeDangling = dangling
	}
	return d
}
