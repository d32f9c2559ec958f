package reach

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/store"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// Failure is one item of a prune or a check that failed, or whose bytes
// are not counted: Name says what, Error why.
type Failure struct {
	Name  string `json:"Name"`
	Error string `json:"Error"`
}

// DiskView is what a prune or a check sees of the store's disk before it
// deletes, to tell afterwards what left it. A nil view sees nothing: the
// daemon's root is not on this host.
type DiskView struct {
	root      string
	snapshots store.SnapshotDirs
}

// ViewDisk looks at the disk below root, the daemon's root proven on this
// host, for what predicted frees; nil when root is "".
func ViewDisk(ctx context.Context, s store.Stores, root string, predicted Reclaim) *DiskView {
	if root == "" {
		return nil
	}
	return &DiskView{root: root, snapshots: s.ListSnapshotDirs(ctx, root, predicted.Snapshotters())}
}

// Freed is what left among what was predicted to leave, after is the
// store's graph once the collection ran: what after still has did not
// leave, nor what another namespace has taken in since the prediction,
// nor, with a view of the disk, what is still on it.
func Freed(ctx context.Context, s store.Stores, predicted Reclaim, after *Graph, disk *DiskView) (Reclaim, []Failure) {
	freed := NewReclaim()
	for d, size := range predicted.Content {
		if _, ok := after.Content[d]; !ok {
			freed.Content[d] = size
		}
	}
	for k, size := range predicted.Snapshots {
		if _, ok := after.Snapshots[k]; !ok {
			freed.Snapshots[k] = size
		}
	}
	var failures []Failure
	if err := DropShared(ctx, s, freed.Content); err != nil {
		failures = append(failures, Failure{Name: "accounting", Error: fmt.Sprintf("cannot tell which blobs other namespaces hold, so no content is counted: %v", err)})
		clear(freed.Content)
	}
	if disk != nil {
		failures = append(failures, sweepDisk(ctx, s, disk.root, freed.Content)...)
		failures = append(failures, checkSnapshotDirs(ctx, s, disk, &freed)...)
	}
	return freed, failures
}

// sweepDisk checks that the freed blobs left the disk under root. When some
// did not, containerd sweeps its content store once more, since its
// collector forgets a blob whose unlink failed; a blob still there after
// that is dropped from freed and reported.
func sweepDisk(ctx context.Context, s store.Stores, root string, freed map[digest.Digest]int64) []Failure {
	left := store.OnDisk(root, freed)
	if len(left) == 0 {
		return nil
	}
	log.G(ctx).WithField("blobs", len(left)).Warn("garbage collection left blobs on disk; sweeping again")
	err := imgleases.Sweep(ctx, s.Leases, s.Content, s.Collector.Collect)
	var failures []Failure
	for d := range store.OnDisk(root, left) {
		delete(freed, d)
		msg := "garbage collection left the blob on disk; its bytes are not counted"
		if err != nil {
			msg += fmt.Sprintf(" (sweeping again failed: %v)", err)
		}
		failures = append(failures, Failure{Name: d.String(), Error: msg})
	}
	return failures
}

// checkSnapshotDirs compares each snapshotter's state now with the view's,
// for the snapshots freed, and sets what their bytes fall short of:
//   - a directory the native snapshotter failed to remove stays as
//     "rm-<id>": its bytes are not counted;
//   - fewer directories gone than snapshot records gone, in all namespaces,
//     means some removed snapshot stayed on disk, and which is unknown: none
//     of that snapshotter's freed bytes are counted.
func checkSnapshotDirs(ctx context.Context, s store.Stores, disk *DiskView, freed *Reclaim) []Failure {
	var failures []Failure
	for name := range freed.Snapshotters() {
		was, ok := disk.snapshots[name]
		if !ok {
			continue
		}
		now := s.ListSnapshotDirs(ctx, disk.root, map[string]bool{name: true})[name]
		if now.Entries == nil {
			continue
		}
		var left []string
		var leftBytes int64
		var unmeasured error
		for e := range now.Entries {
			if strings.HasPrefix(e, "rm-") && !was.Entries[e] {
				left = append(left, e)
				n, err := store.DiskUsage(ctx, filepath.Join(store.SnapshotsDir(disk.root, name), e))
				unmeasured = cmp.Or(unmeasured, err)
				leftBytes += n
			}
		}
		if unmeasured != nil {
			// What is left cannot be told from what left: none of the
			// snapshotter's bytes count.
			freed.Shortfall[name] = freed.SnapshotBytes(name)
			failures = append(failures, Failure{Name: "snapshots/" + name, Error: fmt.Sprintf("the snapshotter left %d removed snapshots on disk (%s) whose size cannot be read: %v; none of its freed bytes are counted", len(left), strings.Join(left, ", "), unmeasured)})
			continue
		}
		dirsGone := was.Live() - now.Live()
		recordsGone := was.Records - now.Records
		switch {
		case len(left) > 0:
			freed.Shortfall[name] += leftBytes
			failures = append(failures, Failure{Name: "snapshots/" + name, Error: fmt.Sprintf("the snapshotter left %d removed snapshots on disk (%s); their %d bytes are not counted", len(left), strings.Join(left, ", "), leftBytes)})
		case dirsGone < recordsGone:
			freed.Shortfall[name] = freed.SnapshotBytes(name)
			failures = append(failures, Failure{Name: "snapshots/" + name, Error: fmt.Sprintf("%d snapshots were removed but only %d directories left the disk; no snapshot bytes of %s are counted", recordsGone, dirsGone, name)})
		}
	}
	return failures
}
