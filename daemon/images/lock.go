package images

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// pruneLease is the lease a prune holds while it runs: containerd's own
// store makes it a lock between processes (two CLIs, a CLI and serve), and
// it expires so that a prune that died does not block the next one for long.
const (
	pruneLease    = "imgprune.prune"
	pruneLeaseTTL = 10 * time.Minute
)

// lock makes this prune the only one of the namespace. The returned func
// releases it.
func (s *Service) lock(ctx context.Context) (func(), error) {
	if !s.pruning.TryLock() {
		return nil, ErrPruneRunning
	}
	l, err := s.takePruneLease(ctx)
	if err != nil {
		s.pruning.Unlock()
		return nil, err
	}
	return func() {
		if err := s.stores.Leases.Delete(context.WithoutCancel(ctx), l); err != nil {
			log.G(ctx).WithError(err).Warn("release prune lock; it expires by itself")
		}
		s.pruning.Unlock()
	}, nil
}

func (s *Service) takePruneLease(ctx context.Context) (leases.Lease, error) {
	for range 2 {
		l, err := s.stores.Leases.Create(ctx, leases.WithID(pruneLease), leases.WithExpiration(pruneLeaseTTL))
		if err == nil {
			return l, nil
		}
		if !errdefs.IsAlreadyExists(err) {
			return leases.Lease{}, fmt.Errorf("take the prune lock: %w", err)
		}
		held, err := s.stores.Leases.List(ctx, "id=="+pruneLease)
		if err != nil {
			return leases.Lease{}, fmt.Errorf("take the prune lock: %w", err)
		}
		if len(held) == 1 {
			exp, err := time.Parse(time.RFC3339, held[0].Labels[gcExpire])
			if err != nil || time.Now().Before(exp) {
				return leases.Lease{}, fmt.Errorf("%w (held since %s)", ErrPruneRunning, held[0].CreatedAt.Format(time.RFC3339))
			}
			// Left by a prune that died: expired, so it is taken over.
			if err := s.stores.Leases.Delete(ctx, held[0]); err != nil && !errdefs.IsNotFound(err) {
				return leases.Lease{}, fmt.Errorf("take over an expired prune lock: %w", err)
			}
		}
	}
	return leases.Lease{}, ErrPruneRunning
}
