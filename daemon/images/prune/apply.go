package prune

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgprune/imgprune/daemon/images/plan"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
	"github.com/imgprune/imgprune/pkg/progress"
)

// applied is what the writes of one prune did.
type applied struct {
	removed map[string]bool
	// leftAlone are records changed by another client since the plan.
	leftAlone map[string]bool
	// untried are records an interrupted prune left for the next one.
	untried map[string]bool
	// rescued are targets a container came to use while the prune ran:
	// they keep their dangling record and content.
	rescued map[digest.Digest]bool
	// givenBack are the records of CRI images that came into use while the
	// prune ran, made again as the plan saw them.
	givenBack map[string]bool
	failures  []Failure
	warnings  []string
}

// applier carries out one plan.
type applier struct {
	s     *pruner
	plan  plan.Plan
	snap  plan.Snapshot
	blobs map[digest.Digest]content.Info
	applied
	// A target whose dangling record could not be made keeps its names; a
	// target one of whose names could not go keeps its dangling record.
	keepNames, keepDangling map[digest.Digest]bool
	// ensured are the targets whose dangling record was made sure of just
	// before their names went.
	ensured map[digest.Digest]bool
	// hadDangling are the targets the plan saw a dangling record of.
	hadDangling map[digest.Digest]bool
	// planned are the records the plan removes, by target.
	planned map[digest.Digest][]images.Image
	// ph hears of each record removed.
	ph progress.Phases
	// mu guards what writes in flight write: removed, leftAlone, failures,
	// keepDangling, keepNames while adopting, ph and daemonGone.
	mu sync.Mutex
	// stop ends the deletions once the daemon is gone.
	stop context.CancelCauseFunc
	// daemonGone is set once a write found the daemon unavailable.
	daemonGone bool
	// keepHold is set when a target could not be given back what counts
	// it: the hold stays for the next prune.
	keepHold bool
}

// DefaultDeletesInFlight is how many deletions a prune has in flight
// through a daemon. Every other writer of the daemon (a pull, a tag, a container)
// queues behind them, as containerd's metadata store commits one write at
// a time. make bench, through containerd 2.4.2 at 10,000 names: with 4 in
// flight another writer's writes waited 9 to 10 ms at the 99th percentile,
// with 16 25 to 31 ms, and 16 were at most 4 % faster.
const DefaultDeletesInFlight = 4

// unreachable reports whether the daemon no longer answers: a write that
// failed as unavailable may have met a passing fault, not a dead daemon.
func (s *pruner) unreachable(ctx context.Context) bool {
	if s.Stores.Namespaces == nil {
		return false
	}
	_, err := s.Stores.Namespaces.List(ctx)
	return errdefs.IsUnavailable(err)
}

// gone reports whether the daemon went away during the deletions.
func (a *applier) gone() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.daemonGone
}

// fail records a failure.
func (a *applier) fail(f Failure) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures = append(a.failures, f)
}

