package testnode

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"golang.org/x/sync/errgroup"

	"github.com/imgprune/imgprune/internal/testimage"
)

// Registry is a private image registry (distribution's) on 127.0.0.1 that
// nodes pull from over plain HTTP.
type Registry struct {
	// Host is its address, 127.0.0.1:PORT: the first part of every image
	// name pushed to it.
	Host string
	cmd  *exec.Cmd
	dir  string
}

// StartRegistry starts a registry storing under dir, and waits until it
// answers.
func StartRegistry(dir string) (*Registry, error) {
	bin, err := Tool("registry")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	config := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), host)), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testnode: start registry: %w", err)
	}
	r := &Registry{Host: host, cmd: cmd, dir: dir}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			r.Stop()
			log, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			return nil, fmt.Errorf("testnode: registry on %s did not answer in 30s: %v\n%s", host, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort is a TCP port on 127.0.0.1 free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop stops the registry by its PID. Its storage stays in its folder.
func (r *Registry) Stop() error {
	if r == nil || r.cmd == nil || r.cmd.Process == nil {
		return nil
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
	r.cmd = nil
	return nil
}

// Push pushes img to the registry as r.Host/repo:tag, children first.
func (r *Registry) Push(ctx context.Context, repoTag string, img testimage.Image) error {
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchAllHosts)),
	})
	ref := r.Host + "/" + repoTag
	pusher, err := resolver.Pusher(ctx, ref)
	if err != nil {
		return fmt.Errorf("testnode: pusher for %s: %w", ref, err)
	}
	blobs := img.Blobs()
	// The manifest (blobs[0]) goes last: the registry wants what it names.
	for _, b := range append(blobs[1:], blobs[0]) {
		w, err := pusher.Push(ctx, b.Desc)
		if errdefs.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("testnode: push %s of %s: %w", b.Desc.Digest, ref, err)
		}
		if _, err := w.Write(b.Data); err != nil {
			w.Close()
			return fmt.Errorf("testnode: push %s of %s: %w", b.Desc.Digest, ref, err)
		}
		if err := w.Commit(ctx, b.Desc.Size, b.Desc.Digest); err != nil && !errdefs.IsAlreadyExists(err) {
			w.Close()
			return fmt.Errorf("testnode: commit %s of %s: %w", b.Desc.Digest, ref, err)
		}
		w.Close()
	}
	return nil
}

// PushAll pushes every image under its repo:tag, a few at a time.
func (r *Registry) PushAll(ctx context.Context, imgs map[string]testimage.Image) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for repoTag, img := range imgs {
		g.Go(func() error { return r.Push(ctx, repoTag, img) })
	}
	return g.Wait()
}

// hostsFile is the hosts.toml that has containerd pull from r over plain
// HTTP.
func (r *Registry) hostsFile() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", r.Host, r.Host)
	return b.Bytes()
}
