package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/internal/testcmd"
	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/pkg/metrics"
	"github.com/imgprune/imgprune/pkg/progress"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// imgprune builds the command once per test run.
func imgprune(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		var repo, dir string
		if repo, buildErr = testctrd.RepoRoot(); buildErr != nil {
			return
		}
		if dir, buildErr = os.MkdirTemp("", "imgprune-bin"); buildErr != nil {
			return
		}
		binPath = filepath.Join(dir, "imgprune")
		out, err := exec.Command("go", "build", "-o", binPath, filepath.Join(repo, "cmd", "imgprune")).CombinedOutput()
		if err != nil {
			buildErr = err
			t.Log(string(out))
		}
	})
	assert.NilError(t, buildErr)
	return binPath
}

// run runs the command in the test's namespace and returns its stdout,
// stderr and exit code.
func (e *env) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runCmd(t, imgpruneCmd(t, daemon, e.ns, args...))
}

// imgpruneCmd is the command with args in namespace ns of daemon d.
func imgpruneCmd(t *testing.T, d *testctrd.Daemon, ns string, args ...string) *exec.Cmd {
	return exec.Command(imgprune(t), append([]string{"--address", d.Address, "--namespace", ns, "--root", filepath.Join(d.Dir, "root"), "--snapshotter", snapshotter}, args...)...)
}

// killOnCleanup kills the started cmd at the end of the test, unless it was
// waited for.
func killOnCleanup(t *testing.T, cmd *exec.Cmd) {
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
}

// runCmd runs cmd and returns its stdout, stderr and exit code.
func runCmd(t *testing.T, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	stdout, stderr, code, err := testcmd.Run(cmd)
	assert.NilError(t, err)
	return stdout, stderr, code
}

func TestCLIPrune(t *testing.T) {
	e := newEnv(t)
	used := newImage(t, "used", "docker.io/library/used:1")
	unused := newImage(t, "unused", "docker.io/library/unused:1")
	e.write(used, unused)
	e.container("c1", "used:1", nil)

	// Bad input: a clear error, exit 1, nothing changed.
	before := e.names()
	_, stderr, code := e.run(t, "prune", "-f", "--filter", "dangling=maybe")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(stderr, "invalid filter 'dangling=[maybe true]'"))
	assert.Check(t, is.DeepEqual(e.names(), before))

	dryOut, _, code := e.run(t, "prune", "-a", "--dry-run", "--format", "json")
	assert.Check(t, is.Equal(code, 0))
	out, stderr, code := e.run(t, "prune", "-a", "-f", "--format", "json")
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.Equal(out, dryOut), "the dry run reports what the prune does")
	var rep prune.Report
	dec := json.NewDecoder(strings.NewReader(out))
	assert.NilError(t, dec.Decode(&rep))
	assert.Check(t, !dec.More(), "one JSON object on stdout")
	assert.Check(t, is.Equal(rep.SpaceReclaimed, uint64(unused.Size())))
	assert.Check(t, is.Len(rep.ImagesDeleted, 2))

	// Nothing left to prune: exit 0, docker's text.
	out, _, code = e.run(t, "prune", "-a", "-f")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Equal(out, "Total reclaimed space: 0B\n"))

	out, _, code = e.run(t, "images")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(out, "used "))
	assert.Check(t, !strings.Contains(out, "unused"))
	out, _, code = e.run(t, "images", "--format", "json")
	assert.Check(t, is.Equal(code, 0))
	var rows []imgsvc.Summary
	assert.NilError(t, json.Unmarshal([]byte(out), &rows))
	assert.Assert(t, is.Len(rows, 1))
	assert.Check(t, is.Equal(rows[0].Name, "docker.io/library/used:1"))
	assert.Check(t, is.Equal(rows[0].Size, used.Size()))
	assert.Check(t, is.Equal(rows[0].Containers, 1))
}

// TestCLIPruneFailureExitsNonZero: a blob that cannot leave the disk is a
// failure: the report is printed, the command says what failed and exits 1.
func TestCLIPruneFailureExitsNonZero(t *testing.T) {
	e := newEnv(t)
	_, stuck := e.writeStuck(t)

	out, stderr, code := e.run(t, "prune", "-a", "-f")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(out, "Deleted Images:\nuntagged: example.com/stuck:1\n"))
	assert.Check(t, is.Contains(stderr, "failed: "+stuck.Desc.Digest.String()))
	assert.Check(t, is.Contains(stderr, "pruned 1 of 1 images; "))
	assert.Check(t, is.Contains(stderr, "failed to be cleaned up"))
}

