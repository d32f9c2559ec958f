// Package metrics leaves the record of each prune as Prometheus text for a
// node exporter's textfile collector. Counters carry on from the file a
// previous prune wrote, so they count every prune of the host.
package metrics

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

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

// Write adds run to the metrics in path and writes them back through a
// temporary file renamed over it, so a collector never reads half a file.
// Series of other namespaces are kept as they were.
func Write(path string, run Run) error {
	old, err := read(path)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	vecs := map[string]*prometheus.CounterVec{}
	for _, c := range counters {
		vecs[c.name] = prometheus.NewCounterVec(prometheus.CounterOpts{Name: c.name, Help: c.help}, []string{"namespace"})
		reg.MustRegister(vecs[c.name])
		for ns, v := range old[c.name] {
			vecs[c.name].WithLabelValues(ns[0]).Add(v)
		}
	}
	phases := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: PhaseSeconds, Help: "Seconds each phase of the last prune took."}, []string{"namespace", "phase"})
	last := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: LastSuccess, Help: "When the last prune that failed in nothing ended, in seconds since the epoch."}, []string{"namespace"})
	reg.MustRegister(phases, last)
	for k, v := range old[PhaseSeconds] {
		if k[0] != run.Namespace {
			phases.WithLabelValues(k[0], k[1]).Set(v)
		}
	}
	for k, v := range old[LastSuccess] {
		last.WithLabelValues(k[0]).Set(v)
	}

	ns := run.Namespace
	vecs[Prunes].WithLabelValues(ns).Inc()
	vecs[PruneFailures].WithLabelValues(ns).Add(boolFloat(run.Failed))
	vecs[Untagged].WithLabelValues(ns).Add(float64(run.Untagged))
	vecs[Deleted].WithLabelValues(ns).Add(float64(run.Deleted))
	vecs[Reclaimed].WithLabelValues(ns).Add(float64(run.ReclaimedBytes))
	for p, s := range run.PhaseSeconds {
		phases.WithLabelValues(ns, string(p)).Set(s)
	}
	if !run.Failed {
		end := run.End
		if end.IsZero() {
			end = time.Now()
		}
		last.WithLabelValues(ns).Set(float64(end.UnixNano()) / 1e9)
	}
	if err := prometheus.WriteToTextfile(path, reg); err != nil {
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
	f, err := os.Open(path)
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
