package check

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"

	"github.com/imgprune/imgprune/daemon/images/plan"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// DeleteLeases lets a check with DeleteFound remove the leases named, which
// have no expiry of their own: only the user can say that such a lease's
// creator is gone. A lease a container owns is never removed; naming one,
// or a lease the check does not find, is an error that changes nothing.
func DeleteLeases(ids ...string) Opt {
	return func(o *options) { o.leases = append(o.leases, ids...) }
}

// DeleteUnexpiring lets a check with DeleteFound remove every lease it finds
// that has no expiry of its own, but those containers own.
func DeleteUnexpiring() Opt { return func(o *options) { o.unexpiring = true } }

// unexpiringLease is a stale lease with no expiry of its own, and why the
// check keeps it or may remove it.
type unexpiringLease struct {
	imgleases.StaleLease
	// owner is the container that owns it, or "".
	owner string
	// creator says who likely made it, for the listing.
	creator string
}

// sortStale splits stale into the leases a check removes and those it
// keeps: an expired lease goes; one with no expiry stays unless o names it
// or lets every one go, and always while a container owns it.
func sortStale(ctx context.Context, stale []imgleases.StaleLease, o options, own ownership) (going []imgleases.StaleLease, kept []unexpiringLease, err error) {
	named := map[string]bool{}
	for _, id := range o.leases {
		named[id] = true
	}
	for _, l := range stale {
		if l.Expired {
			going = append(going, l)
			continue
		}
		u := unexpiringLease{StaleLease: l, creator: creatorOf(l)}
		if u.owner, err = own.owner(ctx, l); err != nil {
			return nil, nil, err
		}
		switch {
		case named[l.ID] && u.owner != "":
			return nil, nil, errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("lease %s holds the files of %s: remove the container first", l.ID, u.owner))
		case u.owner == "" && (named[l.ID] || o.unexpiring):
			going = append(going, l)
		default:
			kept = append(kept, u)
		}
		delete(named, l.ID)
	}
	if len(named) > 0 {
		return nil, nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("lease %s is not one the check finds: no such lease, or it expires by itself, holds nothing, or is younger than --older-than",
			strings.Join(slices.Sorted(maps.Keys(named)), ", ")))
	}
	return going, kept, nil
}

// ownership tells the containers that own leases: a container any source
// knows by the lease's ID (a Docker Engine names a container's rootfs lease
// after it), a container record whose rootfs the lease holds, or any
// writable snapshot the lease holds, which is a container's root
// filesystem (or a build's) even where no source knows the container, as a
// stopped Docker Engine's are.
type ownership struct {
	ids map[string]bool
	// rootfs maps "snapshotter/key" of a container record's rootfs to the
	// container's ID.
	rootfs      map[string]string
	snapshotter func(name string) snapshots.Snapshotter
}

func newOwnership(ctrs []plan.Container, records []containers.Container, snapshotter func(string) snapshots.Snapshotter) ownership {
	own := ownership{ids: map[string]bool{}, rootfs: map[string]string{}, snapshotter: snapshotter}
	for _, c := range ctrs {
		own.ids[c.ID] = true
	}
	for _, r := range records {
		own.ids[r.ID] = true
		if r.SnapshotKey != "" {
			own.rootfs[r.Snapshotter+"/"+r.SnapshotKey] = r.ID
		}
	}
	return own
}

// owner names what owns l, or is "" when nothing does.
func (own ownership) owner(ctx context.Context, l imgleases.StaleLease) (string, error) {
	if own.ids[l.ID] {
		return "container " + l.ID, nil
	}
	for _, r := range l.Resources {
		name, ok := strings.CutPrefix(r.Type, "snapshots/")
		if !ok {
			continue
		}
		if id := own.rootfs[name+"/"+r.ID]; id != "" {
			return "container " + id, nil
		}
		sn := own.snapshotter(name)
		if sn == nil {
			continue
		}
		info, err := sn.Stat(ctx, r.ID)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("look at snapshot %s/%s of lease %s: %w", name, r.ID, l.ID, err)
		}
		if info.Kind == snapshots.KindActive {
			return fmt.Sprintf("a container (its writable snapshot %s/%s)", name, r.ID), nil
		}
	}
	return "", nil
}

// creatorOf says who likely made l, by the marks its known creators leave.
func creatorOf(l imgleases.StaleLease) string {
	for k := range l.Labels {
		if strings.HasPrefix(k, "buildkit") {
			return "BuildKit"
		}
	}
	for _, r := range l.Resources {
		if strings.HasPrefix(r.Type, "snapshots/") && (r.ID == l.ID || r.ID == l.ID+"-init") {
			return "a Docker Engine's container"
		}
	}
	if strings.HasPrefix(l.ID, "buildkit") {
		return "BuildKit"
	}
	return "an unknown writer"
}

// unexpiringFound lists the leases a check keeps: what each holds, who
// likely made it, and how it could go.
func unexpiringFound(kept []unexpiringLease, size map[string]int64) []Found {
	var out []Found
	for _, u := range kept {
		why := fmt.Sprintf("no expiry: its creator, likely %s, holds it in use; holds %s", u.creator, describeResources(u.Resources))
		if u.owner != "" {
			why += "; owned by " + u.owner + ", never deleted"
		} else {
			why += "; delete it with --lease " + u.ID
		}
		out = append(out, Found{Kind: KindLease, Name: u.ID, Size: size[u.ID], Why: why, Kept: true})
	}
	return out
}

// describeResources names what a lease holds: a few by name, then counts.
func describeResources(rs []leases.Resource) string {
	const shown = 3
	var names []string
	for i, r := range rs {
		if i == shown {
			names = append(names, fmt.Sprintf("and %d more", len(rs)-shown))
			break
		}
		switch sn, ok := strings.CutPrefix(r.Type, "snapshots/"); {
		case ok:
			names = append(names, "snapshot "+sn+"/"+r.ID)
		case r.Type == "content":
			names = append(names, "blob "+r.ID)
		default:
			names = append(names, r.Type+" "+r.ID)
		}
	}
	return strings.Join(names, ", ")
}
