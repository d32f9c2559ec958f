package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/spf13/cobra"

	"github.com/imgprune/imgprune/daemon/server"
)

type serveOptions struct {
	socket   string
	group    string
	upstream string
}

func newServeCommand(g *globalOptions) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve --socket PATH [--upstream unix:///var/run/docker.sock]",
		Short: "Serve the Docker Engine API for images, and containers as records, on a unix socket",
		Long: `Serve the Docker Engine API on a unix socket, over the images of the
namespace: the docker CLI (DOCKER_HOST=unix://PATH) and moby's Go client work
against it. Images can be listed, inspected, tagged, removed, loaded and
pruned; containers are records only, which keep their images as running ones
would.

With --upstream, it stands in front of a Docker Engine instead: it answers
POST /images/prune with imgprune's prune over --namespace (the engine's
containerd namespace, moby by default), keeping the images of the engine's
containers, and passes every other request through to the engine unchanged.

On its own it keeps the store as a Docker Engine does, a dangling record per
image in any namespace (--dangling-records=false for a store nerdctl or ctr
share); in front of an engine, as --namespace has it.

The socket is made with mode 0660, owned by root and by --group. On SIGTERM or
SIGINT it stops accepting, interrupts a running prune cleanly (its partial
report is sent) and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), g, o)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&o.socket, "socket", "", "Path of the unix socket to serve on (required)")
	flags.StringVar(&o.group, "group", "", "Group that may use the socket (name or GID); root's when empty")
	flags.StringVar(&o.upstream, "upstream", "", "Docker Engine to pass every request but image prune through to (unix:///var/run/docker.sock, tcp://host:port); its containers keep their images")
	cmd.MarkFlagRequired("socket")
	return cmd
}

func runServe(ctx context.Context, g *globalOptions, o serveOptions) error {
	if g.offline {
		// An offline store is this process's alone, and a prune over it
		// relies on it: containers made through the API meanwhile would not
		// be seen.
		return fmt.Errorf("invalid --offline: serve needs containerd running; use its socket (--address)")
	}
	gid := -1
	if o.group != "" {
		var err error
		if gid, err = lookupGroup(o.group); err != nil {
			return err
		}
	}
	if o.upstream != "" {
		// The engine's containers keep their images.
		withEngine := *g
		withEngine.dockerHost = o.upstream
		g = &withEngine
	} else if !g.danglingRecords.set {
		// Standing in for a Docker Engine, its store is one: a dangling
		// record per image, whatever the namespace.
		asEngine := *g
		asEngine.danglingRecords = optionalBool{value: true, set: true}
		g = &asEngine
	}
	svc, closer, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer closer.Close()
	srv := server.New(svc, server.WithVersion(buildVersion()))
	var handler http.Handler = srv
	if o.upstream != "" {
		if handler, err = server.NewProxy(srv, o.upstream); err != nil {
			return err
		}
	}
	l, err := listenUnix(o.socket, gid)
	if err != nil {
		return err
	}
	defer os.Remove(o.socket)

	stop, cancel := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	log.G(ctx).WithField("socket", o.socket).WithField("namespace", svc.Namespace()).Info("serving the Docker Engine API")
	err = server.Serve(stop, l, handler, time.Minute)
	log.G(ctx).Info("stopped")
	return err
}

// listenUnix listens on a unix socket at path, mode 0660, owned by root
// and gid (root's group when -1). A socket file left by a server that is
// gone is replaced; one a server answers on is not.
func listenUnix(path string, gid int) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen on %s: a file that is not a socket is there", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on %s: another server answers on it", path)
		}
		os.Remove(path)
	}
	old := syscall.Umask(0o117)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chown(path, 0, max(gid, 0)); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return l, nil
}

// lookupGroup finds a group by name or GID.
func lookupGroup(name string) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil && gid >= 0 {
		return gid, nil
	}
	grp, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("invalid --group %q: %w", name, err)
	}
	return strconv.Atoi(grp.Gid)
}
