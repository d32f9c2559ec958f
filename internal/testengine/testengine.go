// Package testengine runs a real Docker Engine for tests and benchmarks: a
// dockerd with the containerd image store (moby's), on a private containerd
// (internal/testctrd), every file of both under one folder. The Engine runs
// containers with the runc and containerd's runc shim of `make node-deps`;
// dockerd comes from `make e2e-deps` (hack/install-e2e.sh). All of them are
// in <repo>/_output/e2e/bin.
//
// Stop it keeping its store (StopKeepingStore) to start it again on the
// same folder (Start), or on a copy of it at the same path: dockerd writes
// absolute paths under its data root into each container's configuration.
package testengine

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/imgprune/imgprune/internal/testctrd"
)

// Namespace is the containerd namespace of the Engine's images.
const Namespace = "moby"

// daemonJSON turns on the containerd image store.
const daemonJSON = `{"features":{"containerd-snapshotter":true}}`

// Engine is a dockerd on a private containerd, all of their files under
// Dir: the containerd's in Dir/ctrd, dockerd's data root in Dir/data.
type Engine struct {
	Dir string
	// Sock is the path of the Engine API's unix socket.
	Sock string
	// Ctrd is the containerd the Engine keeps its images and containers in.
	Ctrd *testctrd.Daemon

	bin         string
	stopDockerd func()
}

// Bin is the folder of dockerd, runc and the shim. It fails when dockerd is
// not built.
func Bin() (string, error) {
	repo, err := testctrd.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(repo, "_output", "e2e", "bin")
	if _, err := os.Stat(filepath.Join(bin, "dockerd")); err != nil {
		return "", fmt.Errorf("testengine: no dockerd in %s: run make e2e-deps (hack/install-e2e.sh builds it)", bin)
	}
	return bin, nil
}

// Start starts an Engine under dir (short: unix socket paths are limited):
// a new one, or on the store an Engine stopped with StopKeepingStore left
// there. It puts Bin first on this process's PATH, where containerd finds
// its shim and dockerd its runc.
func Start(dir string) (*Engine, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	if path := os.Getenv("PATH"); !strings.HasPrefix(path, bin+string(os.PathListSeparator)) {
		os.Setenv("PATH", bin+string(os.PathListSeparator)+path)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte(daemonJSON), 0o644); err != nil {
		return nil, err
	}
	e := &Engine{Dir: dir, Sock: filepath.Join(dir, "docker.sock"), bin: bin}
	if err := e.start(); err != nil {
		return nil, err
	}
	return e, nil
}

// Host is the Engine's address as DOCKER_HOST and --docker-host take it.
func (e *Engine) Host() string { return "unix://" + e.Sock }

// start starts containerd, on the store it had if it ran before, and the
// dockerd.
func (e *Engine) start() error {
	ctrd, err := testctrd.Start(filepath.Join(e.Dir, "ctrd"))
	if err != nil {
		return err
	}
	e.Ctrd = ctrd
	// The engine runs containers unconfined: the tests' programs need no
	// profile. It gives running containers a second to stop.
	e.stopDockerd, err = Serve(e.Sock, filepath.Join(e.Dir, "dockerd.log"), filepath.Join(e.bin, "dockerd"),
		"--config-file", filepath.Join(e.Dir, "daemon.json"), "--data-root", filepath.Join(e.Dir, "data"),
		"--exec-root", filepath.Join(e.Dir, "exec"), "--pidfile", filepath.Join(e.Dir, "dockerd.pid"),
		"-H", e.Host(), "--containerd", ctrd.Address,
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--userland-proxy=false",
		"--seccomp-profile=unconfined", "--shutdown-timeout", "1")
	if err != nil {
		ctrd.Stop()
		return fmt.Errorf("testengine: start dockerd: %w", err)
	}
	return nil
}

// Restart starts an Engine stopped with StopKeepingStore again, on its store.
func (e *Engine) Restart() error { return e.start() }

// StopKeepingStore stops the dockerd and the containerd, keeping both
// stores in Dir for Restart, for Start on a copy, or to copy.
func (e *Engine) StopKeepingStore() error {
	e.stopDockerd()
	return e.Ctrd.StopKeepingStore()
}

// Stop stops both and removes containerd's folder (unless KEEP is set, as
// for testctrd); the caller removes Dir.
func (e *Engine) Stop() error {
	e.stopDockerd()
	return e.Ctrd.Stop()
}

// Serve starts a server that listens on sock, logging to logPath, and
// waits until it answers; the returned func stops it with SIGTERM (SIGKILL
// after 30 s).
func Serve(sock, logPath, bin string, args ...string) (func(), error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
	}
	if err := listening(sock, exited); err != nil {
		if !errors.Is(err, errExited) {
			stop()
		}
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%s: %w: %s", filepath.Base(bin), err, log)
	}
	return stop, nil
}

var errExited = errors.New("exited")

// listening waits a minute at most until sock accepts a connection, or the
// server exits.
func listening(sock string, exited <-chan error) error {
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("%w: %v", errExited, err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("does not listen on %s", sock)
		}
	}
}
