package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// FuzzParseFilters: any --filter arguments (one per line) give filters or
// an InvalidArgument error, never a panic, and the same filters twice.
func FuzzParseFilters(f *testing.F) {
	for _, seed := range []string{
		"dangling=true", "dangling=false\ndangling=true", "dangling=maybe", "dangling=",
		"until=24h", "until=0", "until=-1h", "until=2006-01-02T15:04:05Z", "until=2006-01-02",
		"until=1136214245.5", "until=1136214245.1234567891234", "until=99999999999999999999",
		"until=-9223372036854775808ns", "until=1h\nuntil=2h", "until=",
		"label=a=b\nlabel!=c", "LABEL=x", " label = x ", "=x", "nofilter", "reference=app", "",
	} {
		f.Add(seed)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, in string) {
		args, err := ParseFilterFlags(strings.Split(in, "\n"))
		if err != nil {
			assert.Check(t, errdefs.IsInvalidArgument(err), "%v", err)
			return
		}
		got, err := ParseFilters(args, now)
		if err != nil {
			assert.Check(t, errdefs.IsInvalidArgument(err), "%v", err)
			assert.Check(t, err.Error() != "")
			return
		}
		for key := range args {
			assert.Check(t, acceptedFilters[key], "accepted an unknown filter %q", key)
		}
		again, err := ParseFilters(args, now)
		assert.NilError(t, err)
		assert.Check(t, is.DeepEqual(got, again))
		// Filters that parsed apply without a panic.
		got.matchCreated(now)
		got.MatchLabels(map[string]string{"a": "b"})
	})
}

// FuzzResolve: any reference a user types resolves to targets of the
// records (or the digest it names), or to an error; an ID resolves only to
// targets it is a prefix of.
func FuzzResolve(f *testing.F) {
	app, other, cfg := digest.FromString("app"), digest.FromString("other"), digest.FromString("config")
	records := []images.Image{
		{Name: "docker.io/library/app:1", Target: ocispec.Descriptor{Digest: app}},
		{Name: "example.com/team/other@" + other.String(), Target: ocispec.Descriptor{Digest: other}},
		{Name: DanglingName(other), Target: ocispec.Descriptor{Digest: other}},
		{Name: cfg.String(), Target: ocispec.Descriptor{Digest: app}},
	}
	for _, seed := range []string{
		"app:1", "app", "docker.io/library/app:1", "library/app:1@" + app.String(), "app@" + app.String(),
		"example.com/team/other@" + other.String(), app.String(), cfg.String(), "sha256:" + app.Encoded()[:12],
		app.Encoded()[:12], app.Encoded(), "a", "sha256:", "sha256:zz", "", " app:1 ", "APP:1",
		"a/b/c:d@sha256:zz", strings.Repeat("a", 300), "app:1\n", "localhost:5000/app", "[::1]:5000/app:1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		name, targets, err := Resolve(records, ref)
		again, againTargets, againErr := Resolve(records, ref)
		assert.Check(t, is.Equal(name, again))
		assert.Check(t, is.DeepEqual(targets, againTargets))
		assert.Check(t, (err == nil) == (againErr == nil))
		if err != nil {
			assert.Check(t, name == "")
			return
		}
		known := map[digest.Digest]bool{}
		for _, r := range records {
			known[r.Target.Digest] = true
		}
		assert.Check(t, len(targets) > 0)
		for _, d := range targets {
			assert.Check(t, d.Validate(), "%q", d)
			assert.Check(t, known[d] || strings.Contains(ref, d.String()), "%s is no record's target and not in %q", d, ref)
		}
		if hex, ok := strings.CutPrefix(strings.TrimSpace(ref), "sha256:"); ok && name == "" {
			for _, d := range targets {
				assert.Check(t, strings.HasPrefix(d.Encoded(), hex), "ID %q resolved to %s", ref, d)
			}
		}
	})
}
