package prune

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/image"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/reach"
)

// Report is Docker's prune report plus what failed and why.
type Report struct {
	image.PruneReport
	// Failures are the records and blobs the prune could not remove.
	Failures []Failure `json:"Failures,omitempty"`
	// Warnings are things the prune worked around, such as a container
	// whose image reference could not be resolved.
	Warnings []string `json:"Warnings,omitempty"`
	// FreeSpace is the disk before and after a prune to a free-space goal.
	FreeSpace *FreeSpace `json:"FreeSpace,omitempty"`
	// planned and pruned count images (names, and targets without one) the
	// prune set out to remove and did remove; left counts those it did not
	// try, and untried the records it did not try (dangling ones too).
	planned, pruned, left, untried int
}

// records says how many records n is.
func records(n int) string {
	if n == 1 {
		return "1 record"
	}
	return fmt.Sprintf("%d records", n)
}

// Failure is one thing a prune could not remove, or whose bytes it does
// not count (the accounting's, in daemon/reach).
type Failure = reach.Failure

// Err summarises the failures, or is nil when nothing failed.
func (r Report) Err() error {
	if len(r.Failures) == 0 {
		return nil
	}
	msg := fmt.Sprintf("pruned %d of %d images", r.pruned, r.planned+r.left)
	var more []string
	if failed := r.planned - r.pruned; failed > 0 {
		more = append(more, fmt.Sprintf("%d failed", failed))
	}
	if r.untried > 0 {
		more = append(more, "stopped early, "+records(r.untried)+" left for the next prune")
	}
	if len(more) == 0 {
		more = append(more, fmt.Sprintf("%d failed to be cleaned up", len(r.Failures)))
	}
	msg += "; " + strings.Join(more, "; ")
	return errors.New(msg)
}

// account reports what the prune did. Reclaimed bytes are those predicted to
// leave that did: blobs and snapshots gone after the collection, that no
// other namespace holds, and, where the disk can be seen, gone from it. What
// other clients freed meanwhile is not this prune's to count. An error here
// costs the byte count, never the record of what was removed.
func (s *pruner) account(ctx context.Context, p plan.Plan, predicted reach.Reclaim, disk *reach.DiskView, done applied) Report {
	rep := Report{Failures: done.failures, Warnings: append(slices.Clone(p.Warnings), done.warnings...)}
	after, err := reach.ListPresent(ctx, s.Stores, predicted.Snapshotters())
	if err != nil {
		rep.Failures = append(rep.Failures, Failure{Name: "accounting", Error: fmt.Sprintf("cannot tell what left the store, so no space is counted: %v", err)})
	}
	if rep.untried = len(done.untried); rep.untried > 0 {
		rep.Failures = append(rep.Failures, Failure{Name: "prune", Error: "stopped early: " + records(rep.untried) + " left for the next prune"})
	}
	goneTarget := func(digest.Digest) bool { return false }
	if after != nil {
		freed, failures := reach.Freed(ctx, s.Stores, predicted, after, disk)
		rep.Failures = append(rep.Failures, failures...)
		rep.SpaceReclaimed = uint64(freed.Bytes())
		goneTarget = func(d digest.Digest) bool { _, ok := after.Content[d]; return !ok }
	}
	for _, tp := range p.Targets {
		var untagged []string
		for _, name := range tp.Untag {
			if done.removed[name] {
				untagged = append(untagged, name)
			}
			rep.count(name, done)
		}
		rep.pruned += len(untagged)
		nameless := tp.Gone && !tp.Named && !done.rescued[tp.Target.Digest]
		danglingGone := done.removed[plan.DanglingName(tp.Target.Digest)]
		if nameless {
			rep.count(plan.DanglingName(tp.Target.Digest), done)
			if danglingGone {
				rep.pruned++
			}
		}
		rep.ImagesDeleted = append(rep.ImagesDeleted, reportEntries(tp, untagged, nameless && danglingGone, tp.Gone && goneTarget(tp.Target.Digest))...)
	}
	return rep
}

// count counts a record the plan removes as planned, or as left for the next
// prune; one another client changed meanwhile, or one given back to a CRI
// image that came into use, is neither.
func (r *Report) count(name string, done applied) {
	switch {
	case done.untried[name]:
		r.left++
	case !done.leftAlone[name] && !done.givenBack[name]:
		r.planned++
	}
}

// predictedReport is the report the prune would give.
func predictedReport(p plan.Plan, predicted reach.Reclaim) Report {
	rep := Report{Warnings: p.Warnings}
	rep.SpaceReclaimed = uint64(predicted.Bytes())
	for _, tp := range p.Targets {
		rep.ImagesDeleted = append(rep.ImagesDeleted, reportEntries(tp, tp.Untag, tp.Gone && !tp.Named, tp.Gone && predicted.Unreachable[tp.Target.Digest])...)
	}
	return rep
}

// reportEntries are the report lines of one target: its names untagged, its
// digest when its dangling record went and it had no name, then the target
// when its content went.
func reportEntries(tp plan.TargetPlan, untagged []string, danglingGone, contentGone bool) []image.DeleteResponse {
	var out []image.DeleteResponse
	for _, name := range untagged {
		out = append(out, image.DeleteResponse{Untagged: plan.FamiliarName(name)})
	}
	if danglingGone {
		out = append(out, image.DeleteResponse{Untagged: tp.Target.Digest.String()})
	}
	if contentGone {
		out = append(out, image.DeleteResponse{Deleted: tp.Target.Digest.String()})
	}
	return out
}
