package main

import (
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestParseUnpackLimit(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "", want: 0},
		{in: "none", want: -1},
		{in: "20GiB", want: 20 << 30},
		{in: "512m", want: 512 << 20},
		{in: "0", wantErr: "use a size above 0"},
		{in: "-5", wantErr: "invalid --max-unpacked-size"},
		{in: "potato", wantErr: `invalid --max-unpacked-size "potato"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseUnpackLimit(tc.in)
			if tc.wantErr != "" {
				assert.Check(t, is.ErrorContains(err, tc.wantErr))
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(got, tc.want))
		})
	}
}
