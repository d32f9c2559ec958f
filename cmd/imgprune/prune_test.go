package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/image"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/daemon/images/check"
	"github.com/imgprune/imgprune/daemon/images/prune"
)

func TestPrintReport(t *testing.T) {
	rep := prune.Report{PruneReport: image.PruneReport{
		ImagesDeleted: []image.DeleteResponse{
			{Untagged: "busybox:latest"},
			{Deleted: "sha256:1a2b"},
		},
		SpaceReclaimed: 1234567,
	}}
	var out bytes.Buffer
	printReport(&out, rep, false)
	assert.Check(t, is.Equal(out.String(), "Deleted Images:\nuntagged: busybox:latest\ndeleted: sha256:1a2b\n\nTotal reclaimed space: 1.235MB\n"))

	out.Reset()
	printReport(&out, prune.Report{}, false)
	assert.Check(t, is.Equal(out.String(), "Total reclaimed space: 0B\n"))

	out.Reset()
	printReport(&out, rep, true)
	assert.Check(t, strings.HasPrefix(out.String(), "Would delete Images:\n"))
	assert.Check(t, strings.HasSuffix(out.String(), "Total reclaimable space: 1.235MB\n"))
}

// runCLI runs imgprune with args against an address where nothing listens:
// the commands tested here must fail before they connect.
func runCLI(t *testing.T, stdin *os.File, args ...string) (string, error) {
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if stdin != nil {
		cmd.SetIn(stdin)
	}
	cmd.SetArgs(append([]string{"--address", filepath.Join(t.TempDir(), "none.sock")}, args...))
	err := cmd.Execute()
	return out.String(), err
}

func TestPruneRejectsBadInputBeforeConnecting(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{args: []string{"prune", "-f", "--filter", "dangling=maybe"}, wantErr: "invalid filter 'dangling=[maybe true]'"},
		{args: []string{"prune", "-f", "--filter", "color=red"}, wantErr: "invalid filter 'color'"},
		{args: []string{"prune", "-f", "--filter", "until"}, wantErr: "bad format of filter"},
		{args: []string{"prune", "-f", "--format", "yaml"}, wantErr: `invalid --format "yaml"`},
		{args: []string{"prune", "extra"}, wantErr: "unknown command"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := runCLI(t, nil, tc.args...)
			assert.Check(t, is.ErrorContains(err, tc.wantErr))
		})
	}
}

func TestPruneWithoutTerminalNeedsForce(t *testing.T) {
	devnull, err := os.Open(os.DevNull)
	assert.NilError(t, err)
	defer devnull.Close()
	_, err = runCLI(t, devnull, "prune", "-a")
	assert.Check(t, is.ErrorContains(err, "pass --force"))
}

func TestConfirm(t *testing.T) {
	for answer, want := range map[string]bool{"y\n": true, "YES\n": true, "n\n": false, "\n": false, "": false} {
		var out bytes.Buffer
		ok, err := confirm(strings.NewReader(answer), &out, warnAll)
		assert.NilError(t, err)
		assert.Check(t, is.Equal(ok, want), "answer %q", answer)
		assert.Check(t, is.Equal(out.String(), warnAll+"\nAre you sure you want to continue? [y/N] "))
	}
}

// TestPruneDanglingFilterIsDockers: like docker, -a adds dangling=false and
// its absence dangling=true, so a contradicting filter is an error.
func TestPruneDanglingFilterIsDockers(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{args: []string{"-a", "--filter", "dangling=true"}, wantErr: "invalid filter 'dangling=[true false]'"},
		{args: []string{"--filter", "dangling=false"}, wantErr: "invalid filter 'dangling=[false true]'"},
	} {
		_, err := runCLI(t, nil, append([]string{"prune", "-f"}, tc.args...)...)
		assert.Check(t, is.ErrorContains(err, tc.wantErr))
	}
	for _, tc := range []struct {
		o    pruneOptions
		want bool
	}{
		{o: pruneOptions{all: true, filters: []string{"dangling=false"}}, want: false},
		{o: pruneOptions{filters: []string{"dangling=true"}}, want: true},
		{o: pruneOptions{all: true}, want: false},
		{o: pruneOptions{}, want: true},
	} {
		f, err := tc.o.parseFilters()
		assert.Check(t, err)
		assert.Check(t, is.Equal(f.DanglingOnly, tc.want), "%+v", tc.o)
	}
}

func TestVersion(t *testing.T) {
	out, err := runCLI(t, nil, "version")
	assert.NilError(t, err)
	assert.Check(t, strings.HasPrefix(out, "imgprune "), out)
	assert.Check(t, is.Contains(out, runtime.GOOS+"/"+runtime.GOARCH))
}

func TestPrintCheck(t *testing.T) {
	rep := check.Report{Found: []check.Found{
		{Kind: check.KindSnapshot, Name: "native/unreached", Size: 4096, Why: "reached by nothing"},
		{Kind: check.KindDir, Name: "io.containerd.snapshotter.v1.native/snapshots/rm-1", Size: 2000, Why: "left"},
		{Kind: check.KindDir, Name: "io.containerd.snapshotter.v1.native/snapshots/rm-2", Size: 2000, Why: "left", Gone: true},
		{Kind: check.KindLease, Name: "ctr1", Size: 1000, Why: "no expiry", Kept: true},
	}, Space: 8096}
	var out bytes.Buffer
	printCheck(&out, rep)
	assert.Check(t, is.Equal(out.String(), `Would delete snapshot: native/unreached (4.096kB; reached by nothing)
Would delete directory: io.containerd.snapshotter.v1.native/snapshots/rm-1 (2kB; left)
Would delete directory: io.containerd.snapshotter.v1.native/snapshots/rm-2 (2kB; left)
Kept lease: ctr1 (1kB; no expiry)
Would delete 1 snapshot
Would delete 2 directories
Would free up 8.096kB of disk space
Use --delete to delete them
`))

	// Deleted, only what is gone is listed.
	rep.Deleted, rep.Space = true, 2000
	out.Reset()
	printCheck(&out, rep)
	assert.Check(t, is.Equal(out.String(), `Deleted directory: io.containerd.snapshotter.v1.native/snapshots/rm-2 (2kB; left)
Kept lease: ctr1 (1kB; no expiry)
Deleted 1 directory
Freed up 2kB of disk space
`))

	// Only kept leases: nothing to delete.
	out.Reset()
	printCheck(&out, check.Report{Found: rep.Found[3:]})
	assert.Check(t, is.Equal(out.String(), `Kept lease: ctr1 (1kB; no expiry)
Nothing to delete
Would free up 0B of disk space
`))
}
