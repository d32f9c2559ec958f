package watch

import (
	"context"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/daemon/store"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		w         *Watcher
		wantError string
	}{
		{name: "defaults of the command", w: &Watcher{Interval: time.Minute, High: 85, Low: 80}},
		{name: "no interval", w: &Watcher{High: 85, Low: 80}, wantError: "invalid interval 0s"},
		{name: "high above 100", w: &Watcher{Interval: time.Minute, High: 101, Low: 80}, wantError: "invalid high mark 101%"},
		{name: "low at high", w: &Watcher{Interval: time.Minute, High: 80, Low: 80}, wantError: "invalid low mark 80%: it is above 0 and below the high mark, 80%"},
		{name: "low zero", w: &Watcher{Interval: time.Minute, High: 80}, wantError: "invalid low mark 0%"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.w.Validate()
			if tc.wantError == "" {
				assert.NilError(t, err)
				return
			}
			assert.Check(t, is.ErrorContains(err, tc.wantError))
			assert.Check(t, errdefs.IsInvalidArgument(err))
		})
	}
}

func TestRunNeedsItsParts(t *testing.T) {
	w := &Watcher{Interval: time.Minute, High: 85, Low: 80}
	err := w.Run(context.Background())
	assert.Check(t, errdefs.IsInvalidArgument(err), "%v", err)
}

func TestHealthy(t *testing.T) {
	w := &Watcher{Interval: time.Second}
	assert.Check(t, !w.Healthy(), "never came round")
	w.beat.Store(time.Now().UnixNano())
	assert.Check(t, w.Healthy())
	w.beat.Store(time.Now().Add(-time.Hour).UnixNano())
	assert.Check(t, !w.Healthy(), "stuck for an hour")
	w.pruning.Store(time.Now().Add(-10 * time.Minute).UnixNano())
	assert.Check(t, w.Healthy(), "a long prune is no hang")
	w.pruning.Store(time.Now().Add(-DefaultMaxPrune - time.Second).UnixNano())
	assert.Check(t, !w.Healthy(), "a prune past the longest a prune may take is a hang")
	w.MaxPrune = 2 * DefaultMaxPrune
	assert.Check(t, w.Healthy(), "within a longer maximum")
}

// fakeImages is a store whose disk the test sets.
type fakeImages struct {
	mu      sync.Mutex
	disk    store.Disk
	diskErr error
	stamps  int
}

func (f *fakeImages) StampLastUse(context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stamps++
	return 0, nil
}

func (f *fakeImages) ContentDisk(context.Context) (store.Disk, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.disk, f.diskErr
}

func (f *fakeImages) set(disk store.Disk, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disk, f.diskErr = disk, err
}

func (f *fakeImages) stamped() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stamps
}

// TestCheck: above the high mark a check prunes to the low one; a prune
// that falls short is not run again at once; a disk that cannot be read
// three times in a row makes the watch unhealthy.
func TestCheck(t *testing.T) {
	fi := &fakeImages{disk: store.Disk{Size: 100, Free: 10}}
	var goals []prune.FreeGoal
	reached := false
	w := &Watcher{Images: fi, Interval: time.Hour, High: 85, Low: 80}
	w.Prune = func(_ context.Context, _ plan.Filters, goal prune.FreeGoal) (prune.Report, error) {
		assert.Check(t, w.Healthy(), "a prune in flight is no hang")
		goals = append(goals, goal)
		return prune.Report{FreeSpace: &prune.FreeSpace{Reached: reached}}, nil
	}
	w.beat.Store(time.Now().UnixNano())
	ctx := context.Background()

	w.check(ctx)
	assert.Check(t, is.DeepEqual(goals, []prune.FreeGoal{{Percent: 20}}))
	// Fell short: the next check, still above the mark, waits.
	w.check(ctx)
	assert.Check(t, is.Len(goals, 1))
	assert.Check(t, is.Equal(fi.stamped(), 1), "a check that does not prune stamps")
	// Under the mark, the wait ends; above it again, the prune runs.
	fi.set(store.Disk{Size: 100, Free: 50}, nil)
	w.check(ctx)
	fi.set(store.Disk{Size: 100, Free: 10}, nil)
	reached = true
	w.check(ctx)
	w.check(ctx)
	assert.Check(t, is.Len(goals, 3), "a prune that reached the goal needs no wait")

	// Another prune running is no prune that fell short: no wait.
	running := w.Prune
	w.Prune = func(context.Context, plan.Filters, prune.FreeGoal) (prune.Report, error) {
		goals = append(goals, prune.FreeGoal{})
		return prune.Report{}, images.ErrPruneRunning
	}
	w.check(ctx)
	w.check(ctx)
	assert.Check(t, is.Len(goals, 5), "a check after a refused prune prunes again")
	w.Prune = running

	fi.set(store.Disk{}, errdefs.ErrUnavailable)
	for range unhealthyAfter {
		assert.Check(t, w.Healthy())
		w.check(ctx)
	}
	assert.Check(t, !w.Healthy(), "the disk could not be read %d times", unhealthyAfter)
	fi.set(store.Disk{Size: 100, Free: 50}, nil)
	w.check(ctx)
	assert.Check(t, w.Healthy())
}

// channelEvents is an event stream the test writes.
type channelEvents chan *events.Envelope

func (c channelEvents) Subscribe(context.Context, ...string) (<-chan *events.Envelope, <-chan error) {
	return c, make(chan error)
}

// TestRunStampsOnEvents: a container made stamps last uses at once; an
// update that is a stamp just written does not.
func TestRunStampsOnEvents(t *testing.T) {
	fi := &fakeImages{disk: store.Disk{Size: 100, Free: 50}}
	ch := make(channelEvents)
	w := &Watcher{Images: fi, Events: ch, Interval: time.Hour, High: 85, Low: 80}
	w.Prune = func(context.Context, plan.Filters, prune.FreeGoal) (prune.Report, error) {
		t.Error("nothing to prune")
		return prune.Report{}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	waitFor := func(n int) bool {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if fi.stamped() >= n {
				return true
			}
		}
		return false
	}
	assert.Check(t, waitFor(1), "the first check stamps")

	ownUpdate, err := typeurl.MarshalAny(&eventstypes.ImageUpdate{Name: "moby-dangling@sha256:1", Labels: plan.LastUsedLabels(time.Now())})
	assert.NilError(t, err)
	ch <- &events.Envelope{Topic: "/images/update", Event: ownUpdate}
	time.Sleep(3 * stampDelay)
	assert.Check(t, is.Equal(fi.stamped(), 1), "the stamp's own update stamped again")
	ch <- &events.Envelope{Topic: "/containers/create"}
	assert.Check(t, waitFor(2), "a container made stamps")

	cancel()
	assert.Check(t, <-done)
}
