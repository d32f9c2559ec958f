package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/daemon/watch"
	"github.com/imgprune/imgprune/pkg/metrics"
)

type watchOptions struct {
	interval    time.Duration
	high, low   string
	filters     []string
	keepLast    int
	metricsFile string
	listen      string
	maxPrune    time.Duration
}

func newWatchCommand(g *globalOptions) *cobra.Command {
	var o watchOptions
	cmd := &cobra.Command{
		Use:   "watch [OPTIONS]",
		Short: "Stamp images' last use as containers are made, and prune least recently used images when the disk fills",
		Long: `Watch the namespace for as long as it runs, as a host's service (a systemd
unit, a DaemonSet pod):

- as containerd reports containers made and image records made or changed,
  record the last use of every image a container uses (on the image's
  record, so it outlives restarts);
- every --interval, look at the disk holding the content store, and when
  more than --high of it is in use, prune as "prune -a --until-free" does,
  least recently used images first, until no more than --low is in use.

Prunes take the same lock as "imgprune prune". With --listen, /metrics
serves the prunes' metrics and /healthz answers 200 while the watch runs.
SIGTERM or SIGINT stops a prune in flight cleanly and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWatch(cmd.Context(), g, o)
		},
	}
	flags := cmd.Flags()
	flags.DurationVar(&o.interval, "interval", time.Minute, "How often to check the disk holding the content store")
	flags.StringVar(&o.high, "high", "85%", "Share of the disk in use that starts a prune, in percent")
	flags.StringVar(&o.low, "low", "80%", "Share of the disk in use a prune brings the disk down to, in percent")
	flags.StringArrayVar(&o.filters, "filter", nil, `Limit what a prune may remove, as prune's --filter (e.g. "until=24h")`)
	flags.IntVar(&o.keepLast, "keep-last", 0, "Keep the N most recent images of each repository, as prune's --keep-last")
	flags.StringVar(&o.metricsFile, "metrics-file", "", "Add each prune's metrics to this file, in Prometheus text format for a node exporter's textfile collector")
	flags.DurationVar(&o.maxPrune, "max-prune-duration", watch.DefaultMaxPrune, "The longest a prune may take: past it the prune is stopped, and /healthz fails while it winds down")
	flags.StringVar(&o.listen, "listen", "", `Serve /metrics and /healthz over HTTP on this address (e.g. ":9110")`)
	return cmd
}

func runWatch(ctx context.Context, g *globalOptions, o watchOptions) error {
	if g.offline {
		return fmt.Errorf("invalid --offline: watch follows a running containerd; use its socket (--address)")
	}
	w := &watch.Watcher{Interval: o.interval, Namespace: g.namespace, MaxPrune: o.maxPrune, CallTimeout: min(g.phaseTimeout, watch.DefaultCallTimeout)}
	var err error
	if w.High, err = parsePercent("--high", o.high); err != nil {
		return err
	}
	if w.Low, err = parsePercent("--low", o.low); err != nil {
		return err
	}
	if w.Filters, err = (pruneOptions{all: true, filters: o.filters}).parseFilters(); err != nil {
		return err
	}
	if o.keepLast < 0 {
		return fmt.Errorf("invalid --keep-last %d: use a count of images, or 0 for none", o.keepLast)
	}
	w.Filters.KeepLast = o.keepLast
	if err := w.Validate(); err != nil {
		return err
	}
	if o.metricsFile != "" {
		if err := metrics.Check(o.metricsFile); err != nil {
			return err
		}
	}
	svc, closer, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer closer.Close()
	w.Images, w.Events = svc, svc.Events()
	disk, err := svc.ContentDisk(ctx)
	if err != nil {
		return err
	}
	set := metrics.NewSet()
	w.Prune = func(ctx context.Context, f plan.Filters, goal prune.FreeGoal) (prune.Report, error) {
		rec := &metrics.Recorder{Run: metrics.Run{Namespace: g.namespace}}
		rep, err := svc.Prune(ctx, f, prune.UntilFree(goal), prune.WithProgress(rec))
		if errors.Is(err, images.ErrPruneRunning) {
			// Another prune runs: it is not this one's to count.
			return rep, err
		}
		run := rec.Run
		run.Failed = run.Failed || err != nil
		set.Add(run)
		if o.metricsFile != "" {
			if merr := metrics.Write(o.metricsFile, run); merr != nil {
				log.G(ctx).WithError(merr).Error("cannot write the metrics file")
			}
		}
		return rep, err
	}

	var stopHTTP func()
	if o.listen != "" {
		if stopHTTP, err = serveHealth(ctx, o.listen, set, w); err != nil {
			return err
		}
		defer stopHTTP()
	}
	log.G(ctx).WithField("namespace", g.namespace).WithField("used", fmt.Sprintf("%.1f%%", disk.Used())).
		WithField("high", fmt.Sprintf("%v%%", w.High)).WithField("low", fmt.Sprintf("%v%%", w.Low)).Info("watching")
	err = w.Run(ctx)
	log.G(ctx).Info("stopped")
	return err
}

// parsePercent reads a share of the disk: "85%" or "85".
func parsePercent(flag, value string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), "%"), 64)
	if err != nil || v <= 0 || v > 100 {
		return 0, fmt.Errorf("invalid %s %q: use a percentage of the disk above 0 and at most 100, e.g. 85%%", flag, value)
	}
	return v, nil
}

// serveHealth serves /metrics and /healthz on addr until the returned stop
// is called.
func serveHealth(ctx context.Context, addr string, set *metrics.Set, w *watch.Watcher) (func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("invalid --listen %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(set.Gatherer(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		if !w.Healthy() {
			http.Error(rw, "the watch loop has not come round", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.G(ctx).WithError(err).Error("serving /metrics and /healthz")
		}
	}()
	log.G(ctx).WithField("address", l.Addr().String()).Info("serving /metrics and /healthz")
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}, nil
}
