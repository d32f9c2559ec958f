// Package check is the hard prune: it finds what holds or wastes space
// that no image accounts for (stale leases, abandoned ingests, blobs no
// metadata knows, what nothing reaches, folders failed snapshot removals
// left) and, when asked, removes it through containerd and counts what left
// the disk.
package check

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/reach"
	"github.com/imgprune/imgprune/daemon/store"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// DefaultOlderThan is how old an ingest, or a lease with no expiry, must be
// before a check calls it abandoned.
const DefaultOlderThan = 24 * time.Hour

// The kinds of what a check finds.
const (
	KindLease    = "lease"
	KindIngest   = "ingest"
	KindBlob     = "blob"
	KindSnapshot = "snapshot"
	KindDir      = "directory"
)

// Opt configures a check.
type Opt func(*options)

type options struct {
	delete    bool
	olderThan time.Duration
	// leases are the leases with no expiry the user lets go.
	leases []string
	// unexpiring lets every lease with no expiry go, but containers'.
	unexpiring bool
}

// DeleteFound makes the check remove what it finds, through containerd.
func DeleteFound() Opt { return func(o *options) { o.delete = true } }

// OlderThan sets how old an ingest, or a lease with no expiry, must be to be
// called abandoned.
func OlderThan(d time.Duration) Opt { return func(o *options) { o.olderThan = d } }

// Report is what holds or wastes space that no image accounts for.
type Report struct {
	// Found lists it: stale leases, abandoned ingests, blobs on disk that
	// no namespace's metadata knows, snapshots and blobs of the namespace
	// that nothing reaches, then directories snapshot removals left on
	// disk, each kind in order.
	Found []Found `json:"Found"`
	// DiskChecked is false when the daemon's disk is not this host's to
	// look at (no --root, or another daemon's): blobs that no metadata
	// knows cannot be seen then.
	DiskChecked bool `json:"DiskChecked"`
	// Deleted is set when the check removed what it found.
	Deleted bool `json:"Deleted"`
	// Space is the bytes what was found holds; once deleted, the bytes that
	// really left the disk.
	Space int64 `json:"Space"`
	// Failures are what could not be looked at, or is still there after
	// its removal.
	Failures []reach.Failure `json:"Failures,omitempty"`
}

// Found is one thing a check found.
type Found struct {
	Kind string `json:"Kind"`
	// Name is the lease's ID, the ingest's ref, the blob's digest, the
	// snapshot's snapshotter and key ("native/key"), or the directory's
	// path below the daemon's root.
	Name string `json:"Name"`
	// Size is the bytes it holds on disk: for a lease, what leaves the
	// disk with it (shared with another stale lease, counted once, with the
	// first).
	Size int64 `json:"Size"`
	// Why says what makes it stale.
	Why string `json:"Why,omitempty"`
	// Gone is set once it was removed.
	Gone bool `json:"Gone,omitempty"`
	// Kept is set for what the check lists but does not remove: a lease
	// with no expiry, which its creator holds in use (Why says how it may
	// go). Its size is not in the report's Space.
	Kept bool `json:"Kept,omitempty"`
}

// Err summarises the failures, or is nil when nothing failed.
func (r Report) Err() error {
	if len(r.Failures) == 0 {
		return nil
	}
	return fmt.Errorf("%d of the check's items failed", len(r.Failures))
}

// Store is the store a check looks at, as the image service sees it.
type Store struct {
	Stores store.Stores
	// Root is the daemon's root directory as given; it is looked at only
	// once proven the daemon's own on this host (store.Stores.CheckRoot).
	Root string
	// Exclusive is set when no other client can write the store: a folder
	// a snapshot removal left is then this process's to remove.
	Exclusive bool
	// Snapshotter is the one images are unpacked into.
	Snapshotter string
	// Containers lists the namespace's container records once, and what
	// every source says of the images they use.
	Containers func(ctx context.Context) ([]plan.Container, []containers.Container, error)
	// PhaseTimeout bounds the check, and then its removal, which runs to
	// its end when the check's context is cancelled; it must be above 0.
	PhaseTimeout time.Duration
}

