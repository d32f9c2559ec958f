package integration

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/check"
	"github.com/imgprune/imgprune/daemon/store/embedded"
	"github.com/imgprune/imgprune/internal/testimage"
)

// plantOrphan writes a blob file straight into the daemon's content folder,
// where no metadata knows it: what a failed unlink or a crash leaves.
func plantOrphan(t *testing.T, data []byte) (digest.Digest, string) {
	t.Helper()
	d := digest.FromBytes(data)
	path := filepath.Join(daemon.Dir, "root", "io.containerd.content.v1.content", "blobs", "sha256", d.Encoded())
	// The folder is there once the daemon stored a blob; a test run alone
	// may come first.
	assert.NilError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	assert.NilError(t, os.WriteFile(path, data, 0o644))
	t.Cleanup(func() { os.Remove(path) })
	return d, path
}

// newCheckEnv is a test's namespace with the daemon's disk in view, and no
// blob other tests left behind on it.
func newCheckEnv(t *testing.T) *env {
	e := newEnv(t, imgsvc.WithContainerdRoot(filepath.Join(daemon.Dir, "root")))
	rep, err := e.svc.Check(e.ctx, check.DeleteFound())
	assert.NilError(t, err)
	assert.NilError(t, rep.Err())
	return e
}

func (e *env) writeUnder(lease string, l testimage.Layer) {
	e.t.Helper()
	ctx := leases.WithLease(e.nsCtx(), lease)
	assert.NilError(e.t, content.WriteBlob(ctx, e.client.ContentStore(), "write-"+l.Desc.Digest.Encoded(), bytes.NewReader(l.Blob), l.Desc))
}

