package prune

import (
	"context"
	"fmt"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgprune/imgprune/daemon/store"
)

// adoptAll adopts in one transaction where the store has them. When the
// commit fails, no target was adopted, and every one keeps its names.
func (a *applier) adoptAll(ctx context.Context) {
	if err := a.batch(ctx, a.adopt); err != nil {
		for _, r := range a.plan.Adopt {
			a.keepNames[r.Target.Digest] = true
		}
		a.fail(Failure{Name: "adoption", Error: fmt.Sprintf("no dangling record was created, so the targets that stay keep their names: %v", err)})
	}
}

// adopt creates the dangling records of targets that stay and lack one. A
// used target that could not be adopted keeps its names.
func (a *applier) adopt(ctx context.Context) {
	w := a.writer()
	defer w.wait()
	for _, r := range a.plan.Adopt {
		w.do(func() {
			if err := store.CreateDangling(ctx, a.s.Stores.Images, r); err != nil {
				a.mu.Lock()
				defer a.mu.Unlock()
				a.failures = append(a.failures, Failure{Name: r.Target.Digest.String(), Error: err.Error()})
				a.keepNames[r.Target.Digest] = true
			}
		})
	}
}

// ensure makes sure targets have their dangling record.
func (a *applier) ensure(ctx context.Context, targets ...ocispec.Descriptor) {
	for _, t := range targets {
		if a.keepNames[t.Digest] {
			continue
		}
		if err := store.EnsureDangling(ctx, a.s.Stores.Images, t, time.Time{}); err != nil {
			a.fail(Failure{Name: t.Digest.String(), Error: err.Error()})
			a.keepNames[t.Digest] = true
		}
	}
}