// apply executes plan, each write on its own (over an embedded store, each
// kind in one transaction): the dangling records of targets that stay, then,
// while what goes is held, the names, the dangling records that go and a
// last look at the containers before the hold is dropped. A used target losing its last name has its dangling record made
// sure of before its names go and once more after, since another client may
// remove it meanwhile. blobs are the namespace's content as the plan saw it;
// held tells the prune still holds its lock before content goes.
func (s *pruner) apply(ctx context.Context, p plan.Plan, snap plan.Snapshot, blobs map[digest.Digest]content.Info, held func() error, ph progress.Phases) applied {
	a := newApplier(s, p, snap, blobs, ph)
	// What keeps content safe runs to its end even when the prune is
	// interrupted; deletions stop, also when the daemon goes away.
	safe, cancelSafe := s.finishing(ctx)
	defer cancelSafe()
	ctx, a.stop = context.WithCancelCause(ctx)
	defer a.stop(nil)
	ensure := map[digest.Digest]ocispec.Descriptor{}
	for _, t := range p.EnsureDangling {
		ensure[t.Digest] = t
	}
	a.adoptAll(safe)
	names, dangling := splitDangling(p.Remove)
	for _, r := range dangling {
		a.hadDangling[r.Target.Digest] = true
	}
	// A target that goes has no dangling record to keep it once its names
	// go, and the daemon collects by itself now and then: hold what goes
	// until the last look has seen no container come to use it.
	if !s.Exclusive {
		release, ok := a.hold(safe)
		if !ok {
			return a.applied
		}
		defer release()
	}
	a.deleteAll(ctx, names, func(ctx context.Context, r images.Image) {
		if t, ok := ensure[r.Target.Digest]; ok && !a.ensured[t.Digest] {
			// ctx carries the batch's transaction, where there is one.
			ectx, cancel := s.finishing(ctx)
			a.ensure(ectx, t)
			cancel()
			a.ensured[t.Digest] = true
		}
	})
	if a.gone() {
		// Nothing more can be written, nor looked at. What goes stays held
		// until the next prune gives it back its dangling record.
		a.leave(dangling)
		return a.applied
	}
	// What follows the deletions gets a phase of its own: the deletions
	// may have used all of theirs.
	late, cancelLate := s.finishing(ctx)
	defer cancelLate()
	a.ensure(late, p.EnsureDangling...)
	if len(dangling) > 0 {
		if err := held(); err != nil {
			a.fail(Failure{Name: "prune lock", Error: fmt.Sprintf("no dangling record is removed: %v", err)})
			a.leave(dangling)
		} else {
			a.deleteAll(ctx, dangling, nil)
		}
	}
	if s.Exclusive || len(a.releasing()) == 0 {
		return a.applied
	}
	// The last look gives back the dangling record of a target a container
	// came to use during the deletions. Without it, every target that lost
	// a record gets one back.
	if !a.lookAgain(late) {
		a.giveBack(late)
	}
	return a.applied
}

// newApplier starts the bookkeeping of applying p.
func newApplier(s *pruner, p plan.Plan, snap plan.Snapshot, blobs map[digest.Digest]content.Info, ph progress.Phases) *applier {
	a := &applier{
		s:            s,
		ph:           ph,
		plan:         p,
		snap:         snap,
		blobs:        blobs,
		applied:      applied{removed: map[string]bool{}, leftAlone: map[string]bool{}, untried: map[string]bool{}, rescued: map[digest.Digest]bool{}, givenBack: map[string]bool{}},
		keepNames:    map[digest.Digest]bool{},
		keepDangling: map[digest.Digest]bool{},
		ensured:      map[digest.Digest]bool{},
		hadDangling:  map[digest.Digest]bool{},
		planned:      map[digest.Digest][]images.Image{},
	}
	for _, r := range p.Remove {
		a.planned[r.Target.Digest] = append(a.planned[r.Target.Digest], r)
	}
	return a
}

// hold leases what goes until the last look has seen no container come to
// use it. The hold is never renewed: it outlasts the deletions and the last
// look, each bounded by a phase, with a phase to spare. Without a hold
// nothing is removed, and ok is false.
func (a *applier) hold(ctx context.Context) (release func(), ok bool) {
	s := a.s
	unhold, err := imgleases.HoldAll(ctx, s.Stores.Leases, s.Stores.Content, a.goneTargets(), imgleases.HoldFor(max(time.Hour, 3*s.PhaseTimeout)))
	if err != nil {
		a.fail(Failure{Name: "hold", Error: fmt.Sprintf("nothing is removed: %v", err)})
		a.leave(a.plan.Remove)
		return nil, false
	}
	return func() {
		// A daemon that went away may be back by now: the hold stays all
		// the same, for the next prune to give back what it held (no last
		// look was taken). So does a hold whose targets could not all be
		// given back what counts them: released, their content would go.
		if !a.gone() && !a.keepHold {
			unhold()
		}
	}, true
}

// batch runs f in one transaction where the store has them (an embedded
// store): one commit instead of one per write. f uses only the context it
// is given. When the commit fails, none of f's writes happened.
func (a *applier) batch(ctx context.Context, f func(ctx context.Context)) error {
	if a.s.Stores.Batch == nil {
		f(ctx)
		return nil
	}
	return a.s.Stores.Batch(ctx, func(ctx context.Context) error { f(ctx); return nil })
}

