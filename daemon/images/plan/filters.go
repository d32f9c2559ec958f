package plan

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// acceptedFilters are the prune filters docker's image prune accepts.
var acceptedFilters = map[string]bool{
	"dangling":   true,
	"until":      true,
	"label":      true,
	"label!":     true,
	"reference":  true,
	"reference!": true,
}

// Filters select what a prune may remove. The zero value is not the default:
// use ParseFilters, which makes dangling-only the default as docker does.
type Filters struct {
	// DanglingOnly limits the prune to targets that have no name.
	DanglingOnly bool
	// Until, when set, limits the prune to records created before it.
	Until time.Time
	// Labels must all match the image config's labels.
	Labels []string
	// NotLabels exclude an image when all of them match.
	NotLabels []string
	// References, when set, limit the prune to names matching one of these
	// patterns, as `docker images --filter reference=` matches them. A
	// target without a name matches none.
	References []string
	// NotReferences keep every name matching one of these patterns.
	NotReferences []string
	// KeepLast, when above zero, keeps the names of the KeepLast images of
	// each repository that most recently got a name there. It is not one of
	// docker's filters: the command sets it.
	KeepLast int
	// Targets, when not nil, limit the prune to these targets: the others
	// keep every record. It is not one of docker's filters: a prune to a
	// free-space goal sets it to the targets that reach the goal.
	Targets map[digest.Digest]bool
}

// ParseFilterFlags turns --filter KEY=VALUE arguments into filter args.
func ParseFilterFlags(flags []string) (map[string][]string, error) {
	args := map[string][]string{}
	for _, f := range flags {
		key, value, ok := strings.Cut(f, "=")
		if !ok || key == "" {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("bad format of filter (expected name=value): %q", f))
		}
		key = strings.ToLower(strings.TrimSpace(key))
		args[key] = append(args[key], strings.TrimSpace(value))
	}
	return args, nil
}

