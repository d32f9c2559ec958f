package images

import (
	"context"
	"fmt"
	"slices"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/moby/moby/api/types/image"
	"github.com/opencontainers/go-digest"
)

// ErrPruneRunning is returned when a prune is asked for while one runs.
var ErrPruneRunning = errdefs.ErrConflict.WithMessage("a prune operation is already running")

// Report is Docker's prune report plus what failed and why.
type Report struct {
	image.PruneReport
	// Failures are the records and blobs the prune could not remove.
	Failures []Failure `json:"Failures,omitempty"`
	// Warnings are things the prune worked around, such as a container
	// whose image reference could not be resolved.
	Warnings []string `json:"Warnings,omitempty"`
	// planned and pruned count images (names, and targets without one) the
	// prune set out to remove and did remove.
	planned, pruned int
}

// Failure is one thing a prune could not remove.
type Failure struct {
	Name  string `json:"Name"`
	Error string `json:"Error"`
}

// Err summarises the failures, or is nil when nothing failed.
func (r Report) Err() error {
	if len(r.Failures) == 0 {
		return nil
	}
	if failed := r.planned - r.pruned; failed > 0 {
		return fmt.Errorf("pruned %d of %d images; %d failed", r.pruned, r.planned, failed)
	}
	return fmt.Errorf("pruned %d of %d images; %d failed to be cleaned up", r.pruned, r.planned, len(r.Failures))
}

// PruneOpt configures one prune.
type PruneOpt func(*pruneOptions)

type pruneOptions struct{ dryRun bool }

// DryRun makes the prune report what it would do, and do nothing.
func DryRun() PruneOpt { return func(o *pruneOptions) { o.dryRun = true } }

// Prune removes the images f selects that no container uses. One failure does
// not stop the others: it is in the report, which is returned whole.
func (s *Service) Prune(ctx context.Context, f Filters, opts ...PruneOpt) (Report, error) {
	var o pruneOptions
	for _, opt := range opts {
		opt(&o)
	}
	if !s.pruning.TryLock() {
		return Report{}, ErrPruneRunning
	}
	defer s.pruning.Unlock()
	ctx = s.withNamespace(ctx)

	ctrRecords, err := s.containerRecords(ctx)
	if err != nil {
		return Report{}, err
	}
	snap, err := s.snapshot(ctx, f, ctrRecords, !o.dryRun)
	if err != nil {
		return Report{}, err
	}
	plan := MakePlan(snap, f)
	inv, err := s.takeInventory(ctx, ctrRecords)
	if err != nil {
		return Report{}, err
	}
	predicted, err := s.predict(ctx, inv, keptTargets(snap.Records, plan))
	if err != nil {
		return Report{}, err
	}
	if o.dryRun {
		return predictedReport(plan, predicted), nil
	}
	removed, failures := s.apply(ctx, plan)
	// Interrupted or not, collect what was removed and report it.
	ctx = context.WithoutCancel(ctx)
	if err := s.collect(ctx); err != nil {
		failures = append(failures, Failure{Name: "garbage collection", Error: err.Error()})
	}
	return s.account(ctx, plan, ctrRecords, inv, predicted, removed, failures)
}

// snapshot lists what a plan decides on, adopting records other tools made.
func (s *Service) snapshot(ctx context.Context, f Filters, ctrRecords []containers.Container, adopt bool) (Snapshot, error) {
	records, err := s.stores.Images.List(ctx)
	if err != nil {
		return Snapshot{}, fmt.Errorf("list images: %w", err)
	}
	if records, err = s.adopt(ctx, records, adopt); err != nil {
		return Snapshot{}, err
	}
	ctrs, err := s.listContainers(ctx, ctrRecords)
	if err != nil {
		return Snapshot{}, err
	}
	snap := Snapshot{Records: records, Containers: ctrs}
	if len(f.Labels)+len(f.NotLabels) > 0 {
		if snap.Labels, err = s.configLabels(ctx, records); err != nil {
			return Snapshot{}, err
		}
	}
	return snap, nil
}

// keptTargets are the targets that keep at least one record under plan.
func keptTargets(records []images.Image, plan Plan) []digest.Digest {
	gone := map[string]bool{}
	for _, r := range plan.Remove {
		gone[r.Name] = true
	}
	var kept []digest.Digest
	for _, r := range records {
		if !gone[r.Name] {
			kept = append(kept, r.Target.Digest)
		}
	}
	for _, d := range plan.EnsureDangling {
		kept = append(kept, d.Digest)
	}
	return kept
}

