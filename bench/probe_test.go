package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// The lines containerd 2.4.2 logs at trace level for each collection: the
// removals of content and snapshots that run after the write lock is
// released, then the scheduler's line with the whole collection's time.
const collectionLog = `time="2026-12-03T10:00:00.000000000Z" level=info msg="starting"
time="2026-12-03T10:00:01.100000000Z" level=trace msg="content garbage collected" d=40ms
time="2026-12-03T10:00:01.120000000Z" level=trace msg="snapshot garbage collected" d=60ms
time="2026-12-03T10:00:01.120000000Z" level=trace msg="garbage collected" d=360ms
time="2026-12-03T10:00:05.500000000Z" level=trace msg="garbage collected" d=200ms
`

func TestCollections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "containerd.log")
	assert.NilError(t, os.WriteFile(path, []byte(collectionLog), 0o644))
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339Nano, s)
		assert.NilError(t, err)
		return v
	}
	for _, tc := range []struct {
		name       string
		start, end time.Time
		want       []collection
	}{
		{
			// The lock is released when the cleanups start: 60 ms before
			// the line, after 360 ms less them.
			name:  "both",
			start: at("2026-12-03T10:00:00Z"), end: at("2026-12-03T10:00:10Z"),
			want: []collection{
				{at: at("2026-12-03T10:00:01.06Z"), held: 360 * time.Millisecond},
				{at: at("2026-12-03T10:00:05.5Z"), held: 200 * time.Millisecond},
			},
		},
		{
			// A collection that took the lock before the probe began is
			// not one it ran beside.
			name:  "began before",
			start: at("2026-12-03T10:00:00.8Z"), end: at("2026-12-03T10:00:10Z"),
			want: []collection{{at: at("2026-12-03T10:00:05.5Z"), held: 200 * time.Millisecond}},
		},
		{
			name:  "ended after",
			start: at("2026-12-03T10:00:00Z"), end: at("2026-12-03T10:00:05Z"),
			want: []collection{{at: at("2026-12-03T10:00:01.06Z"), held: 360 * time.Millisecond}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := collections(path, 0, tc.start, tc.end)
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(got, tc.want, gocmp.AllowUnexported(collection{})))
		})
	}
}

func TestParseCollectionRefusesALineWithoutItsTime(t *testing.T) {
	_, err := parseCollection(`level=trace msg="garbage collected" d=3ms`)
	assert.Check(t, is.ErrorContains(err, "no time or d"))
}

func TestP99(t *testing.T) {
	waits := make([]time.Duration, 200)
	for i := range waits {
		waits[i] = time.Duration(200-i) * time.Millisecond
	}
	assert.Check(t, is.Equal(p99(waits), 199*time.Millisecond))
	assert.Check(t, is.Equal(p99(nil), time.Duration(0)))
}
