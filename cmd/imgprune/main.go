// Command imgprune prunes a containerd image store the way `docker image
// prune` should.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	dockerclient "github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	"github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/store/embedded"
)

// globalOptions locate the containerd store to work on.
type globalOptions struct {
	address     string
	namespace   string
	snapshotter string
	root        string
	offline     bool
	dockerHost  string
	// danglingRecords overrides where the store keeps a dangling record
	// per target (by default, namespace moby only).
	danglingRecords optionalBool
	// phaseTimeout bounds each phase of a prune, removal or check.
	phaseTimeout time.Duration
}

// optionalBool is a boolean flag that may be left unset.
type optionalBool struct{ value, set bool }

func (b *optionalBool) Set(v string) error {
	on, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("use true or false")
	}
	b.value, b.set = on, true
	return nil
}

func (b *optionalBool) String() string {
	if !b.set {
		return "auto"
	}
	return strconv.FormatBool(b.value)
}

func (b *optionalBool) Type() string     { return "bool" }
func (b *optionalBool) IsBoolFlag() bool { return true }

// defaultMemoryLimit is the soft limit of the heap unless GOMEMLIMIT sets
// one: the garbage of listing 100,000 records and their blobs would take
// the peak to 600 MiB, where a collector that works harder near the limit
// keeps it under 480 MiB in the same time. Below it the collector runs as
// GOGC says.
const defaultMemoryLimit = 450 << 20

func main() {
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal stops the work and lets it report what it did; a
		// second one kills the command as usual.
		<-ctx.Done()
		stop()
	}()
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		var exit exitError
		if !errors.As(err, &exit) {
			fmt.Fprintln(os.Stderr, "imgprune:", err)
		}
		os.Exit(1)
	}
}

// exitError fails the command after it has said what went wrong itself.
type exitError struct{ error }

func newRootCommand() *cobra.Command {
	opts := &globalOptions{}
	root := &cobra.Command{
		Use:           "imgprune",
		Short:         "Prune a containerd image store safely",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	flags := root.PersistentFlags()
	flags.StringVar(&opts.address, "address", envOr("CONTAINERD_ADDRESS", "/run/containerd/containerd.sock"), "containerd socket address (env CONTAINERD_ADDRESS)")
	flags.StringVarP(&opts.namespace, "namespace", "n", envOr("CONTAINERD_NAMESPACE", "moby"), "containerd namespace (env CONTAINERD_NAMESPACE)")
	flags.StringVar(&opts.root, "root", envOr("CONTAINERD_ROOT", "/var/lib/containerd"), "containerd root directory, to check that freed blobs left the disk when the daemon runs on this host (env CONTAINERD_ROOT)")
	flags.StringVar(&opts.dockerHost, "docker-host", os.Getenv("DOCKER_HOST"), `Docker Engine whose containers also use the images (env DOCKER_HOST); by default `+defaultDockerSocket+` when it exists; "none" for no engine`)
	flags.BoolVar(&opts.offline, "offline", false, "open the store under --root in-process instead of through the socket, for hosts where containerd is stopped or cannot start")
	flags.DurationVar(&opts.phaseTimeout, "phase-timeout", images.DefaultPhaseTimeout, "how long each phase of a prune, rmi or check (listing, deleting, collecting, accounting) may take before it fails: a daemon that stops answering never hangs imgprune")
	flags.Var(&opts.danglingRecords, "dangling-records", "keep a moby-dangling@ record per image as its refcount, as a Docker Engine's store does (auto: only in namespace moby; elsewhere the names are the refcount, as nerdctl, ctr and CRI have it)")
	flags.Lookup("dangling-records").NoOptDefVal = "true"
	flags.StringVar(&opts.snapshotter, "snapshotter", envOr("CONTAINERD_SNAPSHOTTER", images.DefaultSnapshotter), "snapshotter to unpack into (env CONTAINERD_SNAPSHOTTER)")
	root.AddCommand(
		newPruneCommand(opts),
		newImagesCommand(opts),
		newLoadCommand(opts),
		newTagCommand(opts),
		newCheckCommand(opts),
		newServeCommand(opts),
		newWatchCommand(opts),
		newVersionCommand(),
	)
	return root
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

// connect opens the image service of the chosen namespace: through the
// daemon's socket, or in-process with --offline. The caller closes the
// returned closer. more adds a command's own options.
func (o *globalOptions) connect(ctx context.Context, more ...images.Opt) (*images.Service, io.Closer, error) {
	if o.phaseTimeout <= 0 {
		return nil, nil, fmt.Errorf("invalid --phase-timeout %v: use a duration above 0", o.phaseTimeout)
	}
	opts := append([]images.Opt{images.WithSnapshotter(o.snapshotter), images.WithPhaseTimeout(o.phaseTimeout)}, more...)
	if o.danglingRecords.set {
		opts = append(opts, images.WithDanglingRecords(o.danglingRecords.value))
	}
	var open closers
	docker, err := o.docker()
	if err != nil {
		return nil, nil, err
	}
	if docker != nil {
		opts = append(opts, images.WithContainerSource(imgcontainers.Docker{Client: docker}))
		open = append(open, docker)
	}
	if o.offline {
		e, err := embedded.Open(ctx, o.root)
		if err != nil {
			open.Close()
			return nil, nil, err
		}
		return images.NewOffline(e.Stores(), e.Root(), o.namespace, opts...), append(open, e), nil
	}
	c, err := client.New(o.address, client.WithDefaultNamespace(o.namespace))
	if err != nil {
		open.Close()
		return nil, nil, fmt.Errorf("connect to containerd at %s: %w", o.address, err)
	}
	opts = append(opts, images.WithContainerdRoot(o.root))
	if path := o.pruneLockFile(); path != "" {
		opts = append(opts, images.WithPruneLockFile(path))
	}
	return images.NewFromClient(c, o.namespace, opts...), append(open, c), nil
}

// pruneLockFile is the file every prune of the namespace on this host
// locks: beside the daemon's socket, which a DaemonSet pod mounts too. It is
// "" when the socket's folder is not this host's to write (an address that
// is not a path, a read-only mount): the lock's heartbeat then does alone.
func (o *globalOptions) pruneLockFile() string {
	path := strings.TrimPrefix(o.address, "unix://")
	if !filepath.IsAbs(path) {
		return ""
	}
	dir := filepath.Dir(path)
	if unix.Access(dir, unix.W_OK) != nil {
		return ""
	}
	return filepath.Join(dir, "imgprune-prune."+o.namespace+".lock")
}

// closers close together.
type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

const defaultDockerSocket = "/var/run/docker.sock"

// docker returns the client of the Docker Engine whose containers count, or
// nil when there is none. A Docker host's engine knows containers containerd
// does not (created and stopped ones): its images are not pruned blind.
// engineCallTimeout bounds each call to a Docker Engine.
const engineCallTimeout = time.Minute

func (o *globalOptions) docker() (*dockerclient.Client, error) {
	host := o.dockerHost
	switch {
	case host == "none":
		return nil, nil
	case host == "":
		if _, err := os.Stat(defaultDockerSocket); err != nil {
			return nil, nil
		}
		host = "unix://" + defaultDockerSocket
	}
	// Each call to the Engine is bounded: one that stops answering fails
	// the listing, and nothing changes.
	c, err := dockerclient.New(dockerclient.WithHost(host), dockerclient.WithTimeout(engineCallTimeout))
	if err != nil {
		return nil, fmt.Errorf("docker host %s: %w", host, err)
	}
	return c, nil
}
