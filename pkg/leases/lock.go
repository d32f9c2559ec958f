package leases

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// ErrPruneRunning is returned when a prune is asked for while one runs.
var ErrPruneRunning = errdefs.ErrConflict.WithMessage("a prune operation is already running")

// The prune lock is a lease of fixed ID in the namespace, labelled with its
// holder, which containerd's store makes exclusive between processes
// wherever they run. Leases cannot be updated, so its holder proves it lives
// by heartbeats: a lease it creates anew every ttl/4. A contender judges the
// holder dead once its newest heartbeat is older than the ttl by the
// daemon's own clock, so hosts' clocks never matter. On a host, a file lock
// (flock) beside the daemon's socket, which the kernel releases when its
// holder dies in whatever PID namespace, tells at once that a lease holder
// that recorded the same file is dead.
const (
	lockID         = "imgprune.prune"
	beatPrefix     = "imgprune.prune.beat."
	probePrefix    = "imgprune.prune.probe."
	takeoverPrefix = "imgprune.prune.takeover."
	holderLabel    = "org.imgprune.lock.holder"
	fileLabel      = "org.imgprune.lock.file"
	ttlLabel       = "org.imgprune.lock.ttl"
	// DefaultTTL is how long a holder that stopped beating blocks others.
	DefaultTTL = 20 * time.Second
	// beatExpiry lets containerd drop a dead holder's heartbeats. It is far
	// longer than the ttl, so that no clock skew drops a live one.
	beatExpiry = time.Hour
	// legacyStale is how long a lock of a release that did not beat (no ttl
	// label) blocks others: it cannot tell a live holder from a dead one.
	legacyStale = 6 * time.Hour
)

// ErrLockLost says a holder can no longer prove it holds the prune lock:
// its heartbeats failed for half the ttl, or another took the lock over.
var ErrLockLost = errdefs.ErrAborted.WithMessage("the prune lock was lost")

// LockOpt configures LockPrune.
type LockOpt func(*lockOptions)

type lockOptions struct {
	file      string
	ttl       time.Duration
	exclusive bool
}

// WithLockFile also takes a file lock on path, a file beside the daemon's
// socket that every prune on this host (a DaemonSet pod's too) sees.
func WithLockFile(path string) LockOpt { return func(o *lockOptions) { o.file = path } }

// WithTTL sets how long a holder that stopped beating blocks others.
func WithTTL(d time.Duration) LockOpt { return func(o *lockOptions) { o.ttl = d } }

// Exclusive says the caller holds the store alone (an embedded store opened
// in-process): a lock found in it was left by a holder that died.
func Exclusive() LockOpt { return func(o *lockOptions) { o.exclusive = true } }

// Lock is a held prune lock. Release it when the prune ends.
type Lock struct {
	lm     leases.Manager
	holder Holder
	ttl    time.Duration
	file   *fileLock
	stop   chan struct{}
	done   chan struct{}

	mu     sync.Mutex
	beat   leases.Lease
	seq    int
	lastOK time.Time // the last time the lock was proven held
	lost   bool      // another holds the lock now
}

// LockPrune takes the prune lock of the namespace in ctx. It fails with
// ErrPruneRunning, saying who holds it, while a live holder does. A holder
// that died blocks others for at most the ttl, and not at all when both used
// the same lock file.
func LockPrune(ctx context.Context, lm leases.Manager, opts ...LockOpt) (*Lock, error) {
	o := lockOptions{ttl: DefaultTTL}
	for _, opt := range opts {
		opt(&o)
	}
	l := &Lock{lm: lm, holder: newHolder(), ttl: o.ttl, stop: make(chan struct{}), done: make(chan struct{})}
	if o.file != "" {
		f, err := lockFile(o.file, l.holder)
		switch {
		case errdefs.IsConflict(err):
			return nil, err
		case err != nil:
			// The lease alone still excludes every other prune.
			log.G(ctx).WithError(err).Warn("prune lock file; going on with the lease alone")
		default:
			l.file = f
		}
	}
	if err := l.take(ctx, o); err != nil {
		l.file.unlock()
		return nil, err
	}
	l.lastOK = time.Now()
	go l.renew(context.WithoutCancel(ctx))
	return l, nil
}

