package prune

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	units "github.com/docker/go-units"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/reach"
	"github.com/imgprune/imgprune/daemon/store"
)

// FreeGoal is how much free space a prune aims at on the filesystem that
// holds the content store: a share of its size, or a number of bytes.
type FreeGoal struct {
	// Percent of the filesystem's size, when Bytes is 0.
	Percent float64
	Bytes   int64
}

// ParseFreeGoal reads a goal as "20%" or as a size such as "50GB" (decimal
// units, as df -H prints them; "50GiB" for binary ones).
func ParseFreeGoal(s string) (FreeGoal, error) {
	if pct, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || v <= 0 || v > 100 {
			return FreeGoal{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid free space goal %q: a percentage is above 0 and at most 100", s))
		}
		return FreeGoal{Percent: v}, nil
	}
	var n int64
	var err error
	if strings.Contains(strings.ToLower(s), "i") {
		n, err = units.RAMInBytes(s)
	} else {
		n, err = units.FromHumanSize(s)
	}
	if err != nil || n <= 0 {
		return FreeGoal{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid free space goal %q: use a percentage (20%%) or a size (50GB)", s))
	}
	return FreeGoal{Bytes: n}, nil
}

// bytes is the goal on a filesystem of size bytes.
func (g FreeGoal) bytes(size int64) int64 {
	if g.Bytes > 0 {
		return g.Bytes
	}
	return int64(float64(size) * g.Percent / 100)
}

// freedOn is what of r leaves the content store's filesystem, d.
func freedOn(d *store.SameDisk, r reach.Reclaim) int64 {
	var n int64
	for _, size := range r.Content {
		n += size
	}
	for sn := range r.Snapshotters() {
		if d.Snapshotter(sn) {
			n += max(0, r.SnapshotBytes(sn)-r.Shortfall[sn])
		}
	}
	return n
}

// FreeSpace is what a prune to a free-space goal found and left.
type FreeSpace struct {
	// Goal is the free bytes aimed at; Before what was free when the prune
	// began, After what is free once it ended (what a dry run predicts).
	Goal   int64 `json:"Goal"`
	Before int64 `json:"Before"`
	After  int64 `json:"After"`
	// Size is the filesystem's.
	Size int64 `json:"Size"`
	// Reached tells whether After reaches Goal.
	Reached bool `json:"Reached"`
	// Measured is set when After was measured once the prune ended; it is
	// the prediction otherwise (a dry run, or a disk that could not be
	// read again).
	Measured bool `json:"Measured"`
}

// toGoal narrows the plan of f to the fewest targets, least recently used
// first, then oldest, whose removal frees what the disk lacks of the goal.
// Each count is the collector model's, made before anything is deleted: a
// layer shared with an image that stays frees nothing, and a snapshot on
// another filesystem frees nothing on this one.
func (s *pruner) toGoal(ctx context.Context, snap plan.Snapshot, f plan.Filters, g *reach.Graph, goal FreeGoal) (plan.Plan, reach.Reclaim, FreeSpace, error) {
	disk, err := s.Stores.ContentDisk(ctx, s.Root)
	if err != nil {
		return plan.Plan{}, reach.Reclaim{}, FreeSpace{}, err
	}
	same, err := store.NewSameDisk(s.Root)
	if err != nil {
		return plan.Plan{}, reach.Reclaim{}, FreeSpace{}, err
	}
	free := FreeSpace{Goal: goal.bytes(disk.Size), Before: disk.Free, Size: disk.Size}
	order := leastRecentlyUsed(snap.Records, plan.Make(snap, f).Targets)
	// The probes of the search ask each snapshot's usage once.
	predictor := reach.NewPredictor(s.Stores, g)
	try := func(k int) (plan.Plan, reach.Reclaim, error) {
		narrow := f
		narrow.Targets = map[digest.Digest]bool{}
		for _, t := range order[:k] {
			narrow.Targets[t] = true
		}
		p := plan.Make(snap, narrow)
		r, err := predictor.Predict(ctx, keptRoots(snap.Records, p))
		return p, r, err
	}
	// A try is a plan and what it frees.
	type tried struct {
		p plan.Plan
		r reach.Reclaim
	}
	_, t, err := fewestToFree(len(order), free.Goal-disk.Free, func(k int) (tried, int64, error) {
		p, r, err := try(k)
		return tried{p, r}, freedOn(same, r), err
	})
	if err != nil {
		return plan.Plan{}, reach.Reclaim{}, free, err
	}
	p, r := t.p, t.r
	free.After = disk.Free + freedOn(same, r)
	free.Reached = free.After >= free.Goal
	return p, r, free, nil
}

// fewestToFree finds the fewest of n candidates, taken in order, whose
// removal frees needed bytes, as try(k) counts them; all n when even they
// do not. It returns k with its try. What k frees grows with k, as every
// target of k-1 goes with k too. All n are tried first: a goal out of reach
// costs one try, not a search, and the search's last try is not made again.
func fewestToFree[T any](n int, needed int64, try func(k int) (T, int64, error)) (int, T, error) {
	var zero T
	if needed <= 0 {
		t, _, err := try(0)
		return 0, t, err
	}
	all, freed, err := try(n)
	if err != nil || freed < needed {
		return n, all, err
	}
	lo, hi, best := 0, n, all
	for lo < hi {
		mid := (lo + hi) / 2
		t, got, err := try(mid)
		if err != nil {
			return 0, zero, err
		}
		if got >= needed {
			hi, best = mid, t
		} else {
			lo = mid + 1
		}
	}
	return hi, best, nil
}

// shortOf warns when the goal is not reached: removing every image the
// filters select does not free enough, or some removals failed.
func (f *FreeSpace) shortOf() []string {
	if f == nil || f.Reached {
		return nil
	}
	return []string{fmt.Sprintf("the free space goal of %s is not reached: %s free of %s",
		units.HumanSize(float64(f.Goal)), units.HumanSize(float64(f.After)), units.HumanSize(float64(f.Size)))}
}

// leastRecentlyUsed orders the targets that go entirely under targets: those
// never seen in use first, then by last use, then by when they entered the
// store, as the kubelet's image collector orders them.
func leastRecentlyUsed(records []images.Image, targets []plan.TargetPlan) []digest.Digest {
	byTarget := plan.ByTarget(records)
	type candidate struct {
		target          digest.Digest
		lastUsed, entry time.Time
	}
	var cs []candidate
	for _, tp := range targets {
		if !tp.Gone {
			continue
		}
		recs := byTarget[tp.Target.Digest]
		entry := plan.CreatedAt(slices.MinFunc(recs, func(a, b images.Image) int { return plan.CreatedAt(a).Compare(plan.CreatedAt(b)) }))
		cs = append(cs, candidate{tp.Target.Digest, plan.LastUsed(recs), entry})
	}
	slices.SortFunc(cs, func(a, b candidate) int {
		return cmp.Or(a.lastUsed.Compare(b.lastUsed), a.entry.Compare(b.entry), cmp.Compare(a.target, b.target))
	})
	out := make([]digest.Digest, len(cs))
	for i, c := range cs {
		out[i] = c.target
	}
	return out
}
