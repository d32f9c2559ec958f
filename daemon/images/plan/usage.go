package plan

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// shortID matches what docker accepts as a (possibly truncated) image ID.
var shortID = regexp.MustCompile(`^[a-f0-9]{1,64}$`)

// Usage is what a set of containers holds in a snapshot of records.
type Usage struct {
	// Targets must keep their content: their dangling record stays.
	Targets map[digest.Digest]bool
	// Names are records a container was created by.
	Names map[string]bool
	// KeepOne are targets used by ID or digest: one name of theirs stays
	// when prune would remove them all.
	KeepOne map[digest.Digest]bool
	// Warnings name containers whose reference could not be resolved.
	Warnings []string
}

// Lineage maps the snapshot an image is unpacked to (its chain ID in a
// snapshotter) to the targets unpacked there.
type Lineage map[Parent][]digest.Digest

// ResolveUsage resolves what every container uses against records. It never
// fails: a reference that cannot be resolved is a warning, and the
// container's other evidence (its image ID, its rootfs) still protects its
// target.
func ResolveUsage(records []images.Image, ctrs []Container, lineage Lineage) Usage {
	u := Usage{
		Targets: map[digest.Digest]bool{},
		Names:   map[string]bool{},
		KeepOne: map[digest.Digest]bool{},
	}
	r := newResolver(records)
	for _, c := range ctrs {
		res, err := r.uses(c, lineage)
		if err != nil {
			u.Warnings = append(u.Warnings, fmt.Sprintf("%s container %s: image %q: %v", c.Source, c.ID, c.Image, err))
		}
		for _, t := range res.targets {
			u.Targets[t] = true
		}
		for _, t := range res.byID {
			u.KeepOne[t] = true
		}
		if res.name != "" {
			u.Names[res.name] = true
		}
	}
	return u
}

// uses resolves everything c says of its image: the reference it was
// created with, the image ID and config digest recorded at creation, the
// snapshot its rootfs was prepared on. The error is about the reference
// alone; the rest is resolved whatever it says.
func (r resolver) uses(c Container, lineage Lineage) (resolution, error) {
	var res resolution
	var err error
	if c.Image != "" {
		res, err = r.resolve(c.Image)
		if res.byIDRef {
			res.byID = slices.Clone(res.targets)
		}
		if _, known := r.byName[c.ConfigID.String()]; c.RunsRecorded && (c.ImageID != "" || (c.ConfigID != "" && known)) {
			res.targets, res.byID = nil, nil
		}
	}
	if c.ImageID != "" {
		res.targets = append(res.targets, c.ImageID)
	}
	if c.ConfigID != "" {
		// CRI's image ID names its ID record.
		if t, ok := r.byName[c.ConfigID.String()]; ok {
			res.targets = append(res.targets, t)
		}
	}
	if c.Rootfs != nil {
		res.targets = append(res.targets, lineage[*c.Rootfs]...)
	}
	return res, err
}

// UsersPerTarget counts, for each target, the containers that use it, each
// container once however many sources report it.
func UsersPerTarget(records []images.Image, ctrs []Container, lineage Lineage) map[digest.Digest]int {
	r := newResolver(records)
	users := map[digest.Digest]map[string]bool{}
	for _, c := range ctrs {
		res, _ := r.uses(c, lineage)
		for _, t := range res.targets {
			if users[t] == nil {
				users[t] = map[string]bool{}
			}
			users[t][c.ID] = true
		}
	}
	out := map[digest.Digest]int{}
	for t, ids := range users {
		out[t] = len(ids)
	}
	return out
}

// UsersOf lists, sorted and each once, the IDs of the containers that use
// target by any evidence a prune accepts: a removal names one in its
// conflict.
func UsersOf(records []images.Image, ctrs []Container, lineage Lineage, target digest.Digest) []string {
	r := newResolver(records)
	var ids []string
	for _, c := range ctrs {
		if res, _ := r.uses(c, lineage); slices.Contains(res.targets, target) {
			ids = append(ids, c.ID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Resolve resolves a reference as a user types it (a name, a digest, a full
// or truncated image ID) against records: the record it names, if any, and
// the targets it means.
func Resolve(records []images.Image, ref string) (name string, targets []digest.Digest, err error) {
	res, err := newResolver(records).resolve(ref)
	return res.name, res.targets, err
}

// resolver resolves image references against a snapshot of records.
type resolver struct {
	byName  map[string]digest.Digest
	targets map[digest.Digest]bool
	// ids are the hex of the sha256 targets, sorted: a prefix is found by
	// halving, not by a pass over every target.
	ids []string
}

func newResolver(records []images.Image) resolver {
	r := resolver{byName: map[string]digest.Digest{}, targets: map[digest.Digest]bool{}}
	for _, rec := range records {
		r.byName[rec.Name] = rec.Target.Digest
		if !r.targets[rec.Target.Digest] && rec.Target.Digest.Algorithm() == digest.SHA256 {
			r.ids = append(r.ids, rec.Target.Digest.Encoded())
		}
		r.targets[rec.Target.Digest] = true
	}
	slices.Sort(r.ids)
	return r
}

// resolution is what one container uses.
type resolution struct {
	name    string          // the record it names, if any
	targets []digest.Digest // the targets it uses
	byIDRef bool            // created by ID or digest: keep one name
	byID    []digest.Digest // the targets that keep one name
}

func (r resolver) resolve(ref string) (resolution, error) {
	ref = strings.TrimSpace(ref)
	if target, ok := r.byName[ref]; ok {
		// A record of exactly that name: a normalized name, or CRI's
		// "sha256:<config digest>" ID record.
		return resolution{name: ref, targets: []digest.Digest{target}}, nil
	}
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
			res.byIDRef = true
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
	i, _ := slices.BinarySearch(r.ids, hex)
	for ; i < len(r.ids) && strings.HasPrefix(r.ids[i], hex); i++ {
		matches = append(matches, digest.NewDigestFromEncoded(digest.SHA256, r.ids[i]))
	}
	switch len(matches) {
	case 0:
		return resolution{}, fmt.Errorf("no image with ID sha256:%s", hex)
	case 1:
		return resolution{targets: matches, byIDRef: true}, nil
	}
	return resolution{targets: matches}, fmt.Errorf("image ID %q is ambiguous: it matches %d images", hex, len(matches))
}
