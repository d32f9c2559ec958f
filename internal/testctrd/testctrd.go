// Package testctrd starts and stops a private, real containerd daemon for
// tests, using hack/containerd-up.sh and hack/containerd-down.sh.
//
// The daemon binary must already be installed (`make containerd`); Start
// fails instead of skipping when it is missing. Typical use in TestMain:
//
//	dir, err := os.MkdirTemp("", "ctrd") // short: unix sockets are limited to 108 bytes
//	...
//	d, err := testctrd.Start(dir)
//	if err != nil {
//		fmt.Fprintln(os.Stderr, err)
//		os.Exit(1)
//	}
//	code := m.Run()
//	if err := d.Stop(); err != nil {
//		fmt.Fprintln(os.Stderr, err)
//	}
//	os.Exit(code)
//
// Setting KEEP=1 in the environment keeps the daemon directory (with its
// log and store) after Stop for inspection.
//
// Start(dir, WithCRI(sandboxImage)) starts a Kubernetes node's containerd
// instead: its CRI plugin serves on the same socket (CRIEndpoint), runs pods
// with the runc and shim of `make node-deps` and pulls through the hosts
// files that the caller writes under RegistryHostsDir. See
// hack/containerd-up.sh.
package testctrd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
)

// BinaryEnv names the environment variable that overrides the containerd
// binary, which defaults to <repo>/_output/bin/containerd.
const BinaryEnv = "IMGPRUNE_CONTAINERD_BIN"

// RuncEnv names the environment variable that overrides the runc binary of
// a daemon started WithCRI, which defaults to <repo>/_output/e2e/bin/runc.
const RuncEnv = "IMGPRUNE_RUNC"

// The environment of hack/containerd-up.sh that WithCRI sets.
const (
	criEnv          = "IMGPRUNE_CRI"
	sandboxImageEnv = "IMGPRUNE_SANDBOX_IMAGE"
	gcEnv           = "IMGPRUNE_GC"
	logLevelEnv     = "CONTAINERD_LOG_LEVEL"
)

// scriptTimeout bounds each run of the up/down scripts; the scripts have
// their own, shorter timeouts (30 s to boot, 15 s to stop).
const scriptTimeout = 2 * time.Minute

// Daemon is a private containerd started for tests.
type Daemon struct {
	// Address is the path of the daemon's gRPC unix socket.
	Address string
	// Dir holds the daemon's config, root, state, socket, log and PID file.
	Dir string
	// PID is the daemon's process ID.
	PID int
	// CRI tells whether the daemon was started WithCRI.
	CRI bool

	repo string
}

// Option configures Start.
type Option func(*options)

type options struct {
	cri          bool
	sandboxImage string
	// env are the script's settings an option gives, over the process's.
	env []string
}

// WithOwnCollections keeps containerd's own collection schedule, as in
// production, whatever $IMGPRUNE_GC says (hack/containerd-up.sh).
func WithOwnCollections() Option {
	return func(o *options) { o.env = append(o.env, gcEnv+"=default") }
}

// WithTraceLog makes the daemon log at trace level: among others, how long
// each collection took.
func WithTraceLog() Option {
	return func(o *options) { o.env = append(o.env, logLevelEnv+"=trace") }
}

// WithCRI enables containerd's CRI plugin, so that the daemon is a
// Kubernetes node's runtime and image service (crictl, a kubelet) on
// CRIEndpoint. sandboxImage is the pod sandbox (pause) image: pinned, and
// pulled for the first pod unless it is already in namespace k8s.io
// (nothing can be pulled from the internet here: push the project's own,
// hack/pause, to a local registry, or import it). The runc and
// containerd-shim-runc-v2 of `make node-deps` must be in
// <repo>/_output/e2e/bin ($IMGPRUNE_RUNC overrides runc).
func WithCRI(sandboxImage string) Option {
	return func(o *options) {
		o.cri = true
		o.sandboxImage = sandboxImage
	}
}

// RepoRoot walks up from the working directory to the directory that
// contains go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testctrd: no go.mod found in the working directory or its parents")
		}
		dir = parent
	}
}

// Binary returns the containerd binary that Start uses: $IMGPRUNE_CONTAINERD_BIN
// if set, else <repo>/_output/bin/containerd. It fails when the file is
// missing or not executable.
func Binary() (string, error) {
	bin := os.Getenv(BinaryEnv)
	if bin == "" {
		repo, err := RepoRoot()
		if err != nil {
			return "", err
		}
		bin = filepath.Join(repo, "_output", "bin", "containerd")
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(bin)
	if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("testctrd: containerd binary %s is missing or not executable: run `make containerd` (or set %s)", bin, BinaryEnv)
	}
	return bin, nil
}

