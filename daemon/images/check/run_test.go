package check_test

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"gotest.tools/v3/assert"

	"github.com/imgprune/imgprune/daemon/images/check"
)

// TestRunRefusesBadInput: a negative age, no phase timeout or no listing of
// containers refuses the check before it touches the store (the zero
// Stores would panic if it did).
func TestRunRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   check.Store
		opts []check.Opt
		msg  string
	}{
		{name: "negative age", st: check.Store{PhaseTimeout: time.Minute}, opts: []check.Opt{check.OlderThan(-time.Second)}, msg: "negative age"},
		{name: "no timeout", msg: "no phase timeout"},
		{name: "no containers", st: check.Store{PhaseTimeout: time.Minute}, msg: "no listing of containers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := check.Run(context.Background(), tc.st, tc.opts...)
			assert.Check(t, errdefs.IsInvalidArgument(err), "%v", err)
			assert.ErrorContains(t, err, tc.msg)
		})
	}
}
