package progress

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// descriptions are what a person reads of each phase.
var descriptions = map[Phase]string{
	Listing:    "listing images, containers and content",
	Planning:   "planning",
	Deleting:   "deleting records",
	Collecting: "collecting garbage",
	Accounting: "accounting for what left the disk",
}

// Terminal draws the phases on w, a terminal: a spinner for each, and a bar
// with the rate and the time left while records are deleted. A phase that
// ends leaves one line with how long it took.
func Terminal(w io.Writer) Sink {
	t := &terminal{w: w}
	return Func(t.event)
}

type terminal struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func (t *terminal) event(e Event) {
	switch e.Kind {
	case PhaseStart:
		total := -1
		if e.Phase == Deleting && e.Total > 0 {
			total = e.Total
		}
		t.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(t.w),
			progressbar.OptionSetDescription(descriptions[e.Phase]),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("records"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	case Removed:
		if t.bar != nil {
			_ = t.bar.Set(e.Done)
		}
	case PhaseEnd:
		if t.bar != nil {
			_ = t.bar.Finish()
			t.bar = nil
		}
		fmt.Fprintf(t.w, "%s: done in %s\n", descriptions[e.Phase], time.Duration(e.Seconds*float64(time.Second)).Round(time.Millisecond))
	}
}
