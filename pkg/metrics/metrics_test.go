package metrics

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/pkg/progress"
)

// TestWriteAddsUp: counters add up over prunes, per namespace; the phases
// are the last prune's; a failed prune moves no last-success time.
func TestWriteAddsUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imgprune.prom")
	end := time.Unix(1700000000, 0)
	assert.NilError(t, Write(path, Run{Namespace: "moby", Untagged: 3, Deleted: 2, ReclaimedBytes: 100, End: end, PhaseSeconds: map[progress.Phase]float64{progress.Deleting: 1.5}}))
	assert.NilError(t, Write(path, Run{Namespace: "k8s.io", Untagged: 1, Deleted: 1, ReclaimedBytes: 10, End: end}))
	assert.NilError(t, Write(path, Run{Namespace: "moby", Failed: true, Untagged: 1, End: end.Add(time.Hour), PhaseSeconds: map[progress.Phase]float64{progress.Deleting: 0.5}}))

	got, err := read(path)
	assert.NilError(t, err)
	moby, k8s := [2]string{"moby"}, [2]string{"k8s.io"}
	assert.Check(t, is.Equal(got[Prunes][moby], 2.0))
	assert.Check(t, is.Equal(got[PruneFailures][moby], 1.0))
	assert.Check(t, is.Equal(got[Untagged][moby], 4.0))
	assert.Check(t, is.Equal(got[Deleted][moby], 2.0))
	assert.Check(t, is.Equal(got[Reclaimed][moby], 100.0))
	assert.Check(t, is.Equal(got[LastSuccess][moby], float64(end.Unix())))
	assert.Check(t, is.Equal(got[PhaseSeconds][[2]string{"moby", "delete"}], 0.5))
	assert.Check(t, is.Equal(got[Prunes][k8s], 1.0))
	assert.Check(t, is.Equal(got[Reclaimed][k8s], 10.0))
}

// TestWriteRefusesAFileItCannotRead: a file that is not metrics is left as
// it is, and Check says so before a prune runs.
func TestWriteRefusesAFileItCannotRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imgprune.prom")
	assert.NilError(t, os.WriteFile(path, []byte("not { metrics\n"), 0o644))
	assert.Check(t, is.ErrorContains(Check(path), "remove the file"))
	assert.Check(t, is.ErrorContains(Write(path, Run{Namespace: "moby"}), "remove the file"))
	b, err := os.ReadFile(path)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(b), "not { metrics\n"))
	assert.Check(t, is.ErrorContains(Check(filepath.Join(path+".d", "x.prom")), "not writable"))
	assert.Check(t, Check(filepath.Join(t.TempDir(), "new.prom")))
}

// TestSetKeepsPhasesOfARunWithout: a run that reached no phase (one that
// failed before its listing) leaves the last prune's phase times.
func TestSetKeepsPhasesOfARunWithout(t *testing.T) {
	s := NewSet()
	s.Add(Run{Namespace: "moby", PhaseSeconds: map[progress.Phase]float64{progress.Deleting: 1.5}})
	s.Add(Run{Namespace: "moby", Failed: true})
	families, err := s.Gatherer().Gather()
	assert.NilError(t, err)
	var phases int
	for _, f := range families {
		if f.GetName() == PhaseSeconds {
			phases = len(f.GetMetric())
			assert.Check(t, is.Equal(f.GetMetric()[0].GetGauge().GetValue(), 1.5))
		}
	}
	assert.Check(t, is.Equal(phases, 1))
}

// TestWritersTakeTurns: writers adding to one file at once lose no count.
func TestWritersTakeTurns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imgprune.prom")
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				assert.Check(t, Write(path, Run{Namespace: "moby", Untagged: 1}))
			}
		})
	}
	wg.Wait()
	got, err := read(path)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got[Prunes][[2]string{"moby"}], float64(writers*each)))
	assert.Check(t, is.Equal(got[Untagged][[2]string{"moby"}], float64(writers*each)))
}