// ParseFilters validates filter args with Moby's rules and error texts. now
// anchors durations in until. Every error is an errdefs.ErrInvalidArgument.
func ParseFilters(args map[string][]string, now time.Time) (Filters, error) {
	f := Filters{DanglingOnly: true}
	for _, key := range slices.Sorted(maps.Keys(args)) {
		if !acceptedFilters[key] {
			return Filters{}, invalidFilter(key, nil)
		}
	}
	if values := args["dangling"]; len(values) > 0 {
		dangling, err := parseBool(values)
		if err != nil {
			return Filters{}, invalidFilter("dangling", values)
		}
		f.DanglingOnly = dangling
	}
	if values := args["until"]; len(values) > 0 {
		if len(values) > 1 {
			return Filters{}, errdefs.ErrInvalidArgument.WithMessage("more than one until filter specified")
		}
		until, err := parseTimestamp(values[0], now)
		if err != nil {
			return Filters{}, errdefs.ErrInvalidArgument.WithMessage("invalid value for 'until' filter: " + err.Error())
		}
		f.Until = until
	}
	f.Labels = slices.Clone(args["label"])
	f.NotLabels = slices.Clone(args["label!"])
	for _, key := range []string{"reference", "reference!"} {
		for _, pattern := range args[key] {
			if _, err := path.Match(pattern, ""); err != nil {
				return Filters{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter '%s=%s': %v", key, pattern, err))
			}
		}
	}
	f.References = slices.Clone(args["reference"])
	f.NotReferences = slices.Clone(args["reference!"])
	return f, nil
}

// CheckPrune refuses filters that make a prune remove nothing whatever the
// store holds: a reference pattern in a prune of dangling images, which
// have no name to match.
func (f Filters) CheckPrune() error {
	if f.DanglingOnly && len(f.References) > 0 {
		return errdefs.ErrInvalidArgument.WithMessage("invalid filter 'reference': it matches names, and a dangling image has none; prune all images (-a, dangling=false) to select them by name")
	}
	return nil
}

// invalidFilter words a bad filter as Moby does, its values as Go prints
// a list: invalid filter 'dangling=[maybe]'.
func invalidFilter(key string, values []string) error {
	msg := "invalid filter '" + key
	if values != nil {
		msg += fmt.Sprintf("=%s", values)
	}
	return errdefs.ErrInvalidArgument.WithMessage(msg + "'")
}

// parseBool accepts what Moby's GetBoolOrDefault does: one value, 1/true/0/false.
func parseBool(values []string) (bool, error) {
	if len(values) != 1 {
		return false, errdefs.ErrInvalidArgument
	}
	switch strings.ToLower(values[0]) {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, errdefs.ErrInvalidArgument
}

// MatchLabels applies label and label! as Moby's prune does: every label
// filter must match, and an image matching all label! filters is excluded.
func (f Filters) MatchLabels(labels map[string]string) bool {
	if !matchKVList(f.Labels, labels) {
		return false
	}
	if len(f.NotLabels) > 0 && matchKVList(f.NotLabels, labels) {
		return false
	}
	return true
}

// matchKVList reports whether every "key" or "key=value" matches labels.
func matchKVList(filters []string, labels map[string]string) bool {
	for _, kv := range filters {
		key, value, hasValue := strings.Cut(kv, "=")
		got, ok := labels[key]
		if !ok || (hasValue && got != value) {
			return false
		}
	}
	return true
}

// MatchName applies reference and reference! to one name, as docker's
// image list does to each of an image's names: the name must match one
// reference pattern, when there are any, and no reference! pattern. A
// dangling record's name matches no pattern.
func (f Filters) MatchName(name string) bool {
	if len(f.References) == 0 && len(f.NotReferences) == 0 {
		return true
	}
	var ref reference.Named
	if !IsDangling(name) {
		ref, _ = reference.ParseNormalizedNamed(name)
	}
	if len(f.References) > 0 && !matchesAny(f.References, ref) {
		return false
	}
	return !matchesAny(f.NotReferences, ref)
}

// selectNames applies the reference filters to the names of one target,
// nil meaning all of them. A
// digest name of a repository one of whose tags of the target matched is
// selected with it, unless a reference! pattern keeps it: `reference=app:1`
// means the image app:1 is, and CRI and a pull by digest name it
// app@sha256:… too.
func (f Filters) selectNames(names []images.Image) map[string]bool {
	if len(f.References) == 0 && len(f.NotReferences) == 0 {
		return nil // every name: no map, no parsing, for the common prune
	}
	selected := map[string]bool{}
	repos := map[string]bool{}
	for _, r := range names {
		if f.MatchName(r.Name) {
			selected[r.Name] = true
			if ref, err := reference.ParseNormalizedNamed(r.Name); err == nil {
				repos[ref.Name()] = true
			}
		}
	}
	if len(f.References) == 0 {
		return selected
	}
	for _, r := range names {
		ref, err := reference.ParseNormalizedNamed(r.Name)
		if err != nil {
			continue
		}
		if _, isDigest := ref.(reference.Canonical); isDigest && repos[ref.Name()] && !matchesAny(f.NotReferences, ref) {
			selected[r.Name] = true
		}
	}
	return selected
}

// MatchImage applies reference and reference! to an image taken whole, as
// docker's image list selects an image: one of its names must match a
// reference pattern, when there are any, and none may match a reference!
// pattern. An image without a name matches no reference pattern.
func (f Filters) MatchImage(names []images.Image) bool {
	if len(f.References) == 0 && len(f.NotReferences) == 0 {
		return true
	}
	if len(names) == 0 {
		return f.MatchNameless()
	}
	matched := len(f.References) == 0
	for _, r := range names {
		ref, err := reference.ParseNormalizedNamed(r.Name)
		if err != nil {
			continue
		}
		if matchesAny(f.NotReferences, ref) {
			return false
		}
		matched = matched || matchesAny(f.References, ref)
	}
	return matched
}

// MatchNameless reports whether a target without a name passes the
// reference filters: only when there is no reference pattern to match.
func (f Filters) MatchNameless() bool {
	return len(f.References) == 0
}

// matchesAny reports whether ref matches one of patterns; a nil ref (a name
// that does not parse) matches none.
func matchesAny(patterns []string, ref reference.Named) bool {
	if ref == nil {
		return false
	}
	for _, p := range patterns {
		if ok, _ := reference.FamiliarMatch(p, ref); ok {
			return true
		}
	}
	return false
}

// matchCreated reports whether a record created at created passes until.
func (f Filters) matchCreated(created time.Time) bool {
	return f.Until.IsZero() || created.Before(f.Until)
}
