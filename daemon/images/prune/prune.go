package prune

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/reach"
	"github.com/imgprune/imgprune/daemon/store"
	"github.com/imgprune/imgprune/pkg/progress"
)

// Opt configures one prune.
type Opt func(*options)

type options struct {
	dryRun   bool
	progress progress.Sink
	goal     *FreeGoal
}

// DryRun makes the prune report what it would do, and do nothing.
func DryRun() Opt { return func(o *options) { o.dryRun = true } }

// UntilFree makes the prune remove, of the images its filters select, only
// as many as the filesystem holding the content store needs to have goal
// free: least recently used first, then oldest. It removes images whole:
// a name alone frees nothing. The report says the space before and after.
func UntilFree(goal FreeGoal) Opt {
	return func(o *options) { o.goal = &goal }
}

// WithProgress sends the prune's phases, removals, failures and totals to
// sink as they happen.
func WithProgress(sink progress.Sink) Opt {
	return func(o *options) { o.progress = sink }
}

// Run removes the images f selects that no container uses, in ctx's
// namespace of st. One failure does not stop the others: it is in the
// report, which is returned whole once anything was removed. A prune of the
// namespace already running, in this process or another, is a Conflict
// (st.Lock's); a dry run runs beside it.
func Run(ctx context.Context, st Store, f plan.Filters, opts ...Opt) (Report, error) {
	s := &pruner{Store: st}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := f.CheckPrune(); err != nil {
		return Report{}, err
	}
	if err := st.complete(o.dryRun); err != nil {
		return Report{}, err
	}
	// The lock, the listings and the plan are one phase: a daemon that
	// stops answering fails it, and nothing has changed.
	lctx, cancel := s.phase(ctx)
	defer cancel()
	held := func() error { return nil }
	if !o.dryRun {
		var unlock func()
		var err error
		if held, unlock, err = s.Lock(lctx); err != nil {
			return Report{}, err
		}
		defer unlock()
		if err := s.resumeDeadPrune(lctx); err != nil {
			return Report{}, err
		}
	}

	ph := progress.Phases{Sink: o.progress}
	end := ph.Start(progress.Listing, 0)
	snap, before, err := s.look(lctx, f)
	if err != nil {
		return Report{}, err
	}
	end()
	end = ph.Start(progress.Planning, 0)
	p, predicted, free, err := s.plan(lctx, snap, f, before, o.goal)
	if err != nil {
		return Report{}, err
	}
	if o.dryRun {
		end()
		rep := predictedReport(p, predicted)
		rep.FreeSpace = free
		rep.Warnings = append(rep.Warnings, free.shortOf()...)
		ph.Send(totals(rep, true))
		return rep, nil
	}
	disk := reach.ViewDisk(lctx, s.Stores, s.Stores.DiskRoot(lctx, s.Root), predicted)
	end()
	stamped := s.stampPrune(lctx, snap.Records, &p)
	end = ph.Start(progress.Deleting, len(p.Remove))
	actx, cancelApply := s.phase(ctx)
	done := s.apply(actx, p, snap, before.Content, held, ph)
	cancelApply()
	end()
	if stamped != nil {
		done.warnings = append(done.warnings, stamped.Error())
	}
	// Interrupted or not, collect what was removed and report it; unless
	// another prune may run now, whose collection counts it.
	end = ph.Start(progress.Collecting, 0)
	done.failures = append(done.failures, s.collectRemoved(ctx, held)...)
	end()
	end = ph.Start(progress.Accounting, 0)
	ctx, cancelAccount := s.finishing(ctx)
	defer cancelAccount()
	rep := s.account(ctx, p, predicted, disk, done)
	if free != nil {
		rep.FreeSpace = free
		rep.Warnings = append(rep.Warnings, s.measureFree(ctx, free)...)
	}
	end()
	for _, f := range rep.Failures {
		ph.Send(progress.Event{Kind: progress.Failed, Name: f.Name, Error: f.Error})
	}
	ph.Send(totals(rep, false))
	return rep, nil
}

// look lists what the prune decides on: the content graph, walked beside
// the other listings as the longest of them, the records and the
// containers, what the collector reaches now, and the lineage from the
// containers' rootfs to their targets.
func (s *pruner) look(ctx context.Context, f plan.Filters) (plan.Snapshot, *reach.Graph, error) {
	var blobs *reach.Graph
	var g errgroup.Group
	g.Go(func() (err error) {
		blobs, err = reach.ListGraph(ctx, s.Stores.Content)
		return err
	})
	snap, ctrRecords, err := s.snapshot(ctx, f)
	if werr := g.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return plan.Snapshot{}, nil, err
	}
	snap.Arrived = arrivals(blobs, snap.Records)
	before, err := reach.Complete(ctx, s.Stores, blobs, ctrRecords, s.Snapshotter)
	if err != nil {
		return plan.Snapshot{}, nil, err
	}
	if snap.Lineage, err = imgcontainers.Lineage(ctx, s.Stores.Content, before.Content, plan.Targets(snap.Records), snap.Containers); err != nil {
		return plan.Snapshot{}, nil, err
	}
	return snap, before, nil
}