// Run finds what holds or wastes space that no image accounts for, in
// ctx's namespace: leases no live writer needs (expired, or old and
// holding something), ingests no writer finishes, and, when the daemon's
// root is this host's, blobs on disk that no namespace's metadata knows (a
// failed unlink, a crash mid-write). With DeleteFound it removes them
// through containerd itself: the leases and ingests through their APIs, the
// blobs by one collection that sweeps the content store, never a file
// unlinked behind the daemon's back. It looks at every namespace for blobs.
func Run(ctx context.Context, st Store, opts ...Opt) (Report, error) {
	o := options{olderThan: DefaultOlderThan}
	for _, opt := range opts {
		opt(&o)
	}
	if o.olderThan < 0 {
		return Report{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("older than %v: a negative age", o.olderThan))
	}
	switch {
	case st.PhaseTimeout <= 0:
		return Report{}, errdefs.ErrInvalidArgument.WithMessage("check: no phase timeout set")
	case st.Containers == nil:
		// It could not tell the leases containers hold.
		return Report{}, errdefs.ErrInvalidArgument.WithMessage("check: no listing of containers set")
	}
	ctx, cancel := context.WithTimeout(ctx, st.PhaseTimeout)
	defer cancel()
	root := st.Stores.DiskRoot(ctx, st.Root)
	now := time.Now()
	rep := Report{Found: []Found{}}
	// The disk first: a blob committed after this look is in the metadata
	// read next.
	var blobs map[digest.Digest]int64
	if rep.DiskChecked = root != ""; rep.DiskChecked {
		var err error
		if blobs, err = store.BlobsOnDisk(root); err != nil {
			return Report{}, err
		}
	}
	stale, err := imgleases.Stale(ctx, st.Stores.Leases, o.olderThan, now)
	if err != nil {
		return Report{}, err
	}
	ctrs, ctrRecords, err := st.Containers(ctx)
	if err != nil {
		return Report{}, err
	}
	going, kept, err := sortStale(ctx, stale, o, newOwnership(ctrs, ctrRecords, st.Stores.Snapshotter))
	if err != nil {
		return Report{}, err
	}
	model, err := st.modelCollection(ctx, ctrRecords, going)
	if err != nil {
		return Report{}, err
	}
	leaseItems, err := st.staleLeasesFound(ctx, ctrRecords, going, kept, model.hold)
	if err != nil {
		return Report{}, err
	}
	rep.Found = append(rep.Found, leaseItems...)
	ingests, err := st.abandonedIngests(ctx, o.olderThan, now)
	if err != nil {
		return Report{}, err
	}
	rep.Found = append(rep.Found, ingests...)
	orphans, err := st.unknownBlobs(ctx, blobs)
	if err != nil {
		return Report{}, err
	}
	rep.Found = append(rep.Found, orphans...)
	rep.Found = append(rep.Found, unreachedFound(model.unreached)...)
	if root != "" {
		dirs, err := leftDirs(ctx, root)
		if err != nil {
			return Report{}, err
		}
		rep.Found = append(rep.Found, dirs...)
	}
	for _, f := range rep.Found {
		if !f.Kept {
			rep.Space += f.Size
		}
	}
	if !o.delete || len(rep.Found) == len(kept) {
		return rep, nil
	}
	return st.deleteFound(ctx, rep, root, model.predicted()), nil
}

// staleLeasesFound lists the stale leases with what they hold: a lease
// the check removes with what it alone holds, a kept one with what it holds
// beyond what the check removes.
func (st Store) staleLeasesFound(ctx context.Context, ctrRecords []containers.Container, going []imgleases.StaleLease, kept []unexpiringLease, hold leaseHold) ([]Found, error) {
	found := leasesFound(going, hold)
	if len(kept) == 0 {
		return found, nil
	}
	all := slices.Clone(going)
	for _, u := range kept {
		all = append(all, u.StaleLease)
	}
	more, err := st.modelCollection(ctx, ctrRecords, all)
	if err != nil {
		return nil, err
	}
	found = append(found, unexpiringFound(kept, more.hold.size)...)
	slices.SortStableFunc(found, func(a, b Found) int { return cmp.Compare(a.Name, b.Name) })
	return found, nil
}

// collection is the collector's model at the check: what a collection
// frees now, and what the stale leases hold alone.
type collection struct {
	// unreached is what nothing reaches now: records the next collection
	// removes, with everything the stale leases hold still kept.
	unreached reach.Reclaim
	hold      leaseHold
}

// predicted is all a collection frees once the stale leases are gone.
func (c collection) predicted() reach.Reclaim {
	r := reach.NewReclaim()
	for _, part := range []reach.Reclaim{c.unreached, c.hold.reclaim} {
		maps.Copy(r.Content, part.Content)
		maps.Copy(r.Snapshots, part.Snapshots)
	}
	return r
}

// leaseHold is what stale leases hold alone: what leaves the store once
// they go, and to which lease each part is counted.
type leaseHold struct {
	reclaim reach.Reclaim
	size    map[string]int64
}

