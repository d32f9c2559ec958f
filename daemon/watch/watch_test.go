package watch

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		w         *Watcher
		wantError string
	}{
		{name: "defaults of the command", w: &Watcher{Interval: time.Minute, High: 85, Low: 80}},
		{name: "no interval", w: &Watcher{High: 85, Low: 80}, wantError: "invalid interval 0s"},
		{name: "high above 100", w: &Watcher{Interval: time.Minute, High: 101, Low: 80}, wantError: "invalid high mark 101%"},
		{name: "low at high", w: &Watcher{Interval: time.Minute, High: 80, Low: 80}, wantError: "invalid low mark 80%: it is above 0 and below the high mark, 80%"},
		{name: "low zero", w: &Watcher{Interval: time.Minute, High: 80}, wantError: "invalid low mark 0%"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.w.Validate()
			if tc.wantError == "" {
				assert.NilError(t, err)
				return
			}
			assert.Check(t, is.ErrorContains(err, tc.wantError))
			assert.Check(t, errdefs.IsInvalidArgument(err))
		})
	}
}

func TestRunNeedsItsParts(t *testing.T) {
	w := &Watcher{Interval: time.Minute, High: 85, Low: 80}
	err := w.Run(context.Background())
	assert.Check(t, errdefs.IsInvalidArgument(err), "%v", err)
}

func TestHealthy(t *testing.T) {
	w := &Watcher{Interval: time.Second}
	assert.Check(t, !w.Healthy(), "never came round")
	w.beat.Store(time.Now().UnixNano())
	assert.Check(t, w.Healthy())
	w.beat.Store(time.Now().Add(-time.Hour).UnixNano())
	assert.Check(t, !w.Healthy(), "stuck for an hour")
	w.busy.Store(true)
	assert.Check(t, w.Healthy(), "a long prune is no hang")
}