func onDiskNow(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func foundNames(rep check.Report) []string {
	var out []string
	for _, f := range rep.Found {
		out = append(out, f.Kind+" "+f.Name)
	}
	return out
}

// hasLease tells whether lease id is in lm.
func hasLease(t *testing.T, ctx context.Context, lm leases.Manager, id string) bool {
	t.Helper()
	ls, err := lm.List(ctx, "id=="+id)
	assert.NilError(t, err)
	return len(ls) > 0
}

// TestCheckFindsAndRemovesWhatNoImageAccountsFor: stale leases, an
// abandoned ingest and a blob no metadata knows are named with their sizes
// and left alone; with DeleteFound they go through containerd, the bytes
// that left the disk are counted, and everything an image, a live lease or
// the prune lock holds stays. A blob that cannot be unlinked is reported,
// and gone once it can be.
func TestCheckFindsAndRemovesWhatNoImageAccountsFor(t *testing.T) {
	e := newCheckEnv(t)
	ctx := e.nsCtx()
	lm, cs := e.client.LeasesService(), e.client.ContentStore()

	kept := newImage(t, "kept", "example.com/kept:1")
	e.write(kept)
	abandonedBlob, liveBlob := layer(t, "abandoned"), layer(t, "live")
	_, err := lm.Create(ctx, leases.WithID("abandoned"))
	assert.NilError(t, err)
	e.writeUnder("abandoned", abandonedBlob)
	_, err = lm.Create(ctx, leases.WithID("live"), leases.WithExpiration(time.Hour))
	assert.NilError(t, err)
	e.writeUnder("live", liveBlob)
	w, err := cs.Writer(ctx, content.WithRef("abandoned-ingest"))
	assert.NilError(t, err)
	_, err = w.Write([]byte("partial"))
	assert.NilError(t, err)
	assert.NilError(t, w.Close())
	orphan := []byte("a blob no metadata knows")
	orphanDigest, orphanPath := plantOrphan(t, orphan)
	// Nothing reaches these: the daemon's next collection removes them. The
	// check before this test collected, and fewer than the 100 writes that
	// schedule another one follow, so they stay until the check sweeps.
	unreachedBlob := layer(t, "unreached")
	assert.NilError(t, content.WriteBlob(ctx, cs, "unreached", bytes.NewReader(unreachedBlob.Blob), unreachedBlob.Desc))
	unreachedSnapshot, unreachedSize := e.prepareUnreached("unreached")
	time.Sleep(10 * time.Millisecond) // older than 0
	// Last, since any collection the daemon runs by itself removes it.
	_, err = lm.Create(ctx, leases.WithID("expired"), leases.WithLabels(map[string]string{"containerd.io/gc.expire": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)}))
	assert.NilError(t, err)

	rep, err := e.svc.Check(e.ctx, check.OlderThan(0))
	assert.NilError(t, err)

	assert.Check(t, rep.DiskChecked)
	assert.Check(t, !rep.Deleted)
	unreached := []string{"snapshot " + unreachedSnapshot, "blob " + unreachedBlob.Desc.Digest.String()}
	assert.Check(t, is.DeepEqual(foundNames(rep), append([]string{"lease abandoned", "lease expired", "ingest abandoned-ingest", "blob " + orphanDigest.String()}, unreached...)))
	sizes, keptFound := map[string]int64{}, map[string]bool{}
	for _, f := range rep.Found {
		sizes[f.Name] = f.Size
		keptFound[f.Name] = f.Kept
	}
	assert.Check(t, is.DeepEqual(sizes, map[string]int64{
		"abandoned": abandonedBlob.Desc.Size, "expired": 0, "abandoned-ingest": int64(len("partial")), orphanDigest.String(): int64(len(orphan)),
		unreachedSnapshot: unreachedSize, unreachedBlob.Desc.Digest.String(): unreachedBlob.Desc.Size,
	}))
	// A lease with no expiry is listed, kept: its bytes are not the check's.
	assert.Check(t, keptFound["abandoned"])
	assert.Check(t, is.Len(slices.DeleteFunc(slices.Clone(rep.Found), func(f check.Found) bool { return !f.Kept }), 1))
	assert.Check(t, is.Equal(rep.Space, int64(len("partial"))+int64(len(orphan))+unreachedSize+unreachedBlob.Desc.Size))
	// Nothing changed.
	assert.Check(t, onDiskNow(orphanPath))
	ls, err := lm.List(ctx)
	assert.NilError(t, err)
	assert.Check(t, is.Len(ls, 3))
	// A longer age finds the expired lease, the orphan and what nothing
	// reaches alone.
	rep, err = e.svc.Check(e.ctx)
	assert.NilError(t, err)
	want := append([]string{"lease expired", "blob " + orphanDigest.String()}, unreached...)
	if !slices.Contains(foundNames(rep), "lease expired") {
		// The daemon's own collection removes an expired lease, and may
		// have run before the check listed the leases: one not found must
		// be gone.
		assert.Check(t, !hasLease(t, ctx, lm, "expired"), "the expired lease is there, not found")
		want = want[1:]
	}
	assert.Check(t, is.DeepEqual(foundNames(rep), want))

	// The orphan cannot be unlinked: reported, the rest goes.
	chattr(t, "+i", orphanPath)
	rep, err = e.svc.Check(e.ctx, check.OlderThan(0), check.DeleteFound())
	chattr(t, "-i", orphanPath)
	assert.NilError(t, err)
	assert.Check(t, rep.Deleted)
	assert.Check(t, is.ErrorContains(rep.Err(), "failed"))
	var failed []string
	for _, f := range rep.Failures {
		failed = append(failed, f.Name)
	}
	assert.Check(t, slices.Contains(failed, "blob "+orphanDigest.String()), "failures: %v", rep.Failures)
	assert.Check(t, onDiskNow(orphanPath))
	ls, err = lm.List(ctx)
	assert.NilError(t, err)
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.ID)
	}
	assert.Check(t, is.DeepEqual(slices.Sorted(slices.Values(ids)), []string{"abandoned", "live"}))
	statuses, err := cs.ListStatuses(ctx)
	assert.NilError(t, err)
	assert.Check(t, is.Len(statuses, 0))
	_, err = cs.Info(ctx, unreachedBlob.Desc.Digest)
	assert.Check(t, errdefs.IsNotFound(err), "the unreached blob is still in the store: %v", err)
	_, err = cs.Info(ctx, abandonedBlob.Desc.Digest)
	assert.Check(t, err, "the kept lease's blob went")
	_, err = e.client.SnapshotService(snapshotter).Stat(ctx, "unreached")
	assert.Check(t, errdefs.IsNotFound(err), "the unreached snapshot is still there: %v", err)
	// What the failed unlink left counts nothing (the collector may stop
	// its sweep there); the ingest's and the snapshot's bytes do.
	assert.Check(t, rep.Space <= int64(len("partial"))+unreachedSize+unreachedBlob.Desc.Size)
	assert.Check(t, rep.Space >= int64(len("partial"))+unreachedSize)

	// Writable again: the next check finishes the job, and the lease with
	// no expiry goes once the user names it.
	rep, err = e.svc.Check(e.ctx, check.OlderThan(0), check.DeleteFound(), check.DeleteLeases("abandoned"))
	assert.NilError(t, err)
	assert.Check(t, rep.Err())
	assert.Check(t, slices.Contains(foundNames(rep), "blob "+orphanDigest.String()))
	for _, f := range rep.Found {
		assert.Check(t, f.Gone, "%s %s", f.Kind, f.Name)
	}
	assert.Check(t, !onDiskNow(orphanPath))
	assert.Check(t, !onDiskNow(blobFile(abandonedBlob)))
	rep, err = e.svc.Check(e.ctx, check.OlderThan(0))
	assert.NilError(t, err)
	assert.Check(t, is.Len(rep.Found, 0))

	// What images and the live lease hold stayed.
	assert.Check(t, e.hasContent(kept))
	for _, b := range kept.Blobs() {
		assert.Check(t, onDiskNow(blobFile(testimage.Layer{Desc: b.Desc})), "%s", b.Desc.Digest)
	}
	_, err = cs.Info(ctx, liveBlob.Desc.Digest)
	assert.Check(t, err)
}

