//go:build e2e

package e2e

import (
	"os"
	"path/filepath"

	"github.com/imgprune/imgprune/internal/testctrd"
)

// engine is a Docker Engine with the containerd image store on a private
// containerd, all of its files under dir.
type engine struct {
	bin, dir, sock string
	ctrd           *testctrd.Daemon
	stopDockerd    func()
}

// startEngine starts a containerd under dir and a dockerd on it, with the
// programs in bin.
func startEngine(bin, dir string) (*engine, error) {
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte(`{"features":{"containerd-snapshotter":true}}`), 0o644); err != nil {
		return nil, err
	}
	e := &engine{bin: bin, dir: dir, sock: filepath.Join(dir, "docker.sock")}
	if err := e.start(); err != nil {
		return nil, err
	}
	return e, nil
}

// start starts containerd, on the store it had if it ran before, and the
// dockerd.
func (e *engine) start() error {
	ctrd, err := testctrd.Start(filepath.Join(e.dir, "ctrd"))
	if err != nil {
		return err
	}
	e.ctrd = ctrd
	// The engine runs containers unconfined: the tests' programs need no
	// profile. It gives running containers a second to stop.
	e.stopDockerd, err = start(e.sock, filepath.Join(e.dir, "dockerd.log"), filepath.Join(e.bin, "dockerd"),
		"--config-file", filepath.Join(e.dir, "daemon.json"), "--data-root", filepath.Join(e.dir, "data"),
		"--exec-root", filepath.Join(e.dir, "exec"), "--pidfile", filepath.Join(e.dir, "dockerd.pid"),
		"-H", "unix://"+e.sock, "--containerd", ctrd.Address,
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--userland-proxy=false",
		"--seccomp-profile=unconfined", "--shutdown-timeout", "1")
	if err != nil {
		ctrd.Stop()
		return err
	}
	return nil
}

// stopKeepingStore stops the dockerd and the containerd, keeping their
// stores for start.
func (e *engine) stopKeepingStore() error {
	e.stopDockerd()
	return e.ctrd.StopKeepingStore()
}

// stop stops both and removes containerd's files.
func (e *engine) stop() {
	e.stopDockerd()
	e.ctrd.Stop()
}
