package prune

import "golang.org/x/sync/errgroup"

// writer carries out the applier's writes: DeletesInFlight at once, or one
// at a time in the caller's goroutine: when asked to, or in a transaction,
// which one goroutine alone may use.
type writer struct{ g *errgroup.Group }

func (a *applier) writer() writer {
	if a.s.Stores.Batch != nil || a.s.DeletesInFlight <= 1 {
		return writer{}
	}
	g := new(errgroup.Group)
	g.SetLimit(a.s.DeletesInFlight)
	return writer{g}
}

// do runs f, or has it run once a write in flight is done.
func (w writer) do(f func()) {
	if w.g == nil {
		f()
		return
	}
	w.g.Go(func() error { f(); return nil })
}

// wait waits for the writes in flight.
func (w writer) wait() {
	if w.g != nil {
		w.g.Wait()
	}
}
