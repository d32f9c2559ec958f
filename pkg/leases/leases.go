// Package leases holds imgprune's use of containerd leases: the one
// garbage collection a prune triggers.
package leases

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/leases"
)

// Collect runs containerd's garbage collector once and waits for it: it
// creates a throwaway lease and deletes it synchronously, which is how a
// client asks the metadata store for a collection.
func Collect(ctx context.Context, m leases.Manager) error {
	l, err := m.Create(ctx, leases.WithRandomID())
	if err != nil {
		return fmt.Errorf("create lease to trigger garbage collection: %w", err)
	}
	if err := m.Delete(ctx, l, leases.SynchronousDelete); err != nil {
		return fmt.Errorf("garbage collection: %w", err)
	}
	return nil
}