// prepareUnreached prepares an active snapshot outside any lease, with a
// file in it, and returns its name in a check's report and its usage.
func (e *env) prepareUnreached(key string) (string, int64) {
	e.t.Helper()
	sn := e.client.SnapshotService(snapshotter)
	mounts, err := sn.Prepare(e.nsCtx(), key, "")
	assert.NilError(e.t, err)
	assert.Assert(e.t, is.Len(mounts, 1))
	assert.NilError(e.t, os.WriteFile(filepath.Join(mounts[0].Source, "data"), bytes.Repeat([]byte("x"), 64<<10), 0o644))
	usage, err := sn.Usage(e.nsCtx(), key)
	assert.NilError(e.t, err)
	assert.Assert(e.t, usage.Size >= 64<<10)
	return snapshotter + "/" + key, usage.Size
}

// plantLeftDir makes a directory as a snapshot removal that failed leaves
// it, with data in it, below root.
func plantLeftDir(t *testing.T, root, sn string) (string, string) {
	t.Helper()
	rel := filepath.Join("io.containerd.snapshotter.v1."+sn, "snapshots", "rm-"+strings.ToLower(t.Name()))
	dir := filepath.Join(root, rel)
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "fs"), 0o755))
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "fs", "data"), bytes.Repeat([]byte("x"), 64<<10), 0o644))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return rel, dir
}

// TestCheckFindsDirectoriesSnapshotRemovalsLeft: a directory a failed
// snapshot removal left is named with its size; with DeleteFound the
// daemon's overlayfs snapshotter cleans it up, while the native one cannot
// and it is reported still there; a check of the store with no daemon
// running removes it itself.
func TestCheckFindsDirectoriesSnapshotRemovalsLeft(t *testing.T) {
	e := newCheckEnv(t)
	rel, dir := plantLeftDir(t, filepath.Join(daemon.Dir, "root"), snapshotter)

	rep, err := e.svc.Check(e.ctx)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(foundNames(rep), []string{"directory " + rel}))
	assert.Check(t, rep.Space >= 64<<10, "size %d", rep.Space)
	assert.Check(t, onDiskNow(dir))

	rep, err = e.svc.Check(e.ctx, check.DeleteFound())
	assert.NilError(t, err)
	assert.Assert(t, is.Len(rep.Found, 1))
	if snapshotter == "overlayfs" {
		assert.Check(t, rep.Err())
		assert.Check(t, rep.Found[0].Gone)
		assert.Check(t, rep.Space >= 64<<10, "freed %d", rep.Space)
		assert.Check(t, !onDiskNow(dir))
	} else {
		assert.Check(t, is.ErrorContains(rep.Err(), "failed"))
		assert.Check(t, !rep.Found[0].Gone)
		assert.Check(t, is.Equal(rep.Space, int64(0)))
		assert.Assert(t, is.Len(rep.Failures, 1))
		assert.Check(t, is.Contains(rep.Failures[0].Error, "--offline"))
		assert.Check(t, onDiskNow(dir))
	}

	// A store no daemon runs on: the check removes the directory itself.
	root := t.TempDir()
	rel, dir = plantLeftDir(t, root, "native")
	store, err := embedded.Open(e.ctx, root, embedded.CreateStore())
	assert.NilError(t, err)
	defer store.Close()
	rep, err = imgsvc.NewOffline(store.Stores(), store.Root(), "default").Check(e.ctx, check.DeleteFound())
	assert.NilError(t, err)
	assert.Check(t, rep.Err())
	assert.Check(t, is.DeepEqual(foundNames(rep), []string{"directory " + rel}))
	assert.Check(t, rep.Space >= 64<<10, "freed %d", rep.Space)
	assert.Check(t, !onDiskNow(dir))
}

