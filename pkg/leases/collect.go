// Package leases is the one home of imgprune's use of containerd leases: the
// prune lock, the holds that keep in-flight writes from a collection, the one
// collection a prune triggers, and the sweep of blobs left on disk. A prune
// never deletes a lease it did not create.
package leases

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
)

// Collector triggers a daemon's garbage collection through its leases.
type Collector struct {
	Leases leases.Manager
}

// Collect runs the daemon's garbage collector once and waits for it: it
// creates a throwaway lease and deletes it synchronously, which is how a
// client asks containerd for a collection.
func (c Collector) Collect(ctx context.Context) error {
	// It expires, so that a process dying here leaks nothing for long.
	l, err := c.Leases.Create(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour))
	if err != nil {
		return fmt.Errorf("create lease to trigger garbage collection: %w", err)
	}
	if err := c.Leases.Delete(ctx, l, leases.SynchronousDelete); err != nil {
		return fmt.Errorf("garbage collection: %w", err)
	}
	return nil
}
