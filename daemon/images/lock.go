package images

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// The prune lock is a lease with a fixed ID in the namespace: containerd's
// own store makes it a lock between processes (two CLIs, a CLI and serve).
// It does not expire while its holder lives, however long the prune: a
// holder on this host that died is seen to be gone, one elsewhere is taken
// over after pruneLockStale.
const (
	pruneLease     = "imgprune.prune"
	pruneHolder    = "org.imgprune.lock.holder"
	pruneLockStale = 6 * time.Hour
)

// lock makes this prune the only one of the namespace. The returned func
// releases it.
func (s *Service) lock(ctx context.Context) (func(), error) {
	if !s.pruning.TryLock() {
		return nil, ErrPruneRunning
	}
	me := newHolder()
	if err := s.takePruneLease(ctx, me); err != nil {
		s.pruning.Unlock()
		return nil, err
	}
	return func() {
		ctx := context.WithoutCancel(ctx)
		if err := s.dropPruneLease(ctx, me.String()); err != nil {
			log.G(ctx).WithError(err).Warn("release the prune lock")
		}
		s.pruning.Unlock()
	}, nil
}

func (s *Service) takePruneLease(ctx context.Context, me holder) error {
	for range 2 {
		_, err := s.stores.Leases.Create(ctx, leases.WithID(pruneLease), leases.WithLabel(pruneHolder, me.String()))
		if err == nil {
			return nil
		}
		if !errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("take the prune lock: %w", err)
		}
		held, err := s.pruneLease(ctx)
		if errdefs.IsNotFound(err) {
			continue // released meanwhile
		}
		if err != nil {
			return fmt.Errorf("take the prune lock: %w", err)
		}
		h := parseHolder(held.Labels[pruneHolder])
		if !h.gone(held.CreatedAt) {
			return fmt.Errorf("%w (by %s since %s)", ErrPruneRunning, h.describe(), held.CreatedAt.Format(time.RFC3339))
		}
		log.G(ctx).WithField("holder", held.Labels[pruneHolder]).Warn("taking over the lock of a prune that died")
		if err := s.dropPruneLease(ctx, held.Labels[pruneHolder]); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("take over the prune lock: %w", err)
		}
	}
	return ErrPruneRunning
}

func (s *Service) pruneLease(ctx context.Context) (leases.Lease, error) {
	held, err := s.stores.Leases.List(ctx, "id=="+pruneLease)
	if err != nil {
		return leases.Lease{}, err
	}
	if len(held) == 0 {
		return leases.Lease{}, errdefs.ErrNotFound
	}
	return held[0], nil
}

// dropPruneLease deletes the lock if holder still holds it, so that a
// release never deletes the lock of the prune that came next.
func (s *Service) dropPruneLease(ctx context.Context, holder string) error {
	held, err := s.pruneLease(ctx)
	if err != nil {
		return err
	}
	if held.Labels[pruneHolder] != holder {
		return errdefs.ErrNotFound
	}
	return s.stores.Leases.Delete(ctx, held)
}

// holder names a prune: its host, the host's boot, its process and a nonce.
type holder struct {
	host, boot, nonce string
	pid               int
}

func newHolder() holder {
	host, _ := os.Hostname()
	nonce := make([]byte, 8)
	rand.Read(nonce)
	return holder{host: host, boot: bootID(), pid: os.Getpid(), nonce: hex.EncodeToString(nonce)}
}

func (h holder) String() string {
	return fmt.Sprintf("%s.%s.%d.%s", h.host, h.boot, h.pid, h.nonce)
}

func parseHolder(s string) holder {
	parts := strings.Split(s, ".")
	if len(parts) < 4 {
		return holder{}
	}
	n := len(parts)
	pid, _ := strconv.Atoi(parts[n-2])
	return holder{host: strings.Join(parts[:n-3], "."), boot: parts[n-3], pid: pid, nonce: parts[n-1]}
}

func (h holder) describe() string {
	return fmt.Sprintf("process %d on %s", h.pid, h.host)
}

// gone reports whether the holder of a lock taken at since cannot be
// running any more.
func (h holder) gone(since time.Time) bool {
	host, _ := os.Hostname()
	if h.pid > 0 && h.host == host && h.boot == bootID() {
		err := syscall.Kill(h.pid, 0)
		return errors.Is(err, syscall.ESRCH)
	}
	return time.Since(since) > pruneLockStale
}

// bootID tells one boot of this host from another, so that a PID recorded
// before a reboot is not mistaken for a live process.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
}