// Err is nil while the lock is held, and ErrLockLost once the holder cannot
// prove it is: a prune checks it before it lets content go.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost || time.Since(l.lastOK) > l.ttl/2 {
		return ErrLockLost
	}
	return nil
}

// take creates the lock lease, taking over one whose holder died.
func (l *Lock) take(ctx context.Context, o lockOptions) error {
	labels := map[string]string{holderLabel: l.holder.String(), ttlLabel: l.ttl.String()}
	if l.file != nil {
		labels[fileLabel] = l.file.id
	}
	for range 3 {
		_, err := l.lm.Create(ctx, leases.WithID(lockID), leases.WithLabels(labels))
		if err == nil {
			return nil
		}
		if !errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("take the prune lock: %w", err)
		}
		held, err := getLease(ctx, l.lm, lockID)
		if errdefs.IsNotFound(err) {
			continue // released meanwhile
		}
		if err != nil {
			return fmt.Errorf("take the prune lock: %w", err)
		}
		sameFile := l.file != nil && held.Labels[fileLabel] == l.file.id
		if !o.exclusive && !sameFile {
			stale, err := l.stale(ctx, held)
			if err != nil {
				return fmt.Errorf("take the prune lock: %w", err)
			}
			if !stale {
				return conflict(ParseHolder(held.Labels[holderLabel]), held.CreatedAt)
			}
		}
		if err := l.takeOver(ctx, held); err != nil {
			return err
		}
	}
	return ErrPruneRunning
}

// takeOver drops the lock of a holder that died. Only one contender may:
// the one whose takeover lease for that holder containerd creates; the
// others get the conflict. So no contender ever deletes the lock another
// has just taken.
func (l *Lock) takeOver(ctx context.Context, held leases.Lease) error {
	dead := held.Labels[holderLabel]
	guard, err := l.lm.Create(ctx, leases.WithID(takeoverPrefix+ParseHolder(dead).Nonce), leases.WithExpiration(beatExpiry))
	if errdefs.IsAlreadyExists(err) {
		return conflict(ParseHolder(dead), held.CreatedAt)
	}
	if err != nil {
		return fmt.Errorf("take over the prune lock: %w", err)
	}
	defer func() {
		dctx, cancel := releaseContext(ctx)
		defer cancel()
		if err := l.lm.Delete(dctx, guard); err != nil {
			log.G(ctx).WithError(err).Debug("delete the takeover lease; it expires by itself")
		}
	}()
	log.G(ctx).WithField("holder", dead).Warn("taking over the lock of a prune that died")
	if err := dropLock(ctx, l.lm, dead); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("take over the prune lock: %w", err)
	}
	return nil
}

func conflict(h Holder, since time.Time) error {
	return fmt.Errorf("%w (by %s since %s)", ErrPruneRunning, h.Describe(), since.Format(time.RFC3339))
}

// stale reports whether the holder of held stopped beating more than its
// ttl ago, by the daemon's clock. A lock of a release that did not beat is
// stale after legacyStale.
func (l *Lock) stale(ctx context.Context, held leases.Lease) (bool, error) {
	ttl, err := time.ParseDuration(held.Labels[ttlLabel])
	if err != nil {
		ttl = legacyStale
	}
	all, err := l.lm.List(ctx)
	if err != nil {
		return false, err
	}
	last := held.CreatedAt
	holder := held.Labels[holderLabel]
	for _, b := range all {
		if strings.HasPrefix(b.ID, beatPrefix) && b.Labels[holderLabel] == holder && b.CreatedAt.After(last) {
			last = b.CreatedAt
		}
	}
	now, err := daemonNow(ctx, l.lm, l.holder)
	if err != nil {
		return false, err
	}
	return now.Sub(last) > ttl, nil
}

// daemonNow is the daemon's clock: when it created a lease just now.
func daemonNow(ctx context.Context, lm leases.Manager, me Holder) (time.Time, error) {
	probe, err := lm.Create(ctx, leases.WithID(probePrefix+me.Nonce+"."+randomHex()), leases.WithExpiration(beatExpiry))
	if err != nil {
		return time.Time{}, fmt.Errorf("read the daemon's clock: %w", err)
	}
	if err := lm.Delete(ctx, probe); err != nil {
		log.G(ctx).WithError(err).Debug("delete the clock probe; it expires by itself")
	}
	return probe.CreatedAt, nil
}

