package images

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
)

// Summary is one row of the image listing: a target and one of its names,
// or the target alone when it has none.
type Summary struct {
	ID digest.Digest `json:"Id"`
	// Name is the normalized name, empty for a dangling target.
	Name    string    `json:"Name,omitempty"`
	Created time.Time `json:"Created"`
	// Size is the content the target reaches, in bytes.
	Size int64 `json:"Size"`
	// Containers counts the containers that use the target.
	Containers int `json:"Containers"`
}

// Images lists one row per target and name; a target without a name is
// listed once with an empty name.
func (s *Service) Images(ctx context.Context) ([]Summary, error) {
	ctx = s.withNamespace(ctx)
	records, err := s.stores.Images.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	if records, err = s.adopt(ctx, records, true); err != nil {
		return nil, err
	}
	ctrRecords, err := s.containerRecords(ctx)
	if err != nil {
		return nil, err
	}
	ctrs, err := s.listContainers(ctx, ctrRecords)
	if err != nil {
		return nil, err
	}
	// Sizes need the content alone, not the collector's roots.
	inv, err := s.listContent(ctx)
	if err != nil {
		return nil, err
	}
	users := containersPerTarget(records, ctrs)
	byTarget := map[digest.Digest][]images.Image{}
	for _, r := range records {
		byTarget[r.Target.Digest] = append(byTarget[r.Target.Digest], r)
	}
	var out []Summary
	for target, recs := range byTarget {
		row := Summary{ID: target, Size: inv.size(target), Containers: users[target]}
		named := false
		for _, r := range recs {
			if isDangling(r.Name) {
				continue
			}
			named = true
			row.Name, row.Created = r.Name, r.CreatedAt
			out = append(out, row)
		}
		if !named {
			row.Created = recs[0].CreatedAt
			out = append(out, row)
		}
	}
	slices.SortFunc(out, func(a, b Summary) int {
		// Named rows first, then dangling targets.
		if (a.Name == "") != (b.Name == "") {
			return cmp.Compare(b.Name, a.Name)
		}
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// size is the content reachable from target.
func (inv *inventory) size(target digest.Digest) int64 {
	var n int64
	seen := map[digest.Digest]bool{}
	queue := refs{content: []digest.Digest{target}}
	for len(queue.content) > 0 {
		d := queue.content[len(queue.content)-1]
		queue.content = queue.content[:len(queue.content)-1]
		info, ok := inv.content[d]
		if !ok || seen[d] {
			continue
		}
		seen[d] = true
		n += info.Size
		queue.add(labelRefs(info.Labels))
	}
	return n
}

// containersPerTarget counts, for each target, the containers that use it.
func containersPerTarget(records []images.Image, ctrs []Container) map[digest.Digest]int {
	r := newResolver(records)
	out := map[digest.Digest]int{}
	for _, c := range ctrs {
		targets := map[digest.Digest]bool{}
		if c.ImageID != "" {
			targets[c.ImageID] = true
		}
		res, _ := r.resolve(c.Image)
		for _, t := range res.targets {
			targets[t] = true
		}
		for t := range targets {
			out[t]++
		}
	}
	return out
}

// Reclaimable returns the bytes a prune with f would free now.
func (s *Service) Reclaimable(ctx context.Context, f Filters) (int64, error) {
	rep, err := s.Prune(ctx, f, DryRun())
	if err != nil {
		return 0, err
	}
	return int64(rep.SpaceReclaimed), nil
}
