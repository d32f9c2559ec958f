package progress

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// TestJSONLines: one object per event and line, with the documented names.
func TestJSONLines(t *testing.T) {
	var buf bytes.Buffer
	ph := Phases{Sink: JSON(&buf)}
	end := ph.Start(Deleting, 2)
	ph.Send(Event{Kind: Removed, Phase: Deleting, Name: "docker.io/library/a:1", Done: 1, Total: 2})
	end()
	ph.Send(Event{Kind: Totals, Untagged: 1, ReclaimedBytes: 42})

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	assert.Assert(t, is.Len(lines, 4))
	var fields []map[string]any
	for _, l := range lines {
		var m map[string]any
		assert.NilError(t, json.Unmarshal([]byte(l), &m))
		assert.Check(t, m["time"] != nil)
		fields = append(fields, m)
	}
	assert.Check(t, is.Equal(fields[0]["event"], "phase-start"))
	assert.Check(t, is.Equal(fields[0]["phase"], "delete"))
	assert.Check(t, is.Equal(fields[0]["total"], 2.0))
	assert.Check(t, is.Equal(fields[1]["event"], "removed"))
	assert.Check(t, is.Equal(fields[1]["name"], "docker.io/library/a:1"))
	assert.Check(t, is.Equal(fields[2]["event"], "phase-end"))
	assert.Check(t, fields[2]["seconds"] != nil)
	assert.Check(t, is.Equal(fields[3]["event"], "totals"))
	assert.Check(t, is.Equal(fields[3]["reclaimed_bytes"], 42.0))
}

// TestTerminal: each phase that ends leaves its line.
func TestTerminal(t *testing.T) {
	var buf bytes.Buffer
	ph := Phases{Sink: Terminal(&buf)}
	for _, p := range []Phase{Listing, Deleting} {
		end := ph.Start(p, 3)
		ph.Send(Event{Kind: Removed, Phase: p, Done: 1, Total: 3})
		end()
	}
	assert.Check(t, is.Contains(buf.String(), "listing images, containers and content: done in "))
	assert.Check(t, is.Contains(buf.String(), "deleting records: done in "))
}
