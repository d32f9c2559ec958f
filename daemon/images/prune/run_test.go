package prune_test

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"gotest.tools/v3/assert"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
)

// TestRunRefusesAnIncompleteStore: a prune without a phase timeout, a
// source of containers or, unless a dry run, a lock refuses to start, and
// touches no store (the zero Stores would panic if it did).
func TestRunRefusesAnIncompleteStore(t *testing.T) {
	lock := func(context.Context) (func() error, func(), error) { return nil, nil, errdefs.ErrNotImplemented }
	sources := []imgcontainers.Source{imgcontainers.Records{}}
	for _, tc := range []struct {
		name string
		st   prune.Store
		msg  string
	}{
		{name: "no timeout", st: prune.Store{Sources: sources, Lock: lock}, msg: "no phase timeout"},
		{name: "no sources", st: prune.Store{PhaseTimeout: time.Minute, Lock: lock}, msg: "no source of containers"},
		{name: "no lock", st: prune.Store{PhaseTimeout: time.Minute, Sources: sources}, msg: "no lock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := prune.Run(context.Background(), tc.st, plan.Filters{})
			assert.Check(t, errdefs.IsInvalidArgument(err), "%v", err)
			assert.ErrorContains(t, err, tc.msg)
		})
	}
}
