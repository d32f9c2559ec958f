// Package metrics leaves the record of each prune as Prometheus text for a
// node exporter's textfile collector. Counters carry on from the file a
// previous prune wrote, so they count every prune of the host.
package metrics

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/imgprune/imgprune/internal/safefile"
	"github.com/imgprune/imgprune/pkg/progress"
)

// Run is what one prune of a namespace did.
type Run struct {
	Namespace string
	// Failed is set when anything failed, or the prune did not run.
	Failed            bool
	Untagged, Deleted int
	ReclaimedBytes    uint64
	PhaseSeconds      map[progress.Phase]float64
	End               time.Time
}

// Recorder is a progress sink that notes a prune's phases and totals.
type Recorder struct{ Run Run }

// Event notes e.
func (r *Recorder) Event(e progress.Event) {
	switch e.Kind {
	case progress.PhaseEnd:
		if r.Run.PhaseSeconds == nil {
			r.Run.PhaseSeconds = map[progress.Phase]float64{}
		}
		r.Run.PhaseSeconds[e.Phase] = e.Seconds
	case progress.Totals:
		r.Run.Untagged, r.Run.Deleted, r.Run.ReclaimedBytes = e.Untagged, e.Deleted, e.ReclaimedBytes
		r.Run.Failed = r.Run.Failed || e.Failures > 0
		r.Run.End = e.Time
	}
}

// The metric names.
const (
	Prunes        = "imgprune_prunes_total"
	PruneFailures = "imgprune_prune_failures_total"
	Untagged      = "imgprune_images_untagged_total"
	Deleted       = "imgprune_images_deleted_total"
	Reclaimed     = "imgprune_reclaimed_bytes_total"
	PhaseSeconds  = "imgprune_phase_seconds"
	LastSuccess   = "imgprune_last_success_timestamp_seconds"
)

var counters = []struct{ name, help string }{
	{Prunes, "Prunes run."},
	{PruneFailures, "Prunes that failed in part or whole."},
	{Untagged, "Image names removed."},
	{Deleted, "Images whose content left the store."},
	{Reclaimed, "Bytes that left the disk."},
}

// Check tells whether Write could add to path: its folder is writable and
// the file, if there is one, is metrics it can read.
func Check(path string) error {
	if err := unix.Access(filepath.Dir(path), unix.W_OK); err != nil {
		return fmt.Errorf("metrics file %s: its folder is not writable: %w", path, err)
	}
	_, err := read(path)
	return err
}

// Set is imgprune's metrics, live: what `serve` exposes at /metrics, and
// what Write writes to a file.
type Set struct {
	mu       sync.Mutex
	registry *prometheus.Registry
	counters map[string]*prometheus.CounterVec
	phases   *prometheus.GaugeVec
	last     *prometheus.GaugeVec
}

// NewSet returns metrics that count nothing yet.
func NewSet() *Set {
	s := &Set{registry: prometheus.NewRegistry(), counters: map[string]*prometheus.CounterVec{}}
	for _, c := range counters {
		s.counters[c.name] = prometheus.NewCounterVec(prometheus.CounterOpts{Name: c.name, Help: c.help}, []string{"namespace"})
		s.registry.MustRegister(s.counters[c.name])
	}
	s.phases = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: PhaseSeconds, Help: "Seconds each phase of the last prune took."}, []string{"namespace", "phase"})
	s.last = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: LastSuccess, Help: "When the last prune that failed in nothing ended, in seconds since the epoch."}, []string{"namespace"})
	s.registry.MustRegister(s.phases, s.last)
	return s
}

// Gatherer is the registry that holds the metrics, for an HTTP handler.
func (s *Set) Gatherer() prometheus.Gatherer { return s.registry }

// Add counts run: the counters grow, the namespace's phases are run's
// alone when it has any, and its last success is run's end when nothing
// failed.
func (s *Set) Add(run Run) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := run.Namespace
	s.counters[Prunes].WithLabelValues(ns).Inc()
	s.counters[PruneFailures].WithLabelValues(ns).Add(boolFloat(run.Failed))
	s.counters[Untagged].WithLabelValues(ns).Add(float64(run.Untagged))
	s.counters[Deleted].WithLabelValues(ns).Add(float64(run.Deleted))
	s.counters[Reclaimed].WithLabelValues(ns).Add(float64(run.ReclaimedBytes))
	if len(run.PhaseSeconds) > 0 {
		// The last prune's phases, not a mix with an older one's.
		s.phases.DeletePartialMatch(prometheus.Labels{"namespace": ns})
	}
	for p, sec := range run.PhaseSeconds {
		s.phases.WithLabelValues(ns, string(p)).Set(sec)
	}
	if !run.Failed {
		end := run.End
		if end.IsZero() {
			end = time.Now()
		}
		s.last.WithLabelValues(ns).Set(float64(end.UnixNano()) / 1e9)
	}
}

// load sets the values read from a file.
func (s *Set) load(old map[string]map[[2]string]float64) {
	for _, c := range counters {
		for k, v := range old[c.name] {
			s.counters[c.name].WithLabelValues(k[0]).Add(v)
		}
	}
	for k, v := range old[PhaseSeconds] {
		s.phases.WithLabelValues(k[0], k[1]).Set(v)
	}
	for k, v := range old[LastSuccess] {
		s.last.WithLabelValues(k[0]).Set(v)
	}
}

// Write adds run to the metrics in path and writes them back through a
// temporary file renamed over it, so a collector never reads half a file.
// Series of other namespaces are kept as they were. Writers take turns on
// path.lock, so that two processes (a timer's prune and a watch) adding to
// one file lose no count.
func Write(path string, run Run) error {
	lock, err := safefile.OpenOwn(path+".lock", 0o644)
	if err != nil {
		return fmt.Errorf("write metrics to %s: %w", path, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("write metrics to %s: lock %s: %w", path, lock.Name(), err)
	}
	old, err := read(path)
	if err != nil {
		return err
	}
	s := NewSet()
	s.load(old)
	s.Add(run)
	if err := prometheus.WriteToTextfile(path, s.registry); err != nil {
		return fmt.Errorf("write metrics to %s: %w", path, err)
	}
	return nil
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// read returns the values of imgprune's metrics in path, by metric name and
// label values (namespace, then phase): nothing when there is no file.
func read(path string) (map[string]map[[2]string]float64, error) {
	f, err := safefile.OpenRead(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	defer f.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(f)
	if err != nil {
		return nil, fmt.Errorf("read metrics in %s: %w; remove the file to start the counts again", path, err)
	}
	out := map[string]map[[2]string]float64{}
	for name, fam := range families {
		out[name] = map[[2]string]float64{}
		for _, m := range fam.GetMetric() {
			var key [2]string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "namespace":
					key[0] = l.GetValue()
				case "phase":
					key[1] = l.GetValue()
				}
			}
			out[name][key] = value(m)
		}
	}
	return out, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}
