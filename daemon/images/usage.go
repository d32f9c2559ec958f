package images

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Container is what usage needs to know of a container, in any state.
type Container struct {
	ID string
	// Image is the reference as the container's creator typed it: a name,
	// "repo:tag@digest", "repo@digest", a full or truncated image ID.
	Image string
	// ImageID is the target digest resolved at creation, when the creator
	// recorded it.
	ImageID digest.Digest
}

// shortID matches what docker accepts as a (possibly truncated) image ID.
var shortID = regexp.MustCompile(`^[a-f0-9]{1,64}$`)

// usage is what a set of containers holds in a snapshot of records.
type usage struct {
	// targets must keep their content: their dangling record stays.
	targets map[digest.Digest]bool
	// names are records a container was created by.
	names map[string]bool
	// keepOne are targets used by ID or digest: one name of theirs stays
	// when prune would remove them all.
	keepOne map[digest.Digest]bool
	// warnings name containers whose reference could not be resolved.
	warnings []string
}

// resolveUsage resolves every container's reference against records. It never
// fails: a reference that cannot be resolved is a warning, and the
// container's ImageID, when known, still protects its target.
func resolveUsage(records []images.Image, containers []Container) usage {
	u := usage{
		targets: map[digest.Digest]bool{},
		names:   map[string]bool{},
		keepOne: map[digest.Digest]bool{},
	}
	r := newResolver(records)
	for _, c := range containers {
		if c.ImageID != "" {
			u.targets[c.ImageID] = true
		}
		if c.Image == "" {
			continue
		}
		res, err := r.resolve(c.Image)
		if err != nil {
			u.warnings = append(u.warnings, fmt.Sprintf("container %s: image %q: %v", c.ID, c.Image, err))
		}
		for _, t := range res.targets {
			u.targets[t] = true
			if res.byID {
				u.keepOne[t] = true
			}
		}
		if res.name != "" {
			u.names[res.name] = true
		}
	}
	return u
}

// resolver resolves image references against a snapshot of records.
type resolver struct {
	byName  map[string]digest.Digest
	targets map[digest.Digest]bool
}

func newResolver(records []images.Image) resolver {
	r := resolver{byName: map[string]digest.Digest{}, targets: map[digest.Digest]bool{}}
	for _, rec := range records {
		r.byName[rec.Name] = rec.Target.Digest
		r.targets[rec.Target.Digest] = true
	}
	return r
}

// resolution is what one container reference uses.
type resolution struct {
	name    string          // the record it names, if any
	targets []digest.Digest // the targets it uses
	byID    bool            // created by ID or digest: keep one name
}

func (r resolver) resolve(ref string) (resolution, error) {
	ref = strings.TrimSpace(ref)
	if hex, ok := strings.CutPrefix(ref, "sha256:"); ok {
		return r.byIDPrefix(hex)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		if shortID.MatchString(ref) {
			return r.byIDPrefix(ref)
		}
		return resolution{}, fmt.Errorf("invalid reference: %w", err)
	}
	if canonical, ok := named.(reference.Canonical); ok {
		res := resolution{targets: []digest.Digest{canonical.Digest()}}
		if tagged, ok := named.(reference.Tagged); ok {
			// repo:tag@digest runs the digest and protects repo:tag.
			withTag, _ := reference.WithTag(reference.TrimNamed(named), tagged.Tag())
			res.name = withTag.String()
		} else if _, ok := r.byName[named.String()]; ok {
			res.name = named.String()
		} else {
			res.byID = true
		}
		if !r.targets[canonical.Digest()] && res.name == "" {
			return resolution{}, fmt.Errorf("no image with digest %s", canonical.Digest())
		}
		return res, nil
	}
	name := reference.TagNameOnly(named).String()
	if target, ok := r.byName[name]; ok {
		return resolution{name: name, targets: []digest.Digest{target}}, nil
	}
	if shortID.MatchString(ref) {
		if res, err := r.byIDPrefix(ref); len(res.targets) > 0 {
			return res, err
		}
	}
	return resolution{}, fmt.Errorf("no such image: %s", name)
}

// byIDPrefix resolves a full or truncated image ID. An ambiguous prefix
// protects every target it matches but keeps no name.
func (r resolver) byIDPrefix(hex string) (resolution, error) {
	if !shortID.MatchString(hex) {
		return resolution{}, fmt.Errorf("invalid image ID %q", hex)
	}
	var matches []digest.Digest
	for t := range r.targets {
		if t.Algorithm() == digest.SHA256 && strings.HasPrefix(t.Encoded(), hex) {
			matches = append(matches, t)
		}
	}
	slices.Sort(matches)
	switch len(matches) {
	case 0:
		return resolution{}, fmt.Errorf("no image with ID sha256:%s", hex)
	case 1:
		return resolution{targets: matches, byID: true}, nil
	}
	return resolution{targets: matches}, fmt.Errorf("image ID %q is ambiguous: it matches %d images", hex, len(matches))
}