// renew beats every ttl/4 until the lock is released. A beat that fails is
// logged; Err tells the prune when the lock can no longer be proven held.
func (l *Lock) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(max(l.ttl/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			bctx, cancel := context.WithTimeout(ctx, max(l.ttl/4, time.Millisecond))
			if err := l.beatOnce(bctx); err != nil {
				log.G(ctx).WithError(err).Warn("renew the prune lock")
			}
			cancel()
		}
	}
}

// beatOnce creates a heartbeat, drops the one before, and checks the lock
// still names this holder. Only renew calls it, so beat and seq are its own.
func (l *Lock) beatOnce(ctx context.Context) error {
	l.seq++
	beat, err := l.lm.Create(ctx,
		leases.WithID(beatPrefix+l.holder.Nonce+"."+strconv.Itoa(l.seq)),
		leases.WithLabels(map[string]string{holderLabel: l.holder.String()}),
		leases.WithExpiration(beatExpiry))
	if err != nil {
		return err
	}
	prev := l.beat
	l.beat = beat
	if prev.ID != "" {
		if err := l.lm.Delete(ctx, prev); err != nil {
			log.G(ctx).WithError(err).Debug("delete a heartbeat; it expires by itself")
		}
	}
	held, err := getLease(ctx, l.lm, lockID)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil && held.Labels[holderLabel] == l.holder.String() {
		l.lastOK = time.Now()
	} else {
		l.lost = true
	}
	return nil
}

// Release drops the lock if this holder still holds it, so that a release
// never deletes the lock of the prune that came next.
func (l *Lock) Release(ctx context.Context) error {
	close(l.stop)
	<-l.done
	defer l.file.unlock()
	err := dropLock(ctx, l.lm, l.holder.String())
	if errdefs.IsNotFound(err) {
		err = nil
	}
	if l.beat.ID != "" {
		if berr := l.lm.Delete(ctx, l.beat); berr != nil && !errdefs.IsNotFound(berr) && err == nil {
			err = berr
		}
	}
	return err
}

func getLease(ctx context.Context, lm leases.Manager, id string) (leases.Lease, error) {
	held, err := lm.List(ctx, "id=="+id)
	if err != nil {
		return leases.Lease{}, err
	}
	if len(held) == 0 {
		return leases.Lease{}, errdefs.ErrNotFound
	}
	return held[0], nil
}

// dropLock deletes the lock if holder holds it.
func dropLock(ctx context.Context, lm leases.Manager, holder string) error {
	held, err := getLease(ctx, lm, lockID)
	if err != nil {
		return err
	}
	if held.Labels[holderLabel] != holder {
		return errdefs.ErrNotFound
	}
	return lm.Delete(ctx, held)
}

// Holder names a prune: its host, the host's boot, its process (as its own
// PID namespace sees it) and a nonce.
type Holder struct {
	Host, Boot, Nonce string
	PID               int
}

func newHolder() Holder {
	host, _ := os.Hostname()
	return Holder{Host: host, Boot: bootID(), PID: os.Getpid(), Nonce: randomHex()}
}

func randomHex() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (h Holder) String() string {
	return fmt.Sprintf("%s.%s.%d.%s", h.Host, h.Boot, h.PID, h.Nonce)
}

// ParseHolder reads what Holder.String wrote; a host name may hold dots.
func ParseHolder(s string) Holder {
	parts := strings.Split(s, ".")
	n := len(parts)
	if n < 4 {
		return Holder{}
	}
	pid, _ := strconv.Atoi(parts[n-2])
	return Holder{Host: strings.Join(parts[:n-3], "."), Boot: parts[n-3], PID: pid, Nonce: parts[n-1]}
}

// Describe says who the holder is, for a conflict message.
func (h Holder) Describe() string {
	if h.Host == "" {
		return "an unknown process"
	}
	return fmt.Sprintf("process %d on %s", h.PID, h.Host)
}

// bootID tells one boot of this host from another.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
}