// modelCollection models the collector with and without the stale leases:
// what the first frees nothing reaches now; what the second frees and the
// first does not, the stale leases hold alone.
func (st Store) modelCollection(ctx context.Context, ctrRecords []containers.Container, stale []imgleases.StaleLease) (collection, error) {
	c := collection{hold: leaseHold{reclaim: reach.NewReclaim(), size: map[string]int64{}}}
	records, err := store.ListRecords(ctx, st.Stores.Images)
	if err != nil {
		return c, fmt.Errorf("list images: %w", err)
	}
	predict := func(stores store.Stores) (reach.Reclaim, error) {
		g, err := reach.Take(ctx, stores, ctrRecords, st.Snapshotter)
		if err != nil {
			return reach.Reclaim{}, err
		}
		return reach.Predict(ctx, stores, g, records)
	}
	if c.unreached, err = predict(st.Stores); err != nil {
		return c, err
	}
	if len(stale) == 0 {
		return c, nil
	}
	hidden := map[string]bool{}
	for _, l := range stale {
		hidden[l.ID] = true
	}
	stores := st.Stores
	stores.Leases = hidingLeases{Manager: stores.Leases, hidden: hidden}
	without, err := predict(stores)
	if err != nil {
		return c, err
	}
	hold := c.hold
	for d, size := range without.Content {
		if _, ok := c.unreached.Content[d]; !ok {
			hold.reclaim.Content[d] = size
		}
	}
	for k, size := range without.Snapshots {
		if _, ok := c.unreached.Snapshots[k]; !ok {
			hold.reclaim.Snapshots[k] = size
		}
	}
	// Each part is counted to the first lease that lists it; what they
	// reach only through references, to the first lease (leasesFound).
	counted := map[string]bool{}
	for _, l := range stale {
		for _, r := range l.Resources {
			hold.size[l.ID] += hold.count(r, counted)
		}
	}
	return c, nil
}

// unreachedFound lists what nothing reaches now: snapshots, then blobs the
// namespace's metadata knows, each in order. The daemon's next collection
// removes them anyway; the check names them so that their space is seen.
func unreachedFound(r reach.Reclaim) []Found {
	var snaps, blobs []Found
	for k, size := range r.Snapshots {
		snaps = append(snaps, Found{Kind: KindSnapshot, Name: k.Snapshotter + "/" + k.Key, Size: size, Why: "reached by no container, image or lease"})
	}
	for d, size := range r.Content {
		blobs = append(blobs, Found{Kind: KindBlob, Name: d.String(), Size: size, Why: "in the metadata, reached by no image, container or lease"})
	}
	byName := func(a, b Found) int { return cmp.Compare(a.Name, b.Name) }
	slices.SortFunc(snaps, byName)
	slices.SortFunc(blobs, byName)
	return append(snaps, blobs...)
}

// count is the size of what resource r keeps alone, not counted before.
func (h leaseHold) count(r leases.Resource, counted map[string]bool) int64 {
	var n int64
	switch {
	case r.Type == "content":
		d := digest.Digest(r.ID)
		if size, ok := h.reclaim.Content[d]; ok && !counted["content/"+r.ID] {
			counted["content/"+r.ID] = true
			n += size
		}
	case strings.HasPrefix(r.Type, "snapshots/"):
		k := reach.Snapshot{Snapshotter: strings.TrimPrefix(r.Type, "snapshots/"), Key: r.ID}
		if size, ok := h.reclaim.Snapshots[k]; ok && !counted[r.Type+"/"+r.ID] {
			counted[r.Type+"/"+r.ID] = true
			n += size
		}
	}
	return n
}

func leasesFound(stale []imgleases.StaleLease, hold leaseHold) []Found {
	var out []Found
	var listed int64
	for _, l := range stale {
		why := fmt.Sprintf("created %s, holds %d resources", l.CreatedAt.UTC().Format(time.RFC3339), len(l.Resources))
		if l.Expired {
			why = "expired " + l.Expiry.UTC().Format(time.RFC3339)
		}
		out = append(out, Found{Kind: KindLease, Name: l.ID, Size: hold.size[l.ID], Why: why})
		listed += hold.size[l.ID]
	}
	// What the leases reach through references goes with them too: counted
	// to the first, so that the sizes add up to what leaves.
	if len(out) > 0 {
		out[0].Size += hold.reclaim.Bytes() - listed
	}
	return out
}

// hidingLeases is a lease manager that does not list some leases: the
// collector as it will be once they are gone.
type hidingLeases struct {
	leases.Manager
	hidden map[string]bool
}

func (h hidingLeases) List(ctx context.Context, filters ...string) ([]leases.Lease, error) {
	ls, err := h.Manager.List(ctx, filters...)
	return slices.DeleteFunc(ls, func(l leases.Lease) bool { return h.hidden[l.ID] }), err
}
