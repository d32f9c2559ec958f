package images

import (
	"context"
	"time"

	"github.com/containerd/log"

	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// ErrPruneRunning is returned when a prune is asked for while one runs.
var ErrPruneRunning = imgleases.ErrPruneRunning

// WithPruneLockFile makes prunes also take a file lock on path, a file
// beside the daemon's socket that every prune on this host sees: one that
// died there never blocks the next.
func WithPruneLockFile(path string) Opt {
	return func(s *Service) { s.lockOpts = append(s.lockOpts, imgleases.WithLockFile(path)) }
}

// WithPruneLockTTL sets how long a prune that stopped renewing its lock
// blocks others (20 s by default).
func WithPruneLockTTL(d time.Duration) Opt {
	return func(s *Service) { s.lockOpts = append(s.lockOpts, imgleases.WithTTL(d)) }
}

// WithExclusiveStore says the service's store is this process's alone (a
// store opened in-process): a prune lock found in it was left by a prune
// that died, and is taken over at once; and since no other client can
// create a container or collect meanwhile, a prune neither holds what it
// lets go nor looks at the containers again.
func WithExclusiveStore() Opt {
	return func(s *Service) {
		s.exclusive = true
		s.lockOpts = append(s.lockOpts, imgleases.Exclusive())
	}
}

// lock makes this prune the only one of the namespace, in this process and
// across processes. held tells, before content goes, that it still is; the
// returned func releases it.
func (s *Service) lock(ctx context.Context) (held func() error, release func(), err error) {
	if !s.pruning.TryLock() {
		return nil, nil, ErrPruneRunning
	}
	l, err := imgleases.LockPrune(ctx, s.stores.Leases, s.lockOpts...)
	if err != nil {
		s.pruning.Unlock()
		return nil, nil, err
	}
	return l.Err, func() {
		rctx, cancel := s.finishing(ctx)
		defer cancel()
		if err := l.Release(rctx); err != nil {
			log.G(ctx).WithError(err).Warn("release the prune lock")
		}
		s.pruning.Unlock()
	}, nil
}
