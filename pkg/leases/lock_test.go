package leases

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// newLeases is a lease manager over containerd's own metadata store in a
// temp dir, as a daemon keeps it.
func newLeases(t *testing.T) (context.Context, leases.Manager) {
	ctx, db := newStore(t)
	return ctx, metadata.NewLeaseManager(db)
}

// newStore is containerd's own metadata store in a temp dir.
func newStore(t *testing.T) (context.Context, *metadata.DB) {
	dir := t.TempDir()
	cs, err := local.NewStore(filepath.Join(dir, "content"))
	assert.NilError(t, err)
	bdb, err := bolt.Open(filepath.Join(dir, "meta.db"), 0o644, nil)
	assert.NilError(t, err)
	t.Cleanup(func() { bdb.Close() })
	db := metadata.NewDB(bdb, cs, nil)
	ctx := namespaces.WithNamespace(context.Background(), "test")
	assert.NilError(t, db.Init(ctx))
	return ctx, db
}

// deadHolder leaves a lock as a holder that died would: its lease, no beat.
func deadHolder(t *testing.T, ctx context.Context, lm leases.Manager, labels map[string]string) {
	_, err := lm.Create(ctx, leases.WithID(lockID), leases.WithLabels(labels))
	assert.NilError(t, err)
}

func TestLockConflictNamesTheHolder(t *testing.T) {
	ctx, lm := newLeases(t)
	held, err := LockPrune(ctx, lm)
	assert.NilError(t, err)
	defer held.Release(ctx)

	_, err = LockPrune(ctx, lm)
	assert.Check(t, errdefs.IsConflict(err), "got %v", err)
	host, _ := os.Hostname()
	assert.Check(t, is.ErrorContains(err, "a prune operation is already running (by process "))
	assert.Check(t, is.ErrorContains(err, " on "+host+" since "))
}

func TestLockOfALiveHolderHolds(t *testing.T) {
	ctx, lm := newLeases(t)
	ttl := 200 * time.Millisecond
	held, err := LockPrune(ctx, lm, WithTTL(ttl))
	assert.NilError(t, err)
	// Longer than the ttl: the holder's heartbeats keep it.
	time.Sleep(3 * ttl)
	_, err = LockPrune(ctx, lm, WithTTL(ttl))
	assert.Check(t, errdefs.IsConflict(err), "got %v", err)

	assert.NilError(t, held.Release(ctx))
	again, err := LockPrune(ctx, lm, WithTTL(ttl))
	assert.NilError(t, err)
	assert.NilError(t, again.Release(ctx))
	all, err := lm.List(ctx)
	assert.NilError(t, err)
	assert.Check(t, is.Len(all, 0), "a release leaves no lease: %v", all)
}

func TestLockOfADeadHolderIsTakenOverAfterTheTTL(t *testing.T) {
	ctx, lm := newLeases(t)
	ttl := 200 * time.Millisecond
	deadHolder(t, ctx, lm, map[string]string{holderLabel: "elsewhere.boot.1.dead", ttlLabel: ttl.String()})

	_, err := LockPrune(ctx, lm, WithTTL(ttl))
	assert.Check(t, is.ErrorContains(err, "by process 1 on elsewhere"))
	time.Sleep(ttl + 50*time.Millisecond)
	l, err := LockPrune(ctx, lm, WithTTL(ttl))
	assert.NilError(t, err)
	assert.NilError(t, l.Release(ctx))
}

func TestLockOfTheSameFileIsTakenOverAtOnce(t *testing.T) {
	ctx, lm := newLeases(t)
	file := filepath.Join(t.TempDir(), "prune.lock")
	// A holder that died held the file lock: the kernel released it, and its
	// lease names the file.
	dead, err := lockFile(file, newHolder())
	assert.NilError(t, err)
	deadHolder(t, ctx, lm, map[string]string{holderLabel: "here.boot.1.dead", fileLabel: dead.id})
	dead.unlock()

	l, err := LockPrune(ctx, lm, WithLockFile(file))
	assert.NilError(t, err, "a fresh lock of a dead holder of the same file")
	assert.NilError(t, l.Release(ctx))
}

func TestLockFileHeldByALiveProcess(t *testing.T) {
	ctx, lm := newLeases(t)
	file := filepath.Join(t.TempDir(), "prune.lock")
	held, err := LockPrune(ctx, lm, WithLockFile(file))
	assert.NilError(t, err)
	defer held.Release(ctx)

	_, err = LockPrune(ctx, lm, WithLockFile(file))
	assert.Check(t, errdefs.IsConflict(err), "got %v", err)
	assert.Check(t, is.ErrorContains(err, "a prune operation is already running (by process "))
}

func TestLockFileThatCannotBeMadeFallsBackToTheLease(t *testing.T) {
	ctx, lm := newLeases(t)
	l, err := LockPrune(ctx, lm, WithLockFile(filepath.Join(t.TempDir(), "no", "such", "dir", "prune.lock")))
	assert.NilError(t, err)
	_, err = LockPrune(ctx, lm)
	assert.Check(t, errdefs.IsConflict(err), "the lease still excludes: %v", err)
	assert.NilError(t, l.Release(ctx))
}

func TestLockInAnExclusiveStoreIsTakenOver(t *testing.T) {
	ctx, lm := newLeases(t)
	deadHolder(t, ctx, lm, map[string]string{holderLabel: "here.boot.1.dead"})
	l, err := LockPrune(ctx, lm, Exclusive())
	assert.NilError(t, err)
	assert.NilError(t, l.Release(ctx))
}

