package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// The environment of a process that holds the prune lock until killed:
// the test binary run again (see TestMain).
const (
	holdLockEnv = "IMGPRUNE_TEST_HOLD_LOCK"
	holdNSEnv   = "IMGPRUNE_TEST_HOLD_NAMESPACE"
	holdFileEnv = "IMGPRUNE_TEST_HOLD_FILE"
)

// holdLock takes the prune lock and blocks; it never returns unless it
// fails.
func holdLock() int {
	c, err := client.New(os.Getenv(holdLockEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := namespaces.WithNamespace(context.Background(), os.Getenv(holdNSEnv))
	var opts []imgleases.LockOpt
	if file := os.Getenv(holdFileEnv); file != "" {
		opts = append(opts, imgleases.WithLockFile(file))
	}
	if _, err := imgleases.LockPrune(ctx, c.LeasesService(), opts...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	select {}
}

// TestPruneLockOfAKilledHolder: a prune SIGKILLed while it holds the lock as
// PID 1 of its own PID namespace (an OOM-killed DaemonSet pod) keeps the
// next prune from the host out for less than 30 s: not at all when both lock
// the file beside the socket, for the lock's ttl when it ran elsewhere.
func TestPruneLockOfAKilledHolder(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sameFile bool
		within   time.Duration
	}{
		{name: "same lock file", sameFile: true, within: time.Second},
		{name: "elsewhere, its heartbeat stops", within: 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			svc := e.svc
			file := ""
			if tc.sameFile {
				file = filepath.Join(filepath.Dir(daemon.Address), "imgprune-prune."+e.ns+".lock")
				svc = imgsvc.NewFromClient(e.client, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter), imgsvc.WithPruneLockFile(file))
			}
			holder := startHolder(t, e.ns, file)
			host, _ := os.Hostname()

			_, err := svc.Prune(e.ctx, plan.Filters{DanglingOnly: true})
			assert.Check(t, errdefs.IsConflict(err), "got %v", err)
			assert.Check(t, is.ErrorContains(err, "by process 1 on "+host), "the holder is PID 1 of its namespace")

			assert.NilError(t, syscall.Kill(-holder.Process.Pid, syscall.SIGKILL))
			holder.Wait()
			start := time.Now()
			for {
				_, err = svc.Prune(e.ctx, plan.Filters{DanglingOnly: true})
				if err == nil || !errdefs.IsConflict(err) || time.Since(start) > 40*time.Second {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			took := time.Since(start)
			assert.NilError(t, err)
			t.Logf("the next prune went ahead %v after the holder was killed", took.Round(time.Millisecond))
			assert.Check(t, took < tc.within, "blocked for %v", took)
		})
	}
}

// startHolder runs a process that takes the prune lock of ns as PID 1 of a
// PID namespace of its own, and waits until it holds it.
func startHolder(t *testing.T, ns, file string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdLockEnv+"="+daemon.Address, holdNSEnv+"="+ns, holdFileEnv+"="+file)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	assert.NilError(t, err)
	assert.NilError(t, cmd.Start())
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	locked := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		locked <- strings.TrimSpace(line) == "locked"
	}()
	select {
	case ok := <-locked:
		assert.Assert(t, ok, "the holder did not take the lock")
	case <-time.After(30 * time.Second):
		t.Fatal("the holder did not take the lock within 30 s")
	}
	return cmd
}

// TestTwoPrunesStartedTogether: two prunes of one namespace started at once,
// from two processes of this host or from elsewhere, give one conflict.
func TestTwoPrunesStartedTogether(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lockFile bool
	}{
		{name: "on this host", lockFile: true},
		{name: "from elsewhere"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var opts []imgleases.LockOpt
			if tc.lockFile {
				opts = append(opts, imgleases.WithLockFile(filepath.Join(filepath.Dir(daemon.Address), "imgprune-prune."+e.ns+".lock")))
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			locks := make([]*imgleases.Lock, 2)
			errs := make([]error, 2)
			for i := range 2 {
				wg.Go(func() {
					<-start
					locks[i], errs[i] = imgleases.LockPrune(e.nsCtx(), e.client.LeasesService(), opts...)
				})
			}
			close(start)
			wg.Wait()
			won := 0
			for i, err := range errs {
				if err == nil {
					won++
					assert.NilError(t, locks[i].Release(e.nsCtx()))
					continue
				}
				assert.Check(t, errdefs.IsConflict(err), "got %v", err)
				assert.Check(t, is.ErrorContains(err, "a prune operation is already running (by "))
			}
			assert.Check(t, is.Equal(won, 1))
		})
	}
}

// stealingStore hands the prune lock to another holder after the prune's
// first deletion, as a contender would after the prune stalled past its
// ttl, and waits for the prune's next heartbeat.
type stealingStore struct {
	images.Store
	e    *env
	wait time.Duration
	once *sync.Once
}

func (s stealingStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	err := s.Store.Delete(ctx, name, opts...)
	s.once.Do(func() {
		lm := s.e.client.LeasesService()
		held, lerr := lm.List(s.e.nsCtx(), "id==imgprune.prune")
		assert.NilError(s.e.t, lerr)
		assert.Assert(s.e.t, is.Len(held, 1))
		assert.NilError(s.e.t, lm.Delete(s.e.nsCtx(), held[0]))
		_, lerr = lm.Create(s.e.nsCtx(), leases.WithID("imgprune.prune"), leases.WithLabels(map[string]string{"org.imgprune.lock.holder": "other.boot.7.thief", "org.imgprune.lock.ttl": "1h"}))
		assert.NilError(s.e.t, lerr)
		time.Sleep(s.wait)
	})
	return err
}

// TestPruneThatLostItsLockLetsNoContentGo: a prune whose lock another took
// over while it ran removes no dangling record and runs no collection.
func TestPruneThatLostItsLockLetsNoContentGo(t *testing.T) {
	e := newEnv(t)
	img := newImage(t, "a", "example.com/a:1")
	e.write(img)
	e.prune(nil) // adopts the target: it has its dangling record
	ttl := 200 * time.Millisecond
	stores := store.FromClient(e.client)
	stores.Images = stealingStore{Store: stores.Images, e: e, wait: ttl, once: &sync.Once{}}
	svc := imgsvc.New(stores, e.ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter), imgsvc.WithPruneLockTTL(ttl))

	rep, err := svc.Prune(e.ctx, plan.Filters{})
	assert.NilError(t, err)

	assert.Check(t, is.ErrorContains(rep.Err(), "1 record left for the next prune"))
	assert.Check(t, is.DeepEqual(e.names(), map[string]digest.Digest{"moby-dangling@" + img.Target.Digest.String(): img.Target.Digest}))
	assert.Check(t, e.hasContent(img))
	var names []string
	for _, f := range rep.Failures {
		names = append(names, f.Name)
	}
	assert.Check(t, is.Contains(names, "prune lock"))
	assert.Check(t, is.Contains(names, "garbage collection"))
}
