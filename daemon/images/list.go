package images

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/reach"
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
// listed once with an empty name. It writes nothing.
func (s *Service) Images(ctx context.Context) ([]Summary, error) {
	ctx = s.withNamespace(ctx)
	ctrs, _, err := s.listContainers(ctx)
	if err != nil {
		return nil, err
	}
	records, err := s.listRecords(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	// Sizes and lineage need the content alone, not the collector's roots.
	inv, err := reach.ListContent(ctx, s.stores.Content)
	if err != nil {
		return nil, err
	}
	lineage, err := s.lineage(ctx, inv.Content, records, ctrs)
	if err != nil {
		return nil, err
	}
	users := plan.UsersPerTarget(records, ctrs, lineage)
	byTarget := map[digest.Digest][]images.Image{}
	for _, r := range records {
		byTarget[r.Target.Digest] = append(byTarget[r.Target.Digest], r)
	}
	var out []Summary
	for target, recs := range byTarget {
		tr := plan.SortRecords(recs)
		row := Summary{ID: target, Size: inv.Size(target), Containers: users[target]}
		for _, r := range tr.Names {
			row.Name, row.Created = r.Name, r.CreatedAt
			out = append(out, row)
		}
		if len(tr.Names) == 0 {
			row.Created = plan.CreatedAt(slices.MinFunc(recs, func(a, b images.Image) int { return plan.CreatedAt(a).Compare(plan.CreatedAt(b)) }))
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

// Reclaimable returns the bytes a prune with f would free now.
func (s *Service) Reclaimable(ctx context.Context, f plan.Filters) (int64, error) {
	rep, err := s.Prune(ctx, f, DryRun())
	if err != nil {
		return 0, err
	}
	return int64(rep.SpaceReclaimed), nil
}