func TestReleaseLeavesTheNextHoldersLock(t *testing.T) {
	ctx, lm := newLeases(t)
	first, err := LockPrune(ctx, lm)
	assert.NilError(t, err)
	// Taken over meanwhile, as after a ttl without beats.
	assert.NilError(t, dropLock(ctx, lm, first.holder.String()))
	deadHolder(t, ctx, lm, map[string]string{holderLabel: "next.boot.2.next"})

	assert.NilError(t, first.Release(ctx))
	held, err := getLease(ctx, lm, lockID)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(held.Labels[holderLabel], "next.boot.2.next"))
}

func TestTwoLockersAtOnce(t *testing.T) {
	ctx, lm := newLeases(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	locks := make([]*Lock, 2)
	for i := range 2 {
		wg.Go(func() { locks[i], errs[i] = LockPrune(ctx, lm) })
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		if err == nil {
			won++
			assert.NilError(t, locks[i].Release(ctx))
		} else {
			assert.Check(t, errdefs.IsConflict(err), "got %v", err)
		}
	}
	assert.Check(t, is.Equal(won, 1))
}

func TestLockOfALegacyHolderIsJudgedByTheLegacyRule(t *testing.T) {
	ctx, lm := newLeases(t)
	ttl := 100 * time.Millisecond
	// A release that did not beat: no ttl label.
	deadHolder(t, ctx, lm, map[string]string{holderLabel: "elsewhere.boot.1.old"})
	time.Sleep(2 * ttl)
	_, err := LockPrune(ctx, lm, WithTTL(ttl))
	assert.Check(t, errdefs.IsConflict(err), "a holder that never beats is not judged by its silence: %v", err)
}

func TestLockIsJudgedByTheHoldersTTL(t *testing.T) {
	ctx, lm := newLeases(t)
	deadHolder(t, ctx, lm, map[string]string{holderLabel: "elsewhere.boot.1.slow", ttlLabel: time.Hour.String()})
	time.Sleep(50 * time.Millisecond)
	_, err := LockPrune(ctx, lm, WithTTL(10*time.Millisecond))
	assert.Check(t, errdefs.IsConflict(err), "got %v", err)
}

func TestTakeoverIsGuarded(t *testing.T) {
	ctx, lm := newLeases(t)
	ttl := 100 * time.Millisecond
	deadHolder(t, ctx, lm, map[string]string{holderLabel: "elsewhere.boot.1.dead", ttlLabel: ttl.String()})
	time.Sleep(2 * ttl)
	// Another contender is taking over the same dead holder right now.
	guard, err := lm.Create(ctx, leases.WithID(takeoverPrefix+"dead"))
	assert.NilError(t, err)
	_, err = LockPrune(ctx, lm, WithTTL(ttl))
	assert.Check(t, errdefs.IsConflict(err), "got %v", err)
	held, err := getLease(ctx, lm, lockID)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(held.Labels[holderLabel], "elsewhere.boot.1.dead"), "the lock is left to the contender taking over")

	assert.NilError(t, lm.Delete(ctx, guard))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	locks := make([]*Lock, 4)
	for i := range errs {
		wg.Go(func() { locks[i], errs[i] = LockPrune(ctx, lm, WithTTL(ttl)) })
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		if err == nil {
			won++
			defer locks[i].Release(ctx)
		} else {
			assert.Check(t, errdefs.IsConflict(err), "got %v", err)
		}
	}
	assert.Check(t, is.Equal(won, 1), "contenders taking over one dead holder at once")
}

func TestLockLost(t *testing.T) {
	ctx, lm := newLeases(t)
	ttl := 100 * time.Millisecond
	l, err := LockPrune(ctx, lm, WithTTL(ttl))
	assert.NilError(t, err)
	defer l.Release(ctx)
	assert.Check(t, l.Err())
	// Another took it over, as after a stall longer than the ttl.
	assert.NilError(t, dropLock(ctx, lm, l.holder.String()))
	deadHolder(t, ctx, lm, map[string]string{holderLabel: "next.boot.2.next", ttlLabel: ttl.String()})
	time.Sleep(ttl)
	assert.Check(t, is.ErrorIs(l.Err(), ErrLockLost))
}

func TestParseHolder(t *testing.T) {
	h := Holder{Host: "node-1.example.com", Boot: "b00t", PID: 1, Nonce: "n0nce"}
	assert.Check(t, is.DeepEqual(ParseHolder(h.String()), h))
	assert.Check(t, is.DeepEqual(ParseHolder("garbage"), Holder{}))
	assert.Check(t, is.Equal(ParseHolder("garbage").Describe(), "an unknown process"))
}

// TestLockFileNeverFollowsAPlantedLink: a symlink another user planted at
// the lock file's path is not followed, so the file it points at is never
// truncated nor written; the lease alone still excludes other prunes.
func TestLockFileNeverFollowsAPlantedLink(t *testing.T) {
	ctx, lm := newLeases(t)
	dir := t.TempDir()
	victim, file := filepath.Join(dir, "victim"), filepath.Join(dir, "imgprune.lock")
	assert.NilError(t, os.WriteFile(victim, []byte("keep me"), 0o600))
	assert.NilError(t, os.Symlink(victim, file))

	held, err := LockPrune(ctx, lm, WithLockFile(file))
	assert.NilError(t, err)
	defer held.Release(ctx)

	data, err := os.ReadFile(victim)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(data), "keep me"))
	_, err = LockPrune(ctx, lm, WithLockFile(file))
	assert.Check(t, errdefs.IsConflict(err), "got %v", err)
}
