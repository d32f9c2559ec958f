package check

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/reach"
	"github.com/imgprune/imgprune/daemon/store"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// deleteFound removes what the check found: the leases and the ingests
// through their APIs, then one collection that also sweeps the content
// store. It then looks again, and counts only what is gone: what the
// collection was predicted to free by the prune's own accounting (gone
// from every namespace, and from the disk), the rest by its size.
func (st Store) deleteFound(ctx context.Context, rep Report, root string, predicted reach.Reclaim) Report {
	rep.Deleted = true
	rep.Space = 0
	// It runs to its end when ctx is cancelled, no longer than a phase.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.PhaseTimeout)
	defer cancel()
	disk := reach.ViewDisk(ctx, st.Stores, root, predicted)
	cleaning := map[string]bool{}
	var cleanup []snapshots.Snapshotter
	for _, f := range rep.Found {
		if f.Kept {
			continue
		}
		var err error
		switch f.Kind {
		case KindLease:
			err = st.Stores.Leases.Delete(ctx, leases.Lease{ID: f.Name})
		case KindIngest:
			err = st.Stores.Content.Abort(ctx, f.Name)
		case KindDir:
			if st.Exclusive {
				// No daemon runs on the store: the directory is
				// this process's to remove, once it is sure it is
				// still below the root.
				if dir := filepath.Join(root, f.Name); store.InsideRoot(root, dir) {
					err = os.RemoveAll(dir)
				} else {
					err = fmt.Errorf("%s no longer resolves below the daemon's root: left alone", dir)
				}
			} else if name := store.DirSnapshotter(f.Name); !cleaning[name] {
				cleaning[name] = true
				if sn := st.Stores.Snapshotter(name); sn != nil {
					cleanup = append(cleanup, sn)
				}
			}
		}
		if err != nil && !errdefs.IsNotFound(err) {
			rep.Failures = append(rep.Failures, reach.Failure{Name: f.Kind + " " + f.Name, Error: err.Error()})
		}
	}
	if err := imgleases.Sweep(ctx, st.Stores.Leases, st.Stores.Content, st.Stores.Collector.Collect, cleanup...); err != nil {
		rep.Failures = append(rep.Failures, reach.Failure{Name: "garbage collection", Error: err.Error()})
	}
	gone, failures := st.goneNow(ctx, rep.Found, root)
	rep.Failures = append(rep.Failures, failures...)
	for i := range rep.Found {
		f := &rep.Found[i]
		if f.Kept {
			continue
		}
		f.Gone = gone[f.Kind+" "+f.Name]
		switch {
		case !f.Gone && f.Kind == KindDir && !st.Exclusive:
			rep.Failures = append(rep.Failures, reach.Failure{Name: f.Kind + " " + f.Name, Error: "still there after its snapshotter cleaned up; a snapshotter that does not clean up (native) leaves it to a check --delete --offline, with containerd stopped"})
		case !f.Gone:
			rep.Failures = append(rep.Failures, reach.Failure{Name: f.Kind + " " + f.Name, Error: "still there after its removal"})
		case f.Kind == KindIngest, f.Kind == KindDir, f.Kind == KindBlob && !inModel(predicted, f.Name):
			rep.Space += f.Size
		}
	}
	after, err := reach.ListPresent(ctx, st.Stores, predicted.Snapshotters())
	if err != nil {
		rep.Failures = append(rep.Failures, reach.Failure{Name: "accounting", Error: fmt.Sprintf("cannot tell what the collection freed, so none of it is counted: %v", err)})
		return rep
	}
	freed, failures := reach.Freed(ctx, st.Stores, predicted, after, disk)
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
func (st Store) goneNow(ctx context.Context, found []Found, root string) (map[string]bool, []reach.Failure) {
	gone := map[string]bool{}
	var failures []reach.Failure
	present := map[string]bool{}
	ls, err := st.Stores.Leases.List(ctx)
	if err != nil {
		failures = append(failures, reach.Failure{Name: "leases", Error: fmt.Sprintf("cannot list them again: %v", err)})
	}
	for _, l := range ls {
		present[KindLease+" "+l.ID] = true
	}
	statuses, err := st.Stores.Content.ListStatuses(ctx)
	if err != nil {
		failures = append(failures, reach.Failure{Name: "ingests", Error: fmt.Sprintf("cannot list them again: %v", err)})
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
		for d := range store.OnDisk(root, blobs) {
			present[KindBlob+" "+d.String()] = true
		}
	}
	for _, f := range found {
		var err error
		switch f.Kind {
		case KindBlob:
			_, err = st.Stores.Content.Info(ctx, digest.Digest(f.Name))
		case KindSnapshot:
			name, key, _ := strings.Cut(f.Name, "/")
			_, err = st.Stores.Snapshotter(name).Stat(ctx, key)
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
			failures = append(failures, reach.Failure{Name: f.Kind + " " + f.Name, Error: fmt.Sprintf("cannot look at it again: %v", err)})
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
