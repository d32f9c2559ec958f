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
	lockID      = "imgprune.prune"
	beatPrefix  = "imgprune.prune.beat."
	probePrefix = "imgprune.prune.probe."
	holderLabel = "org.imgprune.lock.holder"
	fileLabel   = "org.imgprune.lock.file"
	// DefaultTTL is how long a holder that stopped beating blocks others.
	DefaultTTL = 20 * time.Second
	// beatExpiry lets containerd drop a dead holder's heartbeats. It is far
	// longer than the ttl, so that no clock skew drops a live one.
	beatExpiry = time.Hour
)

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

	mu   sync.Mutex
	beat leases.Lease
	seq  int
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
	go l.renew(context.WithoutCancel(ctx))
	return l, nil
}

// take creates the lock lease, taking over one whose holder died.
func (l *Lock) take(ctx context.Context, o lockOptions) error {
	labels := map[string]string{holderLabel: l.holder.String()}
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
		log.G(ctx).WithField("holder", held.Labels[holderLabel]).Warn("taking over the lock of a prune that died")
		if err := dropLock(ctx, l.lm, held.Labels[holderLabel]); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("take over the prune lock: %w", err)
		}
	}
	return ErrPruneRunning
}

func conflict(h Holder, since time.Time) error {
	return fmt.Errorf("%w (by %s since %s)", ErrPruneRunning, h.Describe(), since.Format(time.RFC3339))
}

// stale reports whether the holder of held stopped beating more than the
// ttl ago, by the daemon's clock.
func (l *Lock) stale(ctx context.Context, held leases.Lease) (bool, error) {
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
	return now.Sub(last) > l.ttl, nil
}

// daemonNow is the daemon's clock: when it created a lease just now.
func daemonNow(ctx context.Context, lm leases.Manager, me Holder) (time.Time, error) {
	probe, err := lm.Create(ctx, leases.WithID(probePrefix+me.Nonce), leases.WithExpiration(beatExpiry))
	if err != nil {
		return time.Time{}, fmt.Errorf("read the daemon's clock: %w", err)
	}
	if err := lm.Delete(ctx, probe); err != nil {
		log.G(ctx).WithError(err).Debug("delete the clock probe; it expires by itself")
	}
	return probe.CreatedAt, nil
}

// renew beats every ttl/4 until the lock is released. A beat that fails is
// logged: the prune goes on, and another may take over after the ttl.
func (l *Lock) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 4)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if err := l.beatOnce(ctx); err != nil {
				log.G(ctx).WithError(err).Warn("renew the prune lock")
			}
		}
	}
}

func (l *Lock) beatOnce(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
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
		return l.lm.Delete(ctx, prev)
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
	l.mu.Lock()
	defer l.mu.Unlock()
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
	nonce := make([]byte, 8)
	rand.Read(nonce)
	return Holder{Host: host, Boot: bootID(), PID: os.Getpid(), Nonce: hex.EncodeToString(nonce)}
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
