// Package watch keeps a host's image store within its disk: it stamps the
// last use of images as containers are made, and when the disk holding the
// content store fills past a high mark, prunes the least recently used
// images until it is back under a low one.
package watch

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"

	"github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/daemon/store"
)

// Images is what a watch asks of the image service.
type Images interface {
	StampLastUse(ctx context.Context) (int, error)
	ContentDisk(ctx context.Context) (store.Disk, error)
}

// PruneFunc prunes what f selects until the disk has goal free.
type PruneFunc func(ctx context.Context, f plan.Filters, goal prune.FreeGoal) (prune.Report, error)

const (
	// stampDelay gathers the events of a burst (a pod's containers, a
	// pull's records) into one stamping.
	stampDelay = 100 * time.Millisecond
	// DefaultCallTimeout bounds a check's calls to containerd: a daemon that hangs
	// shows as failed checks, not as a watch that is stuck and healthy.
	DefaultCallTimeout = 2 * time.Minute
	// unhealthyAfter failed checks in a row, the watch is not doing its job.
	unhealthyAfter = 3
	// maxBackoff is the longest a watch waits, after prunes that could not
	// reach the goal, before it prunes again.
	maxBackoff = 30 * time.Minute
	// DefaultMaxPrune is how long a watch's prune may take: every phase of
	// one is bounded (images.DefaultPhaseTimeout), and a prune of a
	// hundred thousand images takes minutes.
	DefaultMaxPrune = time.Hour
)

// Watcher watches one namespace. Set its fields, then call Run once.
type Watcher struct {
	Images Images
	// Prune runs each prune the watch decides on.
	Prune PruneFunc
	// Events, when set, are containerd's: each container made, and each
	// image record made or changed, in Namespace stamps last uses at once.
	// Without them, last uses are stamped at each check only.
	Events    events.Subscriber
	Namespace string
	// Interval is how often the disk is checked.
	Interval time.Duration
	// High and Low are shares of the disk in use, in percent: above High a
	// prune brings the use down to Low.
	High, Low float64
	// Filters limit what a prune may remove.
	Filters plan.Filters
	// MaxPrune bounds a prune (DefaultMaxPrune when zero): past it the
	// prune is stopped, as SIGTERM stops it, and the watch is unhealthy
	// until it returns, since a daemon that stops answering must not keep
	// a watch alive forever.
	MaxPrune time.Duration
	// CallTimeout bounds each call of a check to containerd
	// (DefaultCallTimeout when zero).
	CallTimeout time.Duration

	// beat is when the loop last came round, and pruning when the prune in
	// flight started (0 when none runs), in Unix nanoseconds; failures
	// counts the checks in a row that could not read the disk.
	beat     atomic.Int64
	pruning  atomic.Int64
	failures atomic.Int32
	// backoff is how long to wait after a prune that fell short of the
	// goal, and pruneAfter when the next prune may run.
	backoff    time.Duration
	pruneAfter time.Time
}

// Validate tells whether the interval and marks are right, before anything
// is connected.
func (w *Watcher) Validate() error {
	switch {
	case w.Interval <= 0:
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid interval %v: it must be above 0", w.Interval))
	case w.High <= 0 || w.High > 100:
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid high mark %v%%: it is above 0 and at most 100", w.High))
	case w.Low <= 0 || w.Low >= w.High:
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid low mark %v%%: it is above 0 and below the high mark, %v%%", w.Low, w.High))
	case w.MaxPrune < 0:
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid maximum prune duration %v: it must be above 0", w.MaxPrune))
	}
	return nil
}

// Run watches until ctx ends, then returns nil once a prune in flight has
// stopped and reported. It fails only when the watch is not set up right.
func (w *Watcher) Run(ctx context.Context) error {
	if err := w.Validate(); err != nil {
		return err
	}
	if w.Images == nil || w.Prune == nil {
		return errdefs.ErrInvalidArgument.WithMessage("a watch needs the image service and a prune")
	}
	stamp := make(chan struct{}, 1)
	followed := make(chan struct{})
	if w.Events != nil {
		go func() {
			defer close(followed)
			w.follow(ctx, stamp)
		}()
	} else {
		close(followed)
	}
	ticker := time.NewTicker(w.Interval)
	defer ticker.Stop()
	// Alive from the start: the first check may take a while on a big
	// store.
	w.beat.Store(time.Now().UnixNano())
	w.check(ctx)
	var stampAt <-chan time.Time
	for {
		w.beat.Store(time.Now().UnixNano())
		select {
		case <-ctx.Done():
			<-followed
			return nil
		case <-stamp:
			if stampAt == nil {
				stampAt = time.After(stampDelay)
			}
		case <-stampAt:
			stampAt = nil
			w.stamp(ctx)
		case <-ticker.C:
			w.check(ctx)
		}
	}
}

// callTimeout is how long a check's call may take.
func (w *Watcher) callTimeout() time.Duration {
	if w.CallTimeout > 0 {
		return w.CallTimeout
	}
	return DefaultCallTimeout
}

// maxPrune is how long a prune may take.
func (w *Watcher) maxPrune() time.Duration {
	if w.MaxPrune > 0 {
		return w.MaxPrune
	}
	return DefaultMaxPrune
}

