package leases

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
)

// labelExpire is the label by which containerd's collector ignores a lease
// once its time has passed.
const labelExpire = "containerd.io/gc.expire"

// StaleLease is a lease that an abandoned write may have left behind.
type StaleLease struct {
	leases.Lease
	// Expired is set when the lease's expiry, Expiry, has passed: the
	// collector ignores it already, and drops it at its next collection.
	// A lease that has not expired has no expiry of its own: its creator's
	// statement that it is still in use (a Docker Engine holds every
	// container's rootfs that way, BuildKit its cache), which age alone
	// never disproves.
	Expired bool
	Expiry  time.Time
	// Resources are what the lease holds.
	Resources []leases.Resource
}

// Stale lists the leases of the namespace in ctx that may be abandoned: the
// expired ones, which no writer needs, and the ones older than olderThan
// that still hold something and carry no expiry of their own, which only
// their creator (or the user) can call abandoned. A lease whose expiry is
// still to come is its creator's promise to be done by then, and the prune
// lock and its heartbeats clean up after themselves: neither is listed.
func Stale(ctx context.Context, lm leases.Manager, olderThan time.Duration, now time.Time) ([]StaleLease, error) {
	ls, err := lm.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	var stale []StaleLease
	for _, l := range ls {
		if isLockLease(l.ID) {
			continue
		}
		exp, hasExpiry := expiry(l)
		expired := hasExpiry && now.After(exp)
		if !expired && (hasExpiry || now.Sub(l.CreatedAt) <= olderThan) {
			continue
		}
		resources, err := lm.ListResources(ctx, l)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list resources of lease %s: %w", l.ID, err)
		}
		if !expired && len(resources) == 0 {
			continue
		}
		stale = append(stale, StaleLease{Lease: l, Expired: expired, Expiry: exp, Resources: resources})
	}
	slices.SortFunc(stale, func(a, b StaleLease) int { return strings.Compare(a.ID, b.ID) })
	return stale, nil
}

// expiry reads a lease's expiry, as the collector reads it: a value that is
// no time is no expiry.
func expiry(l leases.Lease) (time.Time, bool) {
	v, ok := l.Labels[labelExpire]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}

// isLockLease tells the prune lock's own leases: the lock, its heartbeats,
// probes and takeovers.
func isLockLease(id string) bool {
	return id == lockID || strings.HasPrefix(id, lockID+".")
}
