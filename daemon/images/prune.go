package images

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// PruneOpt configures one prune.
type PruneOpt func(*pruneOptions)

type pruneOptions struct{ dryRun bool }

// DryRun makes the prune report what it would do, and do nothing.
func DryRun() PruneOpt { return func(o *pruneOptions) { o.dryRun = true } }

// Prune removes the images f selects that no container uses. One failure does
// not stop the others: it is in the report, which is returned whole once
// anything was removed. A prune of the namespace already running, in this
// process or another, is a Conflict; a dry run runs beside it.
func (s *Service) Prune(ctx context.Context, f Filters, opts ...PruneOpt) (Report, error) {
	var o pruneOptions
	for _, opt := range opts {
		opt(&o)
	}
	ctx = s.withNamespace(ctx)
	if !o.dryRun {
		unlock, err := s.lock(ctx)
		if err != nil {
			return Report{}, err
		}
		defer unlock()
	}

	ctrRecords, err := s.containerRecords(ctx)
	if err != nil {
		return Report{}, err
	}
	snap, err := s.snapshot(ctx, f, ctrRecords, !o.dryRun)
	if err != nil {
		return Report{}, err
	}
	plan := MakePlan(snap, f)
	before, err := s.takeInventory(ctx, ctrRecords)
	if err != nil {
		return Report{}, err
	}
	predicted, err := s.predict(ctx, before, keptRoots(snap.Records, plan))
	if err != nil {
		return Report{}, err
	}
	if o.dryRun {
		return predictedReport(plan, predicted), nil
	}
	disk := s.viewDisk(ctx, predicted)
	done := s.apply(ctx, plan)
	// Interrupted or not, collect what was removed and report it.
	ctx = context.WithoutCancel(ctx)
	if err := s.collect(ctx); err != nil {
		done.failures = append(done.failures, Failure{Name: "garbage collection", Error: err.Error()})
	}
	return s.account(ctx, plan, predicted, disk, done), nil
}

// diskView is what a prune sees of the store's disk before it deletes:
// nothing (nil) for a daemon whose root is not on this host.
type diskView struct {
	root      string
	snapshots snapshotDirs
}

func (s *Service) viewDisk(ctx context.Context, predicted reclaim) *diskView {
	root := s.diskRoot(ctx)
	if root == "" {
		return nil
	}
	return &diskView{root: root, snapshots: listSnapshotDirs(root, predicted.snapshotters())}
}

// snapshot lists what a plan decides on, adopting records other tools made.
func (s *Service) snapshot(ctx context.Context, f Filters, ctrRecords []containers.Container, adopt bool) (Snapshot, error) {
	// Containers first: a prune that cannot know them changes nothing.
	ctrs, err := s.listContainers(ctx, ctrRecords)
	if err != nil {
		return Snapshot{}, err
	}
	records, err := s.stores.Images.List(ctx)
	if err != nil {
		return Snapshot{}, fmt.Errorf("list images: %w", err)
	}
	if records, err = s.adopt(ctx, records, adopt); err != nil {
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

// keptRoots are the records that stay under plan, plus the dangling records
// it creates.
func keptRoots(records []images.Image, plan Plan) []images.Image {
	gone := map[string]bool{}
	for _, r := range plan.Remove {
		gone[r.Name] = true
	}
	var kept []images.Image
	for _, r := range records {
		if !gone[r.Name] {
			kept = append(kept, r)
		}
	}
	for _, d := range plan.EnsureDangling {
		kept = append(kept, images.Image{Name: danglingName(d.Digest), Target: d})
	}
	return kept
}

// applied is what the deletions of one prune did.
type applied struct {
	removed map[string]bool
	// leftAlone are records changed by another client since the plan.
	leftAlone map[string]bool
	failures  []Failure
}

// apply executes plan: each removal on its own, named records before
// dangling ones. A used target losing its last name has its dangling record
// made sure of before its names go and once more after, since another
// client may remove it meanwhile.
func (s *Service) apply(ctx context.Context, plan Plan) applied {
	a := applier{
		s:            s,
		applied:      applied{removed: map[string]bool{}, leftAlone: map[string]bool{}},
		keepNames:    map[digest.Digest]bool{},
		keepDangling: map[digest.Digest]bool{},
	}
	ensure := map[digest.Digest]ocispec.Descriptor{}
	for _, t := range plan.EnsureDangling {
		ensure[t.Digest] = t
	}
	ensuredAll := false
	for i, r := range plan.Remove {
		if err := ctx.Err(); err != nil {
			a.failures = append(a.failures, Failure{Name: r.Name, Error: fmt.Sprintf("prune interrupted; %d records left for the next prune: %v", len(plan.Remove)-i, err)})
			break
		}
		if isDangling(r.Name) && !ensuredAll {
			a.ensure(ctx, plan.EnsureDangling...)
			ensuredAll = true
		} else if t, ok := ensure[r.Target.Digest]; ok && !isDangling(r.Name) {
			a.ensure(ctx, t)
		}
		if !a.kept(r) {
			a.delete(ctx, r)
		}
	}
	if !ensuredAll {
		a.ensure(ctx, plan.EnsureDangling...)
	}
	return a.applied
}

// applier carries out one plan.
type applier struct {
	s *Service
	applied
	// A target whose dangling record could not be made keeps its names; a
	// target one of whose names could not go keeps its dangling record.
	keepNames, keepDangling map[digest.Digest]bool
}

// kept reports whether r stays because something else about its target failed.
func (a *applier) kept(r images.Image) bool {
	if isDangling(r.Name) {
		return a.keepDangling[r.Target.Digest]
	}
	return a.keepNames[r.Target.Digest]
}

// ensure makes sure targets have their dangling record.
func (a *applier) ensure(ctx context.Context, targets ...ocispec.Descriptor) {
	for _, t := range targets {
		if a.keepNames[t.Digest] {
			continue
		}
		if _, err := a.s.ensureDangling(ctx, t, time.Time{}); err != nil {
			a.failures = append(a.failures, Failure{Name: t.Digest.String(), Error: err.Error()})
			a.keepNames[t.Digest] = true
		}
	}
}

// delete removes one record if it still points where the plan saw it.
func (a *applier) delete(ctx context.Context, r images.Image) {
	target := r.Target
	err := a.s.stores.Images.Delete(ctx, r.Name, images.DeleteTarget(&target))
	switch {
	case err == nil:
		a.removed[r.Name] = true
	case errdefs.IsNotFound(err):
		// Removed or re-pointed since the plan (DeleteTarget answers
		// NotFound for both): left alone.
		log.G(ctx).WithField("image", r.Name).Debug("image changed since the plan; left alone")
		a.leftAlone[r.Name] = true
	default:
		a.failures = append(a.failures, Failure{Name: r.Name, Error: err.Error()})
		a.keepDangling[r.Target.Digest] = true
	}
}

// collect runs containerd's garbage collector once for the whole batch.
func (s *Service) collect(ctx context.Context) error {
	return s.stores.Collector.Collect(ctx)
}