// TestCLICheck: the hard prune's text output, its exit status and its bad
// input.
func TestCLICheck(t *testing.T) {
	e := newCheckEnv(t)
	orphan := []byte("orphaned")
	d, path := plantOrphan(t, orphan)

	for _, args := range [][]string{{"check", "--older-than", "-1s"}, {"check", "--format", "xml"}} {
		_, stderr, code := e.run(t, args...)
		assert.Check(t, is.Equal(code, 1), "%v", args)
		assert.Check(t, is.Contains(stderr, "invalid"), "%v", args)
		assert.Check(t, onDiskNow(path))
	}

	stdout, stderr, code := e.run(t, "check")
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.Contains(stdout, "Would delete blob: "+d.String()+" (8B; "))
	assert.Check(t, is.Contains(stdout, "Would delete 1 blob\n"))
	assert.Check(t, is.Contains(stdout, "Would free up 8B of disk space\n"))
	assert.Check(t, onDiskNow(path))

	stdout, stderr, code = e.run(t, "check", "--delete")
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.Contains(stdout, "Deleted blob: "+d.String()))
	assert.Check(t, is.Contains(stdout, "Deleted 1 blob\n"))
	assert.Check(t, is.Contains(stdout, "Freed up 8B of disk space\n"))
	assert.Check(t, !onDiskNow(path))

	stdout, _, code = e.run(t, "check", "--format", "json")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(stdout, `"Found":[]`))
}

