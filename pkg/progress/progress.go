// Package progress carries what a long operation is doing, as events, to
// whoever watches: a person at a terminal, a machine reading JSON lines, the
// metrics of the run. Events are sent in order from one goroutine.
package progress

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Phase is a step of a prune, in the order they run.
type Phase string

const (
	Listing    Phase = "list"    // list the records, containers, content and snapshots
	Planning   Phase = "plan"    // decide, and predict what the collection frees
	Deleting   Phase = "delete"  // delete the records that go
	Collecting Phase = "collect" // the one garbage collection
	Accounting Phase = "account" // tell what left the store and the disk
)

// Kind says what an event reports.
type Kind string

const (
	PhaseStart Kind = "phase-start"
	PhaseEnd   Kind = "phase-end"
	// Removed is one record deleted; Done of Total records so far.
	Removed Kind = "removed"
	// Failed is one thing the operation could not do.
	Failed Kind = "failed"
	// Totals closes the operation with its counts.
	Totals Kind = "totals"
)

// Event is one step. Fields that do not apply to its kind are empty.
type Event struct {
	Time  time.Time `json:"time"`
	Kind  Kind      `json:"event"`
	Phase Phase     `json:"phase,omitempty"`
	// Seconds is how long the phase took, on PhaseEnd.
	Seconds float64 `json:"seconds,omitempty"`
	// Name is the record removed, or what failed.
	Name   string `json:"name,omitempty"`
	Target string `json:"target,omitempty"`
	Error  string `json:"error,omitempty"`
	// Done and Total count the records of the phase, on PhaseStart of
	// Deleting (Total) and on Removed.
	Done  int `json:"done,omitempty"`
	Total int `json:"total,omitempty"`
	// The totals of the operation, on Totals.
	Untagged       int    `json:"untagged,omitempty"`
	Deleted        int    `json:"deleted,omitempty"`
	Failures       int    `json:"failures,omitempty"`
	ReclaimedBytes uint64 `json:"reclaimed_bytes,omitempty"`
	DryRun         bool   `json:"dry_run,omitempty"`
}

// Sink receives events.
type Sink interface {
	Event(Event)
}

// Func is a Sink.
type Func func(Event)

func (f Func) Event(e Event) { f(e) }

// Multi sends every event to each sink in turn.
func Multi(sinks ...Sink) Sink {
	return Func(func(e Event) {
		for _, s := range sinks {
			s.Event(e)
		}
	})
}

// JSON writes one JSON object per event and line to w.
func JSON(w io.Writer) Sink {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	return Func(func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(e)
	})
}

// Phases times the phases of an operation for a sink, which may be nil.
type Phases struct{ Sink Sink }

// Start sends PhaseStart of p, total counting its records when known, and
// returns what sends its PhaseEnd with the seconds it took.
func (ph Phases) Start(p Phase, total int) (end func()) {
	start := time.Now()
	ph.Send(Event{Time: start, Kind: PhaseStart, Phase: p, Total: total})
	return func() {
		t := time.Now()
		ph.Send(Event{Time: t, Kind: PhaseEnd, Phase: p, Seconds: t.Sub(start).Seconds()})
	}
}

// Send sends e, stamped with the time unless it is.
func (ph Phases) Send(e Event) {
	if ph.Sink == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	ph.Sink.Event(e)
}
