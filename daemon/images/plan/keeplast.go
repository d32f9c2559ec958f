package plan

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// keepLast returns the names that keep-last n keeps: in each repository,
// every name of the n images that most recently got a name there. A tag and
// a digest of one image count once, so that CRI's two names of a pull keep
// one image, not half of two. An image's time in a repository is when its
// newest name there was created, or when its content arrived (arrived), if
// later: a pull that moves a tag updates the tag's record, which keeps its
// creation time, and brings the new image's content. Not the record's
// update time, which any change of labels moves too (CRI pinning an image,
// a user labelling it).
func keepLast(records []images.Image, arrived map[digest.Digest]time.Time, n int) map[string]bool {
	if n <= 0 {
		return nil
	}
	type named struct {
		names  []string
		latest time.Time
	}
	repos := map[string]map[digest.Digest]*named{}
	for _, r := range records {
		if IsDangling(r.Name) || IsCRIImageID(r) {
			continue
		}
		ref, err := reference.ParseNormalizedNamed(r.Name)
		if err != nil {
			continue
		}
		repo := ref.Name()
		if repos[repo] == nil {
			repos[repo] = map[digest.Digest]*named{}
		}
		img := repos[repo][r.Target.Digest]
		if img == nil {
			img = &named{latest: arrived[r.Target.Digest]}
			repos[repo][r.Target.Digest] = img
		}
		img.names = append(img.names, r.Name)
		if t := CreatedAt(r); t.After(img.latest) {
			img.latest = t
		}
	}
	kept := map[string]bool{}
	for _, byTarget := range repos {
		targets := slices.SortedFunc(maps.Keys(byTarget), func(a, b digest.Digest) int {
			// Newest first; the digest breaks ties so that runs agree.
			if c := byTarget[b].latest.Compare(byTarget[a].latest); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		for _, t := range targets[:min(n, len(targets))] {
			for _, name := range byTarget[t].names {
				kept[name] = true
			}
		}
	}
	return kept
}