// TestCheckKeepsLeasesWithNoExpiry: a lease with no expiry is listed and
// kept at any age, as a Docker Engine's container leases and BuildKit's
// cache are; one nothing owns goes when the user names it or lets every
// such lease go, and one a container owns never does: by the container's
// ID, by its record's rootfs, or by a writable snapshot it holds (a stopped
// Docker Engine's container has no record).
func TestCheckKeepsLeasesWithNoExpiry(t *testing.T) {
	e := newCheckEnv(t)
	ctx := e.nsCtx()
	lm, sn := e.client.LeasesService(), e.client.SnapshotService(snapshotter)
	// A Docker Engine's container: lease <cid>, its rootfs <cid> on a
	// committed <cid>-init, no container record.
	const engineCtr = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	_, err := lm.Create(ctx, leases.WithID(engineCtr))
	assert.NilError(t, err)
	held := leases.WithLease(ctx, engineCtr)
	_, err = sn.Prepare(held, engineCtr+"-init-key", "")
	assert.NilError(t, err)
	assert.NilError(t, sn.Commit(held, engineCtr+"-init", engineCtr+"-init-key"))
	_, err = sn.Prepare(held, engineCtr, engineCtr+"-init")
	assert.NilError(t, err)
	// A container record whose lease has another name and holds its rootfs.
	_, err = lm.Create(ctx, leases.WithID("rootfs-of-recorded"))
	assert.NilError(t, err)
	committed := leases.WithLease(ctx, "rootfs-of-recorded")
	_, err = sn.Prepare(committed, "recorded-key", "")
	assert.NilError(t, err)
	assert.NilError(t, sn.Commit(committed, "recorded-rootfs", "recorded-key"))
	e.containerWithRootfs("recorded", "example.com/none:1", "recorded-rootfs")
	// A lease named after a container record.
	_, err = lm.Create(ctx, leases.WithID("by-id"))
	assert.NilError(t, err)
	e.writeUnder("by-id", layer(t, "by-id"))
	e.container("by-id", "example.com/none:1", nil)
	// Nothing owns these.
	for _, id := range []string{"leftover", "named"} {
		_, err = lm.Create(ctx, leases.WithID(id))
		assert.NilError(t, err)
		e.writeUnder(id, layer(t, id))
	}
	time.Sleep(10 * time.Millisecond) // older than 0
	all := []string{"by-id", engineCtr, "leftover", "named", "rootfs-of-recorded"}
	leaseIDs := func() []string {
		ls, err := lm.List(ctx)
		assert.NilError(t, err)
		var ids []string
		for _, l := range ls {
			ids = append(ids, l.ID)
		}
		return slices.Sorted(slices.Values(ids))
	}
	assert.Assert(t, is.DeepEqual(leaseIDs(), slices.Sorted(slices.Values(all))))

	// At any age, with --delete, all are listed and all stay.
	rep, err := e.svc.Check(e.ctx, check.OlderThan(0), check.DeleteFound())
	assert.NilError(t, err)
	assert.NilError(t, rep.Err())
	why := map[string]string{}
	for _, f := range rep.Found {
		if f.Kind == check.KindLease {
			assert.Check(t, f.Kept, "%s", f.Name)
			why[f.Name] = f.Why
		}
	}
	assert.Check(t, is.Len(why, len(all)))
	assert.Check(t, is.Contains(why[engineCtr], "likely a Docker Engine's container, holds it in use; holds snapshot "+snapshotter+"/"+engineCtr))
	assert.Check(t, is.Contains(why[engineCtr], "owned by a container (its writable snapshot "+snapshotter+"/"+engineCtr+")"))
	assert.Check(t, is.Contains(why["rootfs-of-recorded"], "owned by container recorded"))
	assert.Check(t, is.Contains(why["by-id"], "owned by container by-id"))
	assert.Check(t, is.Contains(why["leftover"], "delete it with --lease leftover"))
	assert.Check(t, is.DeepEqual(leaseIDs(), slices.Sorted(slices.Values(all))))

	// Naming a lease a container owns, or one the check does not find, is
	// an error that changes nothing.
	_, err = e.svc.Check(e.ctx, check.OlderThan(0), check.DeleteFound(), check.DeleteLeases("named", engineCtr))
	assert.Check(t, errdefs.IsFailedPrecondition(err), "%v", err)
	assert.Check(t, is.ErrorContains(err, "remove the container first"))
	_, err = e.svc.Check(e.ctx, check.OlderThan(0), check.DeleteFound(), check.DeleteLeases("named", "no-such-lease"))
	assert.Check(t, errdefs.IsInvalidArgument(err), "%v", err)
	assert.Check(t, is.DeepEqual(leaseIDs(), slices.Sorted(slices.Values(all))))

	// Named, it goes; then every one nothing owns goes when asked.
	rep, err = e.svc.Check(e.ctx, check.OlderThan(0), check.DeleteFound(), check.DeleteLeases("named"))
	assert.NilError(t, err)
	assert.NilError(t, rep.Err())
	assert.Check(t, is.DeepEqual(leaseIDs(), []string{engineCtr, "by-id", "leftover", "rootfs-of-recorded"}))
	rep, err = e.svc.Check(e.ctx, check.OlderThan(0), check.DeleteFound(), check.DeleteUnexpiring())
	assert.NilError(t, err)
	assert.NilError(t, rep.Err())
	assert.Check(t, is.DeepEqual(leaseIDs(), []string{engineCtr, "by-id", "rootfs-of-recorded"}))
	// The engine's container keeps its files.
	for _, key := range []string{engineCtr, engineCtr + "-init", "recorded-rootfs"} {
		_, err := sn.Stat(ctx, key)
		assert.Check(t, err, "snapshot %s", key)
	}
}
