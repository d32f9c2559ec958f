package images

import (
	"context"
	"fmt"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
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
			if err := a.s.createDangling(ctx, r); err != nil {
				a.mu.Lock()
				defer a.mu.Unlock()
				a.failures = append(a.failures, Failure{Name: r.Target.Digest.String(), Error: err.Error()})
				a.keepNames[r.Target.Digest] = true
			}
		})
	}
}

// writer carries out the applier's writes: deletesInFlight at once, or one
// at a time in the caller's goroutine: when asked to, or in a transaction,
// which one goroutine alone may use.
type writer struct{ g *errgroup.Group }

func (a *applier) writer() writer {
	if a.s.stores.Batch != nil || a.s.deletesInFlight <= 1 {
		return writer{}
	}
	g := new(errgroup.Group)
	g.SetLimit(a.s.deletesInFlight)
	return writer{g}
}

// do runs f, or has it run once a write in flight is done.
func (w writer) do(f func()) {
	if w.g == nil {
		f()
		return
	}
	w.g.Go(func() error { f(); return nil })
}

// wait waits for the writes in flight.
func (w writer) wait() {
	if w.g != nil {
		w.g.Wait()
	}
}

// ensure makes sure targets have their dangling record.
func (a *applier) ensure(ctx context.Context, targets ...ocispec.Descriptor) {
	for _, t := range targets {
		if a.keepNames[t.Digest] {
			continue
		}
		if err := a.s.ensureDangling(ctx, t, time.Time{}); err != nil {
			a.fail(Failure{Name: t.Digest.String(), Error: err.Error()})
			a.keepNames[t.Digest] = true
		}
	}
}