// collectRemoved runs the one collection, interrupted or not, unless the
// lock was lost: then another prune may run, whose collection counts it.
func (s *pruner) collectRemoved(ctx context.Context, held func() error) []Failure {
	ctx, cancel := s.finishing(ctx)
	defer cancel()
	if err := held(); err != nil {
		return []Failure{{Name: "garbage collection", Error: fmt.Sprintf("not run: %v", err)}}
	}
	if err := s.Stores.Collector.Collect(ctx); err != nil {
		return []Failure{{Name: "garbage collection", Error: err.Error()}}
	}
	return nil
}

// measureFree fills in the free space the prune left, and warns when it
// is short of the goal, or only predicted.
func (s *pruner) measureFree(ctx context.Context, free *FreeSpace) []string {
	var warnings []string
	if d, err := s.Stores.ContentDisk(ctx, s.Root); err == nil {
		free.After, free.Reached, free.Measured = d.Free, d.Free >= free.Goal, true
	} else {
		warnings = append(warnings, fmt.Sprintf("the free space after the prune is the prediction: %v", err))
	}
	return append(warnings, free.shortOf()...)
}

// plan decides what the prune removes, and what that frees: what f selects,
// or, with a free-space goal, the least recently used of it that reach the
// goal.
func (s *pruner) plan(ctx context.Context, snap plan.Snapshot, f plan.Filters, g *reach.Graph, goal *FreeGoal) (plan.Plan, reach.Reclaim, *FreeSpace, error) {
	if goal != nil {
		p, r, free, err := s.toGoal(ctx, snap, f, g, *goal)
		return p, r, &free, err
	}
	p := plan.Make(snap, f)
	r, err := reach.Predict(ctx, s.Stores, g, keptRoots(snap.Records, p))
	return p, r, nil, err
}

// stampPrune records the last use of the targets containers use: on the
// count records they have, and on the dangling records p adopts for those
// that lack one. A stamp that cannot be written is a warning: the prune
// does not depend on it.
func (s *pruner) stampPrune(ctx context.Context, records []images.Image, p *plan.Plan) error {
	now := time.Now()
	var others []digest.Digest
	for _, t := range p.Used {
		i, adopted := slices.BinarySearchFunc(p.Adopt, t, func(a images.Image, t digest.Digest) int { return cmp.Compare(a.Target.Digest, t) })
		if !adopted {
			others = append(others, t)
			continue
		}
		labels := maps.Clone(p.Adopt[i].Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, plan.LastUsedLabels(now))
		p.Adopt[i].Labels = labels
	}
	_, err := store.StampLastUse(ctx, s.Stores.Images, plan.ByTarget(records), others, now, s.DeletesInFlight)
	return err
}

// totals is the event that closes a prune.
func totals(rep Report, dryRun bool) progress.Event {
	e := progress.Event{Kind: progress.Totals, Failures: len(rep.Failures), ReclaimedBytes: rep.SpaceReclaimed, DryRun: dryRun}
	for _, d := range rep.ImagesDeleted {
		if d.Untagged != "" {
			e.Untagged++
		} else {
			e.Deleted++
		}
	}
	return e
}

// snapshot lists what a plan decides on. It writes nothing: records other
// tools made are adopted by the plan, and only for targets that stay.
func (s *pruner) snapshot(ctx context.Context, f plan.Filters) (plan.Snapshot, []containers.Container, error) {
	ctrs, ctrRecords, records, err := imgcontainers.ListUsed(ctx, s.Stores, s.Sources...)
	if err != nil {
		return plan.Snapshot{}, nil, err
	}
	snap := plan.Snapshot{Records: records, Containers: ctrs, DanglingRecords: s.DanglingRecords}
	if len(f.Labels)+len(f.NotLabels) > 0 {
		if snap.Labels, err = s.configLabels(ctx, records); err != nil {
			return plan.Snapshot{}, nil, err
		}
	}
	return snap, ctrRecords, nil
}

// arrivals tells when the content of each target of records arrived in the
// namespace.
func arrivals(g *reach.Graph, records []images.Image) map[digest.Digest]time.Time {
	out := map[digest.Digest]time.Time{}
	for _, t := range plan.Targets(records) {
		if info, ok := g.Content[t]; ok {
			out[t] = info.CreatedAt
		}
	}
	return out
}

// keptRoots are the records that stay under plan, plus the dangling records
// it creates.
func keptRoots(records []images.Image, p plan.Plan) []images.Image {
	gone := map[string]bool{}
	for _, r := range p.Remove {
		gone[r.Name] = true
	}
	var kept []images.Image
	for _, r := range records {
		if !gone[r.Name] {
			kept = append(kept, r)
		}
	}
	return append(kept, p.Adopt...)
}
