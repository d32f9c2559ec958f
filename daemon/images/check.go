package images

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

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

// CheckOpt configures a check.
type CheckOpt func(*checkOptions)

type checkOptions struct {
	delete    bool
	olderThan time.Duration
	// leases are the leases with no expiry the user lets go.
	leases []string
	// unexpiring lets every lease with no expiry go, but containers'.
	unexpiring bool
}

// DeleteFound makes the check remove what it finds, through containerd.
func DeleteFound() CheckOpt { return func(o *checkOptions) { o.delete = true } }

// OlderThan sets how old an ingest, or a lease with no expiry, must be to be
// called abandoned.
func OlderThan(d time.Duration) CheckOpt { return func(o *checkOptions) { o.olderThan = d } }

// CheckReport is what holds or wastes space that no image accounts for.
type CheckReport struct {
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
	Failures []Failure `json:"Failures,omitempty"`
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
func (r CheckReport) Err() error {
	if len(r.Failures) == 0 {
		return nil
	}
	return fmt.Errorf("%d of the check's items failed", len(r.Failures))
}

// Check finds what holds or wastes space that no image accounts for: leases
// no live writer needs (expired, or old and holding something), ingests no
// writer finishes, and, when the daemon's root is this host's, blobs on disk
// that no namespace's metadata knows (a failed unlink, a crash mid-write).
// With DeleteFound it removes them through containerd itself: the leases
// and ingests through their APIs, the blobs by one collection that sweeps
// the content store, never a file unlinked behind the daemon's back. It
// looks at the service's namespace, and at every namespace for blobs.
func (s *Service) Check(ctx context.Context, opts ...CheckOpt) (CheckReport, error) {
	o := checkOptions{olderThan: DefaultOlderThan}
	for _, opt := range opts {
		opt(&o)
	}
	if o.olderThan < 0 {
		return CheckReport{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("older than %v: a negative age", o.olderThan))
	}
	ctx = s.withNamespace(ctx)
	ctx, cancel := s.phase(ctx)
	defer cancel()
	now := time.Now()
	root := s.diskRoot(ctx)
	rep := CheckReport{Found: []Found{}}
	// The disk first: a blob committed after this look is in the metadata
	// read next.
	var blobs map[digest.Digest]int64
	if rep.DiskChecked = root != ""; rep.DiskChecked {
		var err error
		if blobs, err = blobsOnDisk(filepath.Join(root, contentDir)); err != nil {
			return CheckReport{}, err
		}
	}
	stale, err := imgleases.Stale(ctx, s.stores.Leases, o.olderThan, now)
	if err != nil {
		return CheckReport{}, err
	}
	ctrs, ctrRecords, err := s.listContainers(ctx)
	if err != nil {
		return CheckReport{}, err
	}
	going, kept, err := sortStale(ctx, stale, o, newOwnership(ctrs, ctrRecords, s.stores.Snapshotter))
	if err != nil {
		return CheckReport{}, err
	}
	model, err := s.modelCollection(ctx, ctrRecords, going)
	if err != nil {
		return CheckReport{}, err
	}
	leaseItems := leasesFound(going, model.hold)
	if len(kept) > 0 {
		// What a kept lease holds beyond what the check removes.
		all := slices.Clone(going)
		for _, u := range kept {
			all = append(all, u.StaleLease)
		}
		more, err := s.modelCollection(ctx, ctrRecords, all)
		if err != nil {
			return CheckReport{}, err
		}
		leaseItems = append(leaseItems, unexpiringFound(kept, more.hold.size)...)
		slices.SortStableFunc(leaseItems, func(a, b Found) int { return cmp.Compare(a.Name, b.Name) })
	}
	rep.Found = append(rep.Found, leaseItems...)
	ingests, err := s.abandonedIngests(ctx, o.olderThan, now)
	if err != nil {
		return CheckReport{}, err
	}
	rep.Found = append(rep.Found, ingests...)
	orphans, err := s.unknownBlobs(ctx, blobs)
	if err != nil {
		return CheckReport{}, err
	}
	rep.Found = append(rep.Found, orphans...)
	rep.Found = append(rep.Found, unreachedFound(model.unreached)...)
	if root != "" {
		dirs, err := leftDirs(root)
		if err != nil {
			return CheckReport{}, err
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
	return s.deleteFound(ctx, rep, root, model.predicted()), nil
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
func (s *Service) modelCollection(ctx context.Context, ctrRecords []containers.Container, stale []imgleases.StaleLease) (collection, error) {
	c := collection{hold: leaseHold{reclaim: reach.NewReclaim(), size: map[string]int64{}}}
	records, err := s.listRecords(ctx)
	if err != nil {
		return c, fmt.Errorf("list images: %w", err)
	}
	predict := func(st store.Stores) (reach.Reclaim, error) {
		g, err := reach.Take(ctx, st, ctrRecords, s.snapshotter)
		if err != nil {
			return reach.Reclaim{}, err
		}
		return reach.Predict(ctx, st, g, records)
	}
	if c.unreached, err = predict(s.stores); err != nil {
		return c, err
	}
	if len(stale) == 0 {
		return c, nil
	}
	hidden := map[string]bool{}
	for _, l := range stale {
		hidden[l.ID] = true
	}
	st := s.stores
	st.Leases = hidingLeases{Manager: st.Leases, hidden: hidden}
	without, err := predict(st)
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

// abandonedIngests lists the namespace's ingests no writer touched for
// longer than olderThan.
func (s *Service) abandonedIngests(ctx context.Context, olderThan time.Duration, now time.Time) ([]Found, error) {
	statuses, err := s.stores.Content.ListStatuses(ctx)
	if err != nil {
		return nil, fmt.Errorf("list ingests: %w", err)
	}
	var out []Found
	for _, st := range statuses {
		if now.Sub(st.UpdatedAt) <= olderThan {
			continue
		}
		out = append(out, Found{Kind: KindIngest, Name: st.Ref, Size: st.Offset, Why: "last written " + st.UpdatedAt.UTC().Format(time.RFC3339)})
	}
	slices.SortFunc(out, func(a, b Found) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// unknownBlobs are the blobs among onDisk that no namespace's metadata
// knows. Each is asked for once more, in every namespace, so that a blob
// committed while the namespaces were walked is not called unknown.
func (s *Service) unknownBlobs(ctx context.Context, onDisk map[digest.Digest]int64) ([]Found, error) {
	if len(onDisk) == 0 {
		return nil, nil
	}
	all, err := s.stores.Namespaces.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	unknown := maps.Clone(onDisk)
	for _, ns := range all {
		g, err := reach.ListContent(namespaces.WithNamespace(ctx, ns), s.stores.Content)
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
		for d := range g.Content {
			delete(unknown, d)
		}
	}
	var out []Found
	for d, size := range unknown {
		if s.knownAnywhere(ctx, all, d) {
			continue
		}
		out = append(out, Found{Kind: KindBlob, Name: d.String(), Size: size, Why: "on disk, in no namespace's metadata"})
	}
	slices.SortFunc(out, func(a, b Found) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// knownAnywhere tells whether a namespace's metadata knows d.
func (s *Service) knownAnywhere(ctx context.Context, all []string, d digest.Digest) bool {
	for _, ns := range all {
		if _, err := s.stores.Content.Info(namespaces.WithNamespace(ctx, ns), d); err == nil {
			return true
		}
	}
	return false
}

// blobsOnDisk lists the blob files of the content store in dir, with their
// sizes on disk.
func blobsOnDisk(dir string) (map[digest.Digest]int64, error) {
	out := map[digest.Digest]int64{}
	algs, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list blobs on disk: %w", err)
	}
	for _, alg := range algs {
		entries, err := os.ReadDir(filepath.Join(dir, "blobs", alg.Name()))
		if err != nil {
			return nil, fmt.Errorf("list blobs on disk: %w", err)
		}
		for _, e := range entries {
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name())
			if d.Validate() != nil {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("list blobs on disk: %w", err)
			}
			out[d] = info.Size()
		}
	}
	return out, nil
}

// leftDirs lists the directories snapshot removals left below root: a
// snapshotter renames a snapshot's directory "rm-<id>" before it removes
// it, and only logs a removal that fails. No snapshot record knows them.
func leftDirs(root string) ([]Found, error) {
	dirs, err := filepath.Glob(filepath.Join(root, snapshotDir+"*", "snapshots", "rm-*"))
	if err != nil {
		return nil, err
	}
	var out []Found
	for _, dir := range dirs {
		if !insideRoot(root, dir) {
			// A link out of the tree (planted, or a folder moved
			// elsewhere): not the snapshotter's to clean, nor ours.
			log.L.WithField("path", dir).Warn("check: a directory that resolves outside the daemon's root is left alone")
			continue
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return nil, err
		}
		out = append(out, Found{Kind: KindDir, Name: rel, Size: diskUsage(dir), Why: "left on disk by a snapshot removal that failed"})
	}
	return out, nil
}

// insideRoot tells whether dir is a directory itself, not a link, and
// resolves below root: what a check removes offline never lies outside the
// daemon's root, whatever links lie on the way.
func insideRoot(root, dir string) bool {
	info, err := os.Lstat(dir)
	if err != nil || !info.IsDir() {
		return false
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return false
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(realRoot, realDir)
	return err == nil && rel != "." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && rel != ".."
}

// dirSnapshotter is the snapshotter whose state holds a directory, by its
// path below the daemon's root.
func dirSnapshotter(rel string) string {
	first, _, _ := strings.Cut(rel, string(filepath.Separator))
	return strings.TrimPrefix(first, snapshotDir)
}

// deleteFound removes what the check found: the leases and the ingests
// through their APIs, then one collection that also sweeps the content
// store. It then looks again, and counts only what is gone: what the
// collection was predicted to free by the prune's own accounting (gone
// from every namespace, and from the disk), the rest by its size.
func (s *Service) deleteFound(ctx context.Context, rep CheckReport, root string, predicted reach.Reclaim) CheckReport {
	rep.Deleted = true
	rep.Space = 0
	ctx, cancel := s.finishing(ctx)
	defer cancel()
	var disk *diskView
	if root != "" {
		disk = &diskView{root: root, snapshots: s.listSnapshotDirs(ctx, root, predicted.Snapshotters())}
	}
	cleaning := map[string]bool{}
	var cleanup []snapshots.Snapshotter
	for _, f := range rep.Found {
		if f.Kept {
			continue
		}
		var err error
		switch f.Kind {
		case KindLease:
			err = s.stores.Leases.Delete(ctx, leases.Lease{ID: f.Name})
		case KindIngest:
			err = s.stores.Content.Abort(ctx, f.Name)
		case KindDir:
			if s.exclusive {
				// No daemon runs on the store: the directory is
				// this process's to remove, once it is sure it is
				// still below the root.
				if dir := filepath.Join(root, f.Name); insideRoot(root, dir) {
					err = os.RemoveAll(dir)
				} else {
					err = fmt.Errorf("%s no longer resolves below the daemon's root: left alone", dir)
				}
			} else if name := dirSnapshotter(f.Name); !cleaning[name] {
				cleaning[name] = true
				if sn := s.stores.Snapshotter(name); sn != nil {
					cleanup = append(cleanup, sn)
				}
			}
		}
		if err != nil && !errdefs.IsNotFound(err) {
			rep.Failures = append(rep.Failures, Failure{Name: f.Kind + " " + f.Name, Error: err.Error()})
		}
	}
	if err := imgleases.Sweep(ctx, s.stores.Leases, s.stores.Content, s.collect, cleanup...); err != nil {
		rep.Failures = append(rep.Failures, Failure{Name: "garbage collection", Error: err.Error()})
	}
	gone, failures := s.goneNow(ctx, rep.Found, root)
	rep.Failures = append(rep.Failures, failures...)
	for i := range rep.Found {
		f := &rep.Found[i]
		if f.Kept {
			continue
		}
		f.Gone = gone[f.Kind+" "+f.Name]
		switch {
		case !f.Gone && f.Kind == KindDir && !s.exclusive:
			rep.Failures = append(rep.Failures, Failure{Name: f.Kind + " " + f.Name, Error: "still there after its snapshotter cleaned up; a snapshotter that does not clean up (native) leaves it to a check --delete --offline, with containerd stopped"})
		case !f.Gone:
			rep.Failures = append(rep.Failures, Failure{Name: f.Kind + " " + f.Name, Error: "still there after its removal"})
		case f.Kind == KindIngest, f.Kind == KindDir, f.Kind == KindBlob && !inModel(predicted, f.Name):
			rep.Space += f.Size
		}
	}
	after, err := reach.ListPresent(ctx, s.stores, predicted.Snapshotters())
	if err != nil {
		rep.Failures = append(rep.Failures, Failure{Name: "accounting", Error: fmt.Sprintf("cannot tell what the collection freed, so none of it is counted: %v", err)})
		return rep
	}
	freed, failures := s.freed(ctx, predicted, after, disk)
	rep.Failures = append(rep.Failures, failures...)
	rep.Space += freed.Bytes()
	return rep
}

// inModel tells whether the blob named is one of the collector's model:
// its bytes are counted by the prune's accounting.
func inModel(r reach.Reclaim, name string) bool {
	_, ok := r.Content[digest.Digest(name)]
	return ok
}

// goneNow tells, by kind and name, which of found is gone.
func (s *Service) goneNow(ctx context.Context, found []Found, root string) (map[string]bool, []Failure) {
	gone := map[string]bool{}
	var failures []Failure
	present := map[string]bool{}
	ls, err := s.stores.Leases.List(ctx)
	if err != nil {
		failures = append(failures, Failure{Name: "leases", Error: fmt.Sprintf("cannot list them again: %v", err)})
	}
	for _, l := range ls {
		present[KindLease+" "+l.ID] = true
	}
	statuses, err := s.stores.Content.ListStatuses(ctx)
	if err != nil {
		failures = append(failures, Failure{Name: "ingests", Error: fmt.Sprintf("cannot list them again: %v", err)})
	}
	for _, st := range statuses {
		present[KindIngest+" "+st.Ref] = true
	}
	blobs := map[digest.Digest]int64{}
	for _, f := range found {
		if f.Kind == KindBlob {
			blobs[digest.Digest(f.Name)] = f.Size
		}
	}
	if root != "" {
		for d := range onDisk(filepath.Join(root, contentDir), blobs) {
			present[KindBlob+" "+d.String()] = true
		}
	}
	for _, f := range found {
		var err error
		switch f.Kind {
		case KindBlob:
			_, err = s.stores.Content.Info(ctx, digest.Digest(f.Name))
		case KindSnapshot:
			name, key, _ := strings.Cut(f.Name, "/")
			_, err = s.stores.Snapshotter(name).Stat(ctx, key)
		case KindDir:
			if _, err = os.Lstat(filepath.Join(root, f.Name)); errors.Is(err, fs.ErrNotExist) {
				err = errdefs.ErrNotFound
			}
		default:
			continue
		}
		switch {
		case err == nil:
			present[f.Kind+" "+f.Name] = true
		case !errdefs.IsNotFound(err):
			failures = append(failures, Failure{Name: f.Kind + " " + f.Name, Error: fmt.Sprintf("cannot look at it again: %v", err)})
		}
	}
	for _, f := range found {
		key := f.Kind + " " + f.Name
		gone[key] = !present[key]
	}
	if len(failures) > 0 {
		// What could not be listed again is not known gone.
		clear(gone)
	}
	log.G(ctx).WithField("gone", len(gone)).Debug("check: looked again")
	return gone, failures
}