// Healthy tells whether the watch does its job: it is pruning for less than
// the longest a prune may take, or its loop came round within two intervals
// and its last checks could read the disk.
func (w *Watcher) Healthy() bool {
	if started := w.pruning.Load(); started != 0 {
		return time.Since(time.Unix(0, started)) < w.maxPrune()
	}
	last := time.Unix(0, w.beat.Load())
	return time.Since(last) < 2*w.Interval+w.callTimeout() && w.failures.Load() < unhealthyAfter
}

// check looks at the disk, and prunes when it is fuller than the high mark.
// Otherwise it stamps the last uses the events did not tell (a Docker
// Engine's containers, say).
func (w *Watcher) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, w.callTimeout())
	disk, err := w.Images.ContentDisk(cctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			w.failures.Add(1)
			log.G(ctx).WithError(err).Warn("cannot check the disk")
		}
		return
	}
	w.failures.Store(0)
	used := disk.Used()
	l := log.G(ctx).WithField("used", fmt.Sprintf("%.1f%%", used)).WithField("high", fmt.Sprintf("%v%%", w.High)).WithField("low", fmt.Sprintf("%v%%", w.Low))
	if used <= w.High {
		w.backoff, w.pruneAfter = 0, time.Time{}
		l.Debug("disk checked")
		w.stamp(ctx)
		return
	}
	if time.Now().Before(w.pruneAfter) {
		l.WithField("until", w.pruneAfter).Debug("disk above the high mark, but the last prune could not bring it under the low one: waiting")
		w.stamp(ctx)
		return
	}
	l.Info("disk above the high mark: pruning the least recently used images")
	w.pruning.Store(time.Now().UnixNano())
	pctx, cancel := context.WithTimeout(ctx, w.maxPrune())
	rep, err := w.Prune(pctx, w.Filters, prune.FreeGoal{Percent: 100 - w.Low})
	cancel()
	w.pruning.Store(0)
	switch {
	case errors.Is(err, images.ErrPruneRunning):
		l.WithError(err).Info("another prune runs; checking again at the next interval")
		return
	case err != nil:
		l.WithError(err).Error("prune failed")
		return
	}
	l = l.WithField("reclaimed", rep.SpaceReclaimed).WithField("removed", len(rep.ImagesDeleted))
	if f := rep.FreeSpace; f != nil {
		l = l.WithField("free", f.After)
		if !f.Reached {
			// What is left is not unused images (logs, volumes, images too
			// new for the filters): pruning again at once would only run
			// the collector again. Wait longer each time.
			w.backoff = min(max(2*w.backoff, w.Interval), maxBackoff)
			w.pruneAfter = time.Now().Add(w.backoff)
			l = l.WithField("next", w.pruneAfter)
		} else {
			w.backoff, w.pruneAfter = 0, time.Time{}
		}
	}
	if err := rep.Err(); err != nil {
		l.WithError(err).Warn("pruned in part")
		return
	}
	l.Info("pruned")
}

// stamp records the last use of every image a container uses now.
func (w *Watcher) stamp(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, w.callTimeout())
	defer cancel()
	n, err := w.Images.StampLastUse(ctx)
	if err != nil && ctx.Err() == nil {
		log.G(ctx).WithError(err).Warn("cannot record last uses")
	}
	if n > 0 {
		log.G(ctx).WithField("images", n).Debug("last uses recorded")
	}
}

// follow tells stamp of every event that may change what is used, until ctx
// ends. A stream that breaks (containerd restarting) is subscribed to
// again, with a growing pause.
func (w *Watcher) follow(ctx context.Context, stamp chan<- struct{}) {
	var filters []string
	for _, topic := range []string{"/containers/create", "/images/create", "/images/update"} {
		filters = append(filters, fmt.Sprintf(`namespace==%q,topic==%q`, w.Namespace, topic))
	}
	pause := time.Second
	for ctx.Err() == nil {
		began := time.Now()
		err := w.subscribe(ctx, filters, stamp)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			pause = time.Second
		}
		log.G(ctx).WithError(err).WithField("retry", pause).Warn("containerd's events stopped; subscribing again")
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
		// What was made while no stream was open is stamped now.
		select {
		case stamp <- struct{}{}:
		default:
		}
	}
}

// subscribe follows one subscription until it breaks.
func (w *Watcher) subscribe(ctx context.Context, filters []string, stamp chan<- struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, errs := w.Events.Subscribe(ctx, filters...)
	for {
		select {
		case e := <-ch:
			if ownStamp(e) {
				continue
			}
			select {
			case stamp <- struct{}{}:
			default: // one is pending already
			}
		case err := <-errs:
			if err == nil {
				err = errors.New("the stream ended")
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ownStamp tells an image update that is a stamp just written, by this
// watch or another imgprune: following it would only stamp again.
func ownStamp(e *events.Envelope) bool {
	if e == nil || e.Topic != "/images/update" || e.Event == nil {
		return false
	}
	v, err := typeurl.UnmarshalAny(e.Event)
	if err != nil {
		return false
	}
	u, ok := v.(*eventstypes.ImageUpdate)
	if !ok {
		return false
	}
	stamped, err := time.Parse(time.RFC3339Nano, u.Labels[plan.LastUsedLabel])
	return err == nil && time.Since(stamped) < ownStampAge
}

// ownStampAge is how fresh a stamp in an update is for the update to be
// taken for the stamp's own.
const ownStampAge = 10 * time.Second
