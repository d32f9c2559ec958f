package images

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/daemon/reach"
	"github.com/imgprune/imgprune/daemon/store"
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
	// Unpacked is what the snapshots of its layers take, Shared what of
	// its content and snapshots other targets share, and ImageCreated its
	// config's creation time: in DiskUsage only.
	Unpacked     int64     `json:"Unpacked,omitempty"`
	Shared       int64     `json:"Shared,omitempty"`
	ImageCreated time.Time `json:"ImageCreated,omitzero"`
	// Containers counts the containers that use the target.
	Containers int `json:"Containers"`
	// LastUsed is when imgprune last saw a container use the target: now
	// while one does, zero if it never saw one.
	LastUsed time.Time `json:"LastUsed,omitzero"`
	// Labels are the config labels of this host's platform: in DiskUsage
	// only.
	Labels map[string]string `json:"Labels,omitempty"`
}

// Images lists one row per target and name; a target without a name is
// listed once with an empty name. The only writes it makes are last-use
// stamps, on the count records of the targets containers use, and a
// stamp it cannot write does not fail the listing.
func (s *Service) Images(ctx context.Context) ([]Summary, error) {
	rows, _, err := s.images(ctx, false)
	return rows, err
}

// DiskUsage lists the images as Images does with docker's sizes, and what
// they take on disk together: each blob and each layer's snapshot once.
func (s *Service) DiskUsage(ctx context.Context) ([]Summary, int64, error) {
	return s.images(ctx, true)
}

// inUse is what a listing knows of the namespace: its records, its content
// and how many containers use each target.
type inUse struct {
	records []images.Image
	inv     *reach.Graph
	users   map[digest.Digest]int
}

// listInUse lists the namespace's records, content and containers, and
// resolves which targets the containers use.
func (s *Service) listInUse(ctx context.Context) (inUse, error) {
	ctrs, _, records, err := imgcontainers.ListUsed(ctx, s.stores, s.sources...)
	if err != nil {
		return inUse{}, err
	}
	// Sizes and lineage need the content alone, not the collector's roots.
	inv, err := reach.ListContent(ctx, s.stores.Content)
	if err != nil {
		return inUse{}, err
	}
	lineage, err := imgcontainers.Lineage(ctx, s.stores.Content, inv.Content, plan.Targets(records), ctrs)
	if err != nil {
		return inUse{}, err
	}
	return inUse{records: records, inv: inv, users: plan.UsersPerTarget(records, ctrs, lineage)}, nil
}

func (s *Service) images(ctx context.Context, dockerSizes bool) ([]Summary, int64, error) {
	ctx = s.withNamespace(ctx)
	u, err := s.listInUse(ctx)
	if err != nil {
		return nil, 0, err
	}
	inv, users := u.inv, u.users
	byTarget := plan.ByTarget(u.records)
	now := time.Now()
	if _, err := store.StampLastUse(ctx, s.stores.Images, byTarget, slices.Sorted(maps.Keys(users)), now, s.deletesInFlight); err != nil {
		log.G(ctx).WithError(err).Warn("listing images: last uses not recorded")
	}
	var sizes map[digest.Digest]dockerSize
	var total int64
	if dockerSizes {
		if sizes, total, err = s.dockerSizes(ctx, inv, byTarget); err != nil {
			return nil, 0, err
		}
	}
	var out []Summary
	for target, recs := range byTarget {
		tr := plan.SortRecords(recs)
		row := Summary{ID: target, Size: inv.Size(target), Containers: users[target], LastUsed: plan.LastUsed(recs)}
		if users[target] > 0 {
			row.LastUsed = now
		}
		if dockerSizes {
			row.Unpacked, row.Shared, row.ImageCreated, row.Labels = sizes[target].unpacked, sizes[target].shared, sizes[target].created, sizes[target].labels
		}
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
	return out, total, nil
}

type dockerSize struct {
	unpacked, shared int64
	created          time.Time
	labels           map[string]string
}

// dockerSizes sizes each target as docker does: what its snapshots take,
// and what of its content and snapshots another target also has; and all
// of them together, each blob and snapshot once.
func (s *Service) dockerSizes(ctx context.Context, inv *reach.Graph, byTarget map[digest.Digest][]images.Image) (map[digest.Digest]dockerSize, int64, error) {
	blobs := map[digest.Digest]map[digest.Digest]int64{}
	layers := map[digest.Digest]unpacking{}
	// A chain ID may equal a blob's digest (an uncompressed first layer):
	// blobs and snapshots are counted apart.
	blobUsers, layerUsers := map[digest.Digest]int{}, map[digest.Digest]int{}
	for target, recs := range byTarget {
		blobs[target] = inv.Reached(target)
		var err error
		if layers[target], err = s.unpacked(ctx, recs[0].Target); err != nil {
			return nil, 0, err
		}
		for d := range blobs[target] {
			blobUsers[d]++
		}
		for chain := range layers[target].layers {
			layerUsers[chain]++
		}
	}
	var total int64
	out := map[digest.Digest]dockerSize{}
	for target := range byTarget {
		size := dockerSize{created: layers[target].created, labels: layers[target].labels}
		for d, n := range blobs[target] {
			if blobUsers[d] > 1 {
				size.shared += n
			}
		}
		for chain, n := range layers[target].layers {
			size.unpacked += n
			if layerUsers[chain] > 1 {
				size.shared += n
			}
		}
		out[target] = size
	}
	for d := range blobUsers {
		total += inv.Content[d].Size
	}
	for _, u := range layers {
		for chain, n := range u.layers {
			if layerUsers[chain] > 0 {
				total += n
				layerUsers[chain] = 0 // once
			}
		}
	}
	return out, total, nil
}

// Reclaimable returns the bytes a prune with f would free now.
func (s *Service) Reclaimable(ctx context.Context, f plan.Filters) (int64, error) {
	rep, err := s.Prune(ctx, f, prune.DryRun())
	if err != nil {
		return 0, err
	}
	return int64(rep.SpaceReclaimed), nil
}
