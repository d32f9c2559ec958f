package images

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/imgprune/imgprune/daemon/reach"
	"github.com/imgprune/imgprune/daemon/store"
)

// checkSnapshotDirs compares each snapshotter's state now with before, for the
// snapshots this prune freed, and sets what their bytes fall short of:
//   - a directory the native snapshotter failed to remove stays as
//     "rm-<id>": its bytes are not counted;
//   - fewer directories gone than snapshot records gone, in all namespaces,
//     means some removed snapshot stayed on disk, and which is unknown: none
//     of that snapshotter's freed bytes are counted.
func (s *Service) checkSnapshotDirs(ctx context.Context, before store.SnapshotDirs, root string, freed *reach.Reclaim) []Failure {
	var failures []Failure
	for name := range freed.Snapshotters() {
		was, ok := before[name]
		if !ok {
			continue
		}
		now := s.stores.ListSnapshotDirs(ctx, root, s.namespace, map[string]bool{name: true})[name]
		if now.Entries == nil {
			continue
		}
		var left []string
		var leftBytes int64
		var unmeasured error
		for e := range now.Entries {
			if strings.HasPrefix(e, "rm-") && !was.Entries[e] {
				left = append(left, e)
				n, err := store.DiskUsage(ctx, filepath.Join(store.SnapshotsDir(root, name), e))
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