// Start starts a private containerd with all of its files under dir (created
// if needed) and waits until it has booted. dir must be short enough for
// unix socket paths (use os.MkdirTemp("", "ctrd")). The caller must call
// Stop, which also removes dir. Without options the daemon only manages an
// image store (no CRI, no runtime).
func Start(dir string, opts ...Option) (*Daemon, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.cri && o.sandboxImage == "" {
		return nil, errors.New("testctrd: WithCRI needs a sandbox image")
	}
	repo, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, errors.New("testctrd: empty daemon directory")
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	env := []string{BinaryEnv + "=" + bin, criEnv + "=", sandboxImageEnv + "="}
	if o.cri {
		env = append(env, criEnv+"=1", sandboxImageEnv+"="+o.sandboxImage)
	}
	env = append(env, o.env...)
	// The script prints the resolved socket path (symlinks evaluated).
	out, err := runScript(repo, "containerd-up.sh", dir, env...)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	sock := strings.TrimSpace(lines[len(lines)-1])
	d := &Daemon{Address: sock, Dir: filepath.Dir(sock), CRI: o.cri, repo: repo}
	pid, err := os.ReadFile(filepath.Join(d.Dir, "containerd.pid"))
	if err == nil {
		d.PID, err = strconv.Atoi(strings.TrimSpace(string(pid)))
	}
	if err != nil {
		_ = d.Stop()
		return nil, fmt.Errorf("testctrd: reading daemon PID: %w", err)
	}
	return d, nil
}

// Stop stops the daemon, unmounts whatever is left mounted under Dir and
// removes Dir (unless KEEP is set in the environment). It is safe to call
// more than once and on a nil Daemon.
func (d *Daemon) Stop() error {
	if d == nil || d.Dir == "" {
		return nil
	}
	repo := d.repo
	if repo == "" {
		var err error
		if repo, err = RepoRoot(); err != nil {
			return err
		}
	}
	_, err := runScript(repo, "containerd-down.sh", d.Dir)
	return err
}

// StopKeepingStore stops the daemon as Stop does, but keeps Dir, its store
// with it, whatever KEEP says: for Start to run on it again, or to copy.
func (d *Daemon) StopKeepingStore() error {
	repo, err := RepoRoot()
	if err != nil {
		return err
	}
	_, err = runScript(repo, "containerd-down.sh", d.Dir, "KEEP=1")
	return err
}

// Client returns a client connected to the daemon, after checking that the
// daemon answers within ctx. The caller must Close it.
func (d *Daemon) Client(ctx context.Context, opts ...client.Opt) (*client.Client, error) {
	c, err := client.New(d.Address, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := c.Version(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("testctrd: containerd at %s does not answer: %w", d.Address, err)
	}
	return c, nil
}

// CRIEndpoint returns the daemon's CRI runtime and image endpoint, for
// crictl's --runtime-endpoint and --image-endpoint or a CRI client:
// unix:// and the gRPC socket. It is served only when the daemon was
// started WithCRI.
func (d *Daemon) CRIEndpoint() string {
	return "unix://" + d.Address
}

// RegistryHostsDir returns the CRI plugin's registry hosts configuration
// directory (config_path): write HOST[:PORT]/hosts.toml there, e.g. for a
// plain-HTTP registry on 127.0.0.1:5000, 127.0.0.1:5000/hosts.toml with
//
//	server = "http://127.0.0.1:5000"
//	[host."http://127.0.0.1:5000"]
//	  capabilities = ["pull", "resolve"]
//
// It is read at each pull.
func (d *Daemon) RegistryHostsDir() string {
	return filepath.Join(d.Dir, "certs.d")
}

// LogPath returns the path of the daemon's log file.
func (d *Daemon) LogPath() string {
	return filepath.Join(d.Dir, "containerd.log")
}

func runScript(repo, script, dir string, env ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	path := filepath.Join(repo, "hack", script)
	cmd := exec.CommandContext(ctx, "bash", path, dir)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("testctrd: hack/%s %s: %w\n%s%s", script, dir, err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// Kill kills the daemon with SIGKILL, as a crash would, and waits until it
// is gone. Dir stays as it was: Start the daemon again on it.
func (d *Daemon) Kill() error {
	if err := syscall.Kill(d.PID, syscall.SIGKILL); err != nil {
		return fmt.Errorf("testctrd: kill containerd %d: %w", d.PID, err)
	}
	deadline := time.Now().Add(scriptTimeout)
	for time.Now().Before(deadline) {
		// The daemon is no child of this process: init reaps it, or, where
		// it does not, it stays a zombie.
		if err := syscall.Kill(d.PID, 0); errors.Is(err, syscall.ESRCH) || isZombie(d.PID) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("testctrd: containerd %d still runs after SIGKILL", d.PID)
}

func isZombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command, which is in parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z")
}