// apply executes plan: dangling records it needs first, then each removal
// on its own. It returns the names it removed and what failed.
func (s *Service) apply(ctx context.Context, plan Plan) (map[string]bool, []Failure) {
	var failures []Failure
	blocked := map[digest.Digest]bool{}
	for _, target := range plan.EnsureDangling {
		if _, err := s.ensureDangling(ctx, target); err != nil {
			failures = append(failures, Failure{Name: target.Digest.String(), Error: err.Error()})
			blocked[target.Digest] = true
		}
	}
	removed := map[string]bool{}
	for i, r := range plan.Remove {
		if err := ctx.Err(); err != nil {
			failures = append(failures, Failure{Name: r.Name, Error: fmt.Sprintf("prune interrupted; %d records left for the next prune: %v", len(plan.Remove)-i, err)})
			break
		}
		// A target whose name could not go keeps its dangling record, and a
		// target whose dangling record could not be made keeps its names.
		if blocked[r.Target.Digest] {
			continue
		}
		target := r.Target
		err := s.stores.Images.Delete(ctx, r.Name, images.DeleteTarget(&target))
		switch {
		case err == nil:
			removed[r.Name] = true
		case errdefs.IsNotFound(err):
			// Removed or re-pointed by another client since the plan: the
			// record is left alone, as DeleteTarget promises.
			log.G(ctx).WithField("image", r.Name).Debug("image changed since the plan; left alone")
		default:
			failures = append(failures, Failure{Name: r.Name, Error: err.Error()})
			blocked[r.Target.Digest] = true
		}
	}
	return removed, failures
}

// collect runs containerd's garbage collector once for the whole batch.
func (s *Service) collect(ctx context.Context) error {
	return s.stores.Collector.Collect(ctx)
}

// account reports what the prune did, counting as reclaimed only the bytes
// that really left: blobs and snapshots gone after the collection that no
// other namespace holds.
func (s *Service) account(ctx context.Context, plan Plan, ctrRecords []containers.Container, before *inventory, predicted reclaim, removed map[string]bool, failures []Failure) (Report, error) {
	after, err := s.takeInventory(ctx, ctrRecords)
	if err != nil {
		return Report{}, err
	}
	freed := reclaim{content: map[digest.Digest]int64{}, snapshots: map[snapKey]int64{}}
	for d, info := range before.content {
		if _, ok := after.content[d]; !ok {
			freed.content[d] = info.Size
		}
	}
	if err := s.dropShared(ctx, freed.content); err != nil {
		return Report{}, err
	}
	failures = append(failures, s.sweepDisk(ctx, freed.content)...)
	for k := range before.snapshots {
		if _, ok := after.snapshots[k]; !ok {
			// Usage is only known for snapshots measured before the collection.
			freed.snapshots[k] = predicted.snapshots[k]
		}
	}
	leftover, err := s.leftover(ctx, ctrRecords, after)
	if err != nil {
		return Report{}, err
	}
	for _, d := range leftover {
		failures = append(failures, Failure{Name: d.String(), Error: "garbage collection left this blob in place twice; run `imgprune check`"})
	}
	rep := Report{Failures: failures, Warnings: plan.Warnings}
	rep.SpaceReclaimed = uint64(freed.bytes())
	for _, tp := range plan.Targets {
		var untagged []string
		for _, name := range tp.Untag {
			if removed[name] {
				untagged = append(untagged, name)
			}
		}
		_, stillThere := after.content[tp.Target.Digest]
		gone := tp.Gone && !stillThere
		rep.ImagesDeleted = append(rep.ImagesDeleted, reportEntries(tp, untagged, gone)...)
		rep.planned += len(tp.Untag)
		rep.pruned += len(untagged)
		if !tp.Named && tp.Gone {
			rep.planned++
			if !stillThere {
				rep.pruned++
			}
		}
	}
	return rep, nil
}

// predictedReport is the report the prune would give.
func predictedReport(plan Plan, predicted reclaim) Report {
	rep := Report{Warnings: plan.Warnings}
	rep.SpaceReclaimed = uint64(predicted.bytes())
	for _, tp := range plan.Targets {
		rep.ImagesDeleted = append(rep.ImagesDeleted, reportEntries(tp, tp.Untag, tp.Gone)...)
	}
	return rep
}

// reportEntries are the report lines of one target: its names untagged,
// the digest for a nameless target, then the target if its content went.
func reportEntries(tp TargetPlan, untagged []string, gone bool) []image.DeleteResponse {
	var out []image.DeleteResponse
	for _, name := range untagged {
		out = append(out, image.DeleteResponse{Untagged: FamiliarName(name)})
	}
	if gone && !tp.Named {
		out = append(out, image.DeleteResponse{Untagged: tp.Target.Digest.String()})
	}
	if gone {
		out = append(out, image.DeleteResponse{Deleted: tp.Target.Digest.String()})
	}
	return out
}

// leftover returns blobs nothing reaches that are still there after the
// collection. They are swept once more; those still there are returned.
func (s *Service) leftover(ctx context.Context, ctrRecords []containers.Container, after *inventory) ([]digest.Digest, error) {
	find := func(inv *inventory) ([]digest.Digest, error) {
		records, err := s.stores.Images.List(ctx)
		if err != nil {
			return nil, fmt.Errorf("list images: %w", err)
		}
		var targets []digest.Digest
		for _, r := range records {
			targets = append(targets, r.Target.Digest)
		}
		kept, _ := inv.mark(targets)
		var left []digest.Digest
		for d := range inv.content {
			if !kept[d] {
				left = append(left, d)
			}
		}
		slices.Sort(left)
		return left, nil
	}
	left, err := find(after)
	if err != nil || len(left) == 0 {
		return nil, err
	}
	log.G(ctx).WithField("blobs", len(left)).Warn("garbage collection left unreferenced blobs; collecting again")
	if err := s.collect(ctx); err != nil {
		return nil, err
	}
	again, err := s.takeInventory(ctx, ctrRecords)
	if err != nil {
		return nil, err
	}
	return find(again)
}
