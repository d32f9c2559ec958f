package images

import (
	"context"

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

// WithExclusiveStore says the service's store is this process's alone (a
// store opened in-process): a prune lock found in it was left by a prune
// that died, and is taken over at once.
func WithExclusiveStore() Opt {
	return func(s *Service) { s.lockOpts = append(s.lockOpts, imgleases.Exclusive()) }
}

// lock makes this prune the only one of the namespace, in this process and
// across processes. The returned func releases it.
func (s *Service) lock(ctx context.Context) (func(), error) {
	if !s.pruning.TryLock() {
		return nil, ErrPruneRunning
	}
	l, err := imgleases.LockPrune(ctx, s.stores.Leases, s.lockOpts...)
	if err != nil {
		s.pruning.Unlock()
		return nil, err
	}
	return func() {
		if err := l.Release(context.WithoutCancel(ctx)); err != nil {
			log.G(ctx).WithError(err).Warn("release the prune lock")
		}
		s.pruning.Unlock()
	}, nil
}