// TestCLIPruneProgressAndMetrics: --progress json writes one event per line
// on stderr, phases in order, a removal per record and totals that match
// the report on stdout; --metrics-file leaves Prometheus text that carries
// the report's counts and adds up over prunes.
func TestCLIPruneProgressAndMetrics(t *testing.T) {
	e := newEnv(t)
	used := newImage(t, "used", "docker.io/library/used:1")
	a := newImage(t, "a", "docker.io/library/a:1", "docker.io/library/a:2")
	b := newImage(t, "b", "docker.io/library/b:1")
	e.write(used, a, b)
	e.container("c1", "used:1", nil)
	metricsFile := filepath.Join(t.TempDir(), "imgprune.prom")

	// Bad input changes nothing.
	before := e.names()
	_, stderr, code := e.run(t, "prune", "-a", "-f", "--progress", "fancy")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(stderr, `invalid --progress "fancy"`))
	_, stderr, code = e.run(t, "prune", "-a", "-f", "--metrics-file", "/nonexistent/dir/imgprune.prom")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(stderr, "its folder is not writable"))
	assert.Check(t, is.DeepEqual(e.names(), before))

	out, stderr, code := e.run(t, "prune", "-a", "-f", "--format", "json", "--progress", "json", "--metrics-file", metricsFile)
	assert.Assert(t, is.Equal(code, 0), stderr)
	var rep prune.Report
	assert.NilError(t, json.Unmarshal([]byte(out), &rep))

	var events []progress.Event
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		var ev progress.Event
		assert.NilError(t, json.Unmarshal([]byte(line), &ev), "not a JSON line: %q", line)
		assert.Check(t, !ev.Time.IsZero(), "no time: %q", line)
		events = append(events, ev)
	}
	var phases []string
	removed := map[string]bool{}
	for _, ev := range events {
		switch ev.Kind {
		case progress.PhaseStart, progress.PhaseEnd:
			phases = append(phases, string(ev.Kind)+" "+string(ev.Phase))
		case progress.Removed:
			removed[ev.Name] = true
			assert.Check(t, is.Equal(ev.Done, len(removed)))
			assert.Check(t, is.Equal(ev.Total, 3))
		}
	}
	assert.Check(t, is.DeepEqual(phases, []string{
		"phase-start list", "phase-end list", "phase-start plan", "phase-end plan",
		"phase-start delete", "phase-end delete", "phase-start collect", "phase-end collect",
		"phase-start account", "phase-end account",
	}))
	assert.Check(t, is.DeepEqual(removed, map[string]bool{"docker.io/library/a:1": true, "docker.io/library/a:2": true, "docker.io/library/b:1": true}))
	last := events[len(events)-1]
	assert.Check(t, is.Equal(last.Kind, progress.Totals))
	assert.Check(t, is.Equal(last.Untagged, 3))
	assert.Check(t, is.Equal(last.Deleted, 2))
	assert.Check(t, is.Equal(last.ReclaimedBytes, rep.SpaceReclaimed))
	assert.Check(t, rep.SpaceReclaimed > 0)

	m := readMetrics(t, metricsFile)
	assert.Check(t, is.Equal(m[metrics.Prunes], 1.0))
	assert.Check(t, is.Equal(m[metrics.PruneFailures], 0.0))
	assert.Check(t, is.Equal(m[metrics.Untagged], 3.0))
	assert.Check(t, is.Equal(m[metrics.Deleted], 2.0))
	assert.Check(t, is.Equal(m[metrics.Reclaimed], float64(rep.SpaceReclaimed)))
	assert.Check(t, m[metrics.LastSuccess] > 0)

	// A second prune finds nothing, adds to the counts and shows no
	// progress unless asked.
	c := newImage(t, "c", "docker.io/library/c:1")
	e.write(c)
	out, stderr, code = e.run(t, "prune", "-a", "-f", "--format", "json", "--metrics-file", metricsFile)
	assert.Assert(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.Equal(stderr, ""))
	assert.NilError(t, json.Unmarshal([]byte(out), &rep))
	m = readMetrics(t, metricsFile)
	assert.Check(t, is.Equal(m[metrics.Prunes], 2.0))
	assert.Check(t, is.Equal(m[metrics.Untagged], 4.0))
	assert.Check(t, is.Equal(m[metrics.Deleted], 3.0))
}

// readMetrics parses a metrics file and returns the value of each metric of
// the test's namespace, summed over its other labels.
func readMetrics(t *testing.T, path string) map[string]float64 {
	t.Helper()
	f, err := os.Open(path)
	assert.NilError(t, err)
	defer f.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(f)
	assert.NilError(t, err)
	out := map[string]float64{}
	for name, fam := range families {
		for _, m := range fam.GetMetric() {
			out[name] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out
}
