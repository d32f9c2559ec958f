package plan

import (
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestParseFilters(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		flags   []string
		want    Filters
		wantErr string
	}{
		{name: "default is dangling only", want: Filters{DanglingOnly: true}},
		{name: "dangling=false", flags: []string{"dangling=false"}, want: Filters{}},
		{name: "dangling=0", flags: []string{"dangling=0"}, want: Filters{}},
		{name: "dangling=1", flags: []string{"dangling=1"}, want: Filters{DanglingOnly: true}},
		{name: "dangling=TRUE", flags: []string{"dangling=TRUE"}, want: Filters{DanglingOnly: true}},
		{name: "bad dangling", flags: []string{"dangling=maybe"}, wantErr: "invalid filter 'dangling=maybe'"},
		{name: "two dangling", flags: []string{"dangling=true", "dangling=false"}, wantErr: "invalid filter 'dangling=true,false'"},
		{name: "unknown filter", flags: []string{"reference=foo"}, wantErr: "invalid filter 'reference'"},
		{name: "no equals", flags: []string{"dangling"}, wantErr: "bad format of filter (expected name=value)"},
		{name: "until duration", flags: []string{"until=1h"}, want: Filters{DanglingOnly: true, Until: now.Add(-time.Hour)}},
		{name: "until RFC3339", flags: []string{"until=2025-01-02T03:04:05Z"}, want: Filters{DanglingOnly: true, Until: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}},
		{name: "until date", flags: []string{"until=2025-01-02"}, want: Filters{DanglingOnly: true, Until: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)}},
		{name: "until unix seconds", flags: []string{"until=1700000000"}, want: Filters{DanglingOnly: true, Until: time.Unix(1700000000, 0)}},
		{name: "until unix fraction", flags: []string{"until=1700000000.5"}, want: Filters{DanglingOnly: true, Until: time.Unix(1700000000, 500000000)}},
		{name: "bad until", flags: []string{"until=tomorrow"}, wantErr: `failed to parse value as time or duration: "tomorrow"`},
		{name: "two until", flags: []string{"until=1h", "until=2h"}, wantErr: "more than one until filter specified"},
		{name: "labels", flags: []string{"label=a", "label=b=c", "label!=d"}, want: Filters{DanglingOnly: true, Labels: []string{"a", "b=c"}, NotLabels: []string{"d"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parse(tc.flags, now)
			if tc.wantErr != "" {
				assert.Check(t, is.ErrorContains(err, tc.wantErr))
				assert.Check(t, errdefs.IsInvalidArgument(err), "error %v is not InvalidArgument", err)
				return
			}
			assert.NilError(t, err)
			assert.Check(t, f.Until.Equal(tc.want.Until), "until: got %v, want %v", f.Until, tc.want.Until)
			f.Until, tc.want.Until = time.Time{}, time.Time{}
			assert.Check(t, is.DeepEqual(f, tc.want))
		})
	}
}

// parse reads --filter flags as the command does.
func parse(flags []string, now time.Time) (Filters, error) {
	args, err := ParseFilterFlags(flags)
	if err != nil {
		return Filters{}, err
	}
	return ParseFilters(args, now)
}

func TestMatchLabels(t *testing.T) {
	labels := map[string]string{"env": "ci", "team": "a"}
	tests := []struct {
		name string
		f    Filters
		want bool
	}{
		{name: "no filters", want: true},
		{name: "key present", f: Filters{Labels: []string{"env"}}, want: true},
		{name: "key and value", f: Filters{Labels: []string{"env=ci"}}, want: true},
		{name: "wrong value", f: Filters{Labels: []string{"env=prod"}}},
		{name: "all must match", f: Filters{Labels: []string{"env=ci", "missing"}}},
		{name: "label! matching excludes", f: Filters{NotLabels: []string{"team=a"}}},
		{name: "label! not matching keeps", f: Filters{NotLabels: []string{"team=b"}}, want: true},
		{name: "label! needs all to exclude", f: Filters{NotLabels: []string{"team=a", "missing"}}, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Check(t, is.Equal(tc.f.MatchLabels(labels), tc.want))
		})
	}
}
