package prune

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/store"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// resumeDeadPrune finishes after a prune that died (killed, or its daemon
// killed) while it held what it let go: every held target left without a
// record gets its dangling record back, and the holds go. The plan then
// decides on those targets as on any dangling image, with a fresh look at
// the containers, where the dead prune could not take its last look. Only
// the prune lock's holder calls it, so no live prune holds anything.
func (s *pruner) resumeDeadPrune(ctx context.Context) error {
	holds, held, err := imgleases.LeftHolds(ctx, s.Stores.Leases, s.Stores.Content)
	if err != nil || len(holds) == 0 {
		return err
	}
	records, err := store.ListRecords(ctx, s.Stores.Images)
	if err != nil {
		return fmt.Errorf("list images: %w", err)
	}
	recorded := map[digest.Digest]bool{}
	for _, r := range records {
		recorded[r.Target.Digest] = true
	}
	given := 0
	for _, t := range held {
		if recorded[t.Digest] {
			continue
		}
		// Its size, and when it entered the store, are the content's.
		info, err := s.Stores.Content.Info(ctx, t.Digest)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err == nil {
			t.Size = info.Size
			err = store.EnsureDangling(ctx, s.Stores.Images, t, info.CreatedAt)
		}
		if err != nil {
			return fmt.Errorf("give back the dangling record of %s, which a prune that died held: %w", t.Digest, err)
		}
		given++
	}
	for _, l := range holds {
		if err := s.Stores.Leases.Delete(ctx, leases.Lease{ID: l.ID}); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("drop the hold %s of a prune that died: %w", l.ID, err)
		}
	}
	log.G(ctx).WithField("holds", len(holds)).WithField("given back", given).Info("finished after a prune that died")
	return nil
}
