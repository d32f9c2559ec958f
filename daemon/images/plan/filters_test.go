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
		{name: "bad dangling", flags: []string{"dangling=maybe"}, wantErr: "invalid filter 'dangling=[maybe]'"},
		{name: "two dangling", flags: []string{"dangling=true", "dangling=false"}, wantErr: "invalid filter 'dangling=[true false]'"},
		{name: "unknown filter", flags: []string{"before=foo"}, wantErr: "invalid filter 'before'"},
		{name: "references", flags: []string{"reference=busybox", "reference=*/app:*", "reference!=*:keep"}, want: Filters{DanglingOnly: true, References: []string{"busybox", "*/app:*"}, NotReferences: []string{"*:keep"}}},
		{name: "bad reference pattern", flags: []string{"reference=app:["}, wantErr: "invalid filter 'reference=app:[': syntax error in pattern"},
		{name: "bad reference! pattern", flags: []string{"reference!=[a-"}, wantErr: "invalid filter 'reference!=[a-': syntax error in pattern"},
		{name: "no equals", flags: []string{"dangling"}, wantErr: "bad format of filter (expected name=value)"},
		{name: "until duration", flags: []string{"until=1h"}, want: Filters{DanglingOnly: true, Until: now.Add(-time.Hour)}},
		{name: "until RFC3339", flags: []string{"until=2025-01-02T03:04:05Z"}, want: Filters{DanglingOnly: true, Until: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}},
		{name: "until date", flags: []string{"until=2025-01-02"}, want: Filters{DanglingOnly: true, Until: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)}},
		{name: "until unix seconds", flags: []string{"until=1700000000"}, want: Filters{DanglingOnly: true, Until: time.Unix(1700000000, 0)}},
		{name: "until unix fraction", flags: []string{"until=1700000000.5"}, want: Filters{DanglingOnly: true, Until: time.Unix(1700000000, 500000000)}},
		{name: "bad until", flags: []string{"until=notatime"}, wantErr: `invalid value for 'until' filter: failed to parse value as time or duration: invalid seconds "notatime": invalid syntax`},
		{name: "bad until time", flags: []string{"until=2025-13-01"}, wantErr: `invalid value for 'until' filter: parsing time "2025-13-01": month out of range`},
		{name: "bad until fraction", flags: []string{"until=17.x"}, wantErr: `invalid value for 'until' filter: failed to parse value as time or duration: invalid nanoseconds: invalid character 'x' at position 0`},
		{name: "empty until", flags: []string{"until="}, wantErr: `invalid value for 'until' filter: failed to parse value as time or duration: value is empty`},
		{name: "until local time", flags: []string{"until=2025-01-02T03:04"}, want: Filters{DanglingOnly: true, Until: time.Date(2025, 1, 2, 3, 4, 0, 0, time.UTC)}},
		{name: "until zoned hour", flags: []string{"until=2025-01-02T03+02:00"}, want: Filters{DanglingOnly: true, Until: time.Date(2025, 1, 2, 1, 0, 0, 0, time.UTC)}},
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

func TestMatchName(t *testing.T) {
	const (
		bb136    = "docker.io/library/busybox:1.36"
		bbLatest = "docker.io/library/busybox:latest"
		appV1    = "example.com/team/app:v1"
	)
	appDigest, dangling := "example.com/team/app@"+targetA.String(), DanglingName(targetA)
	tests := []struct {
		name string
		f    Filters
		want []string
	}{
		{name: "no filters", want: []string{bb136, bbLatest, appV1, appDigest, dangling}},
		{name: "repository", f: Filters{References: []string{"busybox"}}, want: []string{bb136, bbLatest}},
		{name: "tag glob", f: Filters{References: []string{"busybox:1.*"}}, want: []string{bb136}},
		{name: "path glob", f: Filters{References: []string{"example.com/*/app"}}, want: []string{appV1, appDigest}},
		{name: "one of several", f: Filters{References: []string{"nothing", "busybox:latest"}}, want: []string{bbLatest}},
		{name: "reference! excludes", f: Filters{NotReferences: []string{"busybox:latest"}}, want: []string{bb136, appV1, appDigest, dangling}},
		{name: "both", f: Filters{References: []string{"busybox"}, NotReferences: []string{"*:1.*"}}, want: []string{bbLatest}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, n := range []string{bb136, bbLatest, appV1, appDigest, dangling} {
				if tc.f.MatchName(n) {
					got = append(got, n)
				}
			}
			assert.Check(t, is.DeepEqual(got, tc.want))
		})
	}
}

func TestCheckPrune(t *testing.T) {
	for _, tc := range []struct {
		name    string
		f       Filters
		wantErr string
	}{
		{name: "dangling only", f: Filters{DanglingOnly: true}},
		{name: "all by reference", f: Filters{References: []string{"app"}}},
		{name: "dangling only, reference! alone", f: Filters{DanglingOnly: true, NotReferences: []string{"app"}}},
		{name: "dangling only by reference", f: Filters{DanglingOnly: true, References: []string{"app"}}, wantErr: "invalid filter 'reference': it matches names, and a dangling image has none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.CheckPrune()
			if tc.wantErr == "" {
				assert.Check(t, err)
				return
			}
			assert.Check(t, is.ErrorContains(err, tc.wantErr))
			assert.Check(t, errdefs.IsInvalidArgument(err))
		})
	}
}
