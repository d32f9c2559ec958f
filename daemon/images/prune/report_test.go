package prune

import (
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestReportErr(t *testing.T) {
	failure := []Failure{{Name: "x", Error: "boom"}}
	tests := []struct {
		name string
		rep  Report
		want string
	}{
		{name: "nothing failed", rep: Report{planned: 3, pruned: 3}},
		{name: "some failed", rep: Report{Failures: failure, planned: 3, pruned: 2}, want: "pruned 2 of 3 images; 1 failed"},
		{name: "stopped early", rep: Report{Failures: failure, planned: 1, pruned: 1, left: 4, untried: 5}, want: "pruned 1 of 5 images; stopped early, 5 records left for the next prune"},
		{name: "failed and stopped early", rep: Report{Failures: failure, planned: 2, pruned: 1, left: 1, untried: 1}, want: "pruned 1 of 3 images; 1 failed; stopped early, 1 record left for the next prune"},
		{name: "only dangling records left", rep: Report{Failures: failure, planned: 1, pruned: 1, untried: 1}, want: "pruned 1 of 1 images; stopped early, 1 record left for the next prune"},
		{name: "every image went, cleaning up failed", rep: Report{Failures: failure, planned: 2, pruned: 2}, want: "pruned 2 of 2 images; 1 failed to be cleaned up"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rep.Err()
			if tc.want == "" {
				assert.Check(t, err)
				return
			}
			assert.Check(t, is.Error(err, tc.want))
		})
	}
}