// deleteAll deletes records as each does, in one batch. When the batch
// fails to commit, none of its records went.
func (a *applier) deleteAll(ctx context.Context, records []images.Image, before func(context.Context, images.Image)) {
	was := maps.Clone(a.removed)
	err := a.batch(ctx, func(ctx context.Context) { a.each(ctx, records, before) })
	if err == nil {
		return
	}
	for name := range a.removed {
		if !was[name] {
			delete(a.removed, name)
			a.fail(Failure{Name: name, Error: fmt.Sprintf("not removed: the transaction failed to commit: %v", err)})
		}
	}
}

// releasing are the targets the plan lets go that lost a record: what the
// hold alone keeps now.
func (a *applier) releasing() []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, tp := range a.plan.Targets {
		if !tp.Gone {
			continue
		}
		lost := a.removed[plan.DanglingName(tp.Target.Digest)] || slices.ContainsFunc(tp.Untag, func(n string) bool { return a.removed[n] })
		if lost {
			out = append(out, tp.Target)
		}
	}
	return out
}

// goneTargets are the targets the plan lets go entirely.
func (a *applier) goneTargets() []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, tp := range a.plan.Targets {
		if tp.Gone {
			out = append(out, tp.Target)
		}
	}
	return out
}

// giveBack gives every target that lost a record, and is not rescued, its
// dangling record: the prune could not tell whether a container uses it
// now. They are left for the next prune.
func (a *applier) giveBack(ctx context.Context) {
	for _, t := range a.releasing() {
		if a.rescued[t.Digest] {
			continue
		}
		given := []string{plan.DanglingName(t.Digest)}
		if a.namesCount(t.Digest) {
			given = given[:0]
			for _, r := range a.removedOf(t.Digest) {
				given = append(given, r.Name)
			}
		}
		if !a.restore(ctx, t) {
			continue
		}
		for _, name := range given {
			delete(a.removed, name)
			a.untried[name] = true
		}
	}
}

// splitDangling splits records ordered names first into names and dangling
// records.
func splitDangling(records []images.Image) (names, dangling []images.Image) {
	for i, r := range records {
		if plan.IsDangling(r.Name) {
			return records[:i], records[i:]
		}
	}
	return records, nil
}

// each deletes records, as many at once as the writer allows, after before,
// until ctx is done; the records it does not reach are left for the next
// prune.
func (a *applier) each(ctx context.Context, records []images.Image, before func(context.Context, images.Image)) {
	w := a.writer()
	defer w.wait()
	for i, r := range records {
		if ctx.Err() != nil {
			a.leave(records[i:])
			return
		}
		if before != nil {
			before(ctx, r)
		}
		if !a.kept(r) {
			w.do(func() { a.delete(ctx, r) })
		}
	}
}

// leave records that the prune does not try.
func (a *applier) leave(records []images.Image) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range records {
		a.untried[r.Name] = true
	}
}

// kept reports whether r stays because something else about its target failed.
func (a *applier) kept(r images.Image) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if plan.IsDangling(r.Name) {
		return a.keepDangling[r.Target.Digest] || a.rescued[r.Target.Digest]
	}
	return a.keepNames[r.Target.Digest]
}

// delete removes one record if it still points where the plan saw it.
func (a *applier) delete(ctx context.Context, r images.Image) {
	if ctx.Err() != nil {
		// Interrupted while it waited for a slot: not tried.
		a.leave([]images.Image{r})
		return
	}
	target := r.Target
	err := a.s.Stores.Images.Delete(ctx, r.Name, images.DeleteTarget(&target))
	gone := errdefs.IsUnavailable(err) && ctx.Err() == nil && a.s.unreachable(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err != nil && ctx.Err() != nil:
		// Interrupted in flight: whether it went is the next prune's to see.
		a.untried[r.Name] = true
	case gone:
		// The daemon went away: whether this one went is the next prune's
		// to see, as is everything not tried yet.
		a.untried[r.Name] = true
		if !a.daemonGone {
			a.daemonGone = true
			a.failures = append(a.failures, Failure{Name: "containerd", Error: fmt.Sprintf("the daemon went away while the prune deleted: %v", err)})
			a.stop(err)
		}
	case err == nil:
		a.removed[r.Name] = true
		a.ph.Send(progress.Event{Kind: progress.Removed, Phase: progress.Deleting, Name: r.Name, Target: r.Target.Digest.String(), Done: len(a.removed), Total: len(a.plan.Remove)})
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
