package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/images/prune"
	"github.com/imgprune/imgprune/pkg/metrics"
)

// pruneAll is what `docker image prune -a` removes: every unused image.
var pruneAll = plan.Filters{}

// parseFilters reads the filters query parameter: the JSON object docker
// sends, {"key": {"value": true}}, or the older {"key": ["value"]}.
func parseFilters(r *http.Request) (map[string][]string, error) {
	raw := r.FormValue("filters")
	args := map[string][]string{}
	if raw == "" {
		return args, nil
	}
	var sets map[string]map[string]bool
	if err := json.Unmarshal([]byte(raw), &sets); err == nil {
		for key, values := range sets {
			for v, on := range values {
				if on {
					args[key] = append(args[key], v)
				}
			}
			slices.Sort(args[key])
		}
		return args, nil
	}
	var lists map[string][]string
	if err := json.Unmarshal([]byte(raw), &lists); err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter: %v", err))
	}
	return lists, nil
}

type listOptions struct {
	filters map[string][]string
	// sharedSize fills SharedSize, which is -1 otherwise, as the Engine
	// does.
	sharedSize bool
}

var listFilters = map[string]bool{"dangling": true, "label": true, "label!": true, "reference": true, "reference!": true, "before": true, "since": true, "until": true}

func (s *Server) listImages(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	args, err := parseFilters(r)
	if err != nil {
		return err
	}
	sums, _, err := s.imageSummaries(ctx, listOptions{filters: args, sharedSize: boolValue(r, "shared-size")})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, sums)
}

// imageSummaries lists one summary per target, newest first, as the
// Engine does, with the filters of `docker images`; and what all the
// images take on disk together.
func (s *Server) imageSummaries(ctx context.Context, o listOptions) ([]image.Summary, int64, error) {
	for key := range o.filters {
		if !listFilters[key] {
			return nil, 0, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter '%s'", key))
		}
	}
	// reference and reference! apply to each name, as the Engine applies
	// reference: an image shows the names that pass, and not at all when
	// it had names and none passed.
	refs, err := plan.ParseFilters(map[string][]string{"reference": o.filters["reference"], "reference!": o.filters["reference!"]}, time.Now())
	if err != nil {
		return nil, 0, err
	}
	rows, total, err := s.list.DiskUsage(ctx)
	if err != nil {
		return nil, 0, err
	}
	byID := map[digest.Digest]*image.Summary{}
	named, shown := map[digest.Digest]bool{}, map[digest.Digest]bool{}
	var order []digest.Digest
	for _, row := range rows {
		sum, ok := byID[row.ID]
		if !ok {
			// The Engine shows when the image was built, not when it came.
			created := row.ImageCreated
			if created.IsZero() {
				created = row.Created
			}
			sum = &image.Summary{
				ID: row.ID.String(), Created: created.Unix(), Size: row.Size + row.Unpacked, SharedSize: row.Shared,
				Containers: int64(row.Containers), Labels: row.Labels,
				RepoTags: []string{}, RepoDigests: []string{},
			}
			byID[row.ID] = sum
			order = append(order, row.ID)
		}
		if row.Name == "" {
			continue
		}
		named[row.ID] = true
		if !refs.MatchName(row.Name) {
			continue
		}
		shown[row.ID] = true
		ref, err := reference.ParseNormalizedNamed(row.Name)
		if err != nil {
			continue
		}
		if _, isDigest := ref.(reference.Canonical); !isDigest {
			sum.RepoTags = append(sum.RepoTags, reference.FamiliarString(ref))
		}
		if d, err := reference.WithDigest(reference.TrimNamed(ref), row.ID); err == nil {
			if name := reference.FamiliarString(d); !slices.Contains(sum.RepoDigests, name) {
				sum.RepoDigests = append(sum.RepoDigests, name)
			}
		}
	}
	match, err := s.imageFilter(ctx, o.filters, byID)
	if err != nil {
		return nil, 0, err
	}
	out := []image.Summary{}
	for _, id := range order {
		if named[id] != shown[id] || (!named[id] && !refs.MatchNameless()) {
			continue
		}
		sum := *byID[id]
		if !o.sharedSize {
			sum.SharedSize = -1
		}
		slices.Sort(sum.RepoDigests)
		if match(sum) {
			out = append(out, sum)
		}
	}
	slices.SortStableFunc(out, func(a, b image.Summary) int { return cmp.Compare(b.Created, a.Created) })
	return out, total, nil
}

// imageFilter turns the filters of `docker images` into a test; before and
// since compare with the summary of the image they name, among byID.
func (s *Server) imageFilter(ctx context.Context, args map[string][]string, byID map[digest.Digest]*image.Summary) (func(image.Summary) bool, error) {
	labels := plan.Filters{Labels: args["label"], NotLabels: args["label!"]}
	var tests []func(image.Summary) bool
	if values := args["dangling"]; len(values) > 0 {
		// The prune's rules and words are the list's: one of 1/true/0/false.
		f, err := plan.ParseFilters(map[string][]string{"dangling": values}, time.Now())
		if err != nil {
			return nil, err
		}
		dangling := f.DanglingOnly
		// An image is dangling when it has no name, a digest reference
		// being one: as the Engine and imgprune's prune have it.
		tests = append(tests, func(sum image.Summary) bool { return (len(sum.RepoTags)+len(sum.RepoDigests) == 0) == dangling })
	}
	tests = append(tests, func(sum image.Summary) bool { return labels.MatchLabels(sum.Labels) })
	for key, before := range map[string]bool{"before": true, "since": false} {
		for _, ref := range args[key] {
			target, _, err := s.read.Resolve(ctx, ref)
			if err != nil {
				return nil, noSuchImage(ref, err)
			}
			named, ok := byID[target.Digest]
			if !ok {
				return nil, errdefs.ErrNotFound.WithMessage("No such image: " + ref)
			}
			at := named.Created
			tests = append(tests, func(sum image.Summary) bool {
				if before {
					return sum.Created < at
				}
				return sum.Created > at
			})
		}
	}
	for _, v := range args["until"] {
		until, err := plan.ParseFilters(map[string][]string{"until": {v}}, time.Now())
		if err != nil {
			return nil, err
		}
		tests = append(tests, func(sum image.Summary) bool { return time.Unix(sum.Created, 0).Before(until.Until) })
	}
	return func(sum image.Summary) bool {
		for _, t := range tests {
			if !t(sum) {
				return false
			}
		}
		return true
	}, nil
}

// imageGet answers GET /images/{ref}/json.
func (s *Server) imageGet(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	ref, ok := strings.CutSuffix(r.PathValue("ref"), "/json")
	if !ok {
		return errdefs.ErrNotFound.WithMessage("page not found")
	}
	d, err := s.read.Inspect(ctx, ref)
	if err != nil {
		return noSuchImage(ref, err)
	}
	resp := image.InspectResponse{
		ID:          d.Target.Digest.String(),
		RepoTags:    []string{},
		RepoDigests: []string{},
		Size:        d.Size + d.Unpacked,
		RootFS:      image.RootFS{Type: "layers"},
		Metadata:    image.Metadata{LastTagTime: d.LastTagged},
		Descriptor:  &d.Target,
	}
	for _, name := range d.Names {
		ref, err := reference.ParseNormalizedNamed(name)
		if err != nil {
			continue
		}
		if _, isDigest := ref.(reference.Canonical); !isDigest {
			resp.RepoTags = append(resp.RepoTags, reference.FamiliarString(ref))
		}
		if c, err := reference.WithDigest(reference.TrimNamed(ref), d.Target.Digest); err == nil && !slices.Contains(resp.RepoDigests, reference.FamiliarString(c)) {
			resp.RepoDigests = append(resp.RepoDigests, reference.FamiliarString(c))
		}
	}
	if d.Config != nil {
		var cfg dockerspec.DockerOCIImage
		if err := json.Unmarshal(d.Config, &cfg); err != nil {
			return fmt.Errorf("decode config of %s: %w", ref, err)
		}
		resp.Config = &cfg.Config
		resp.Architecture, resp.Variant, resp.Os, resp.OsVersion = cfg.Architecture, cfg.Variant, cfg.OS, cfg.OSVersion
		resp.Author = cfg.Author
		if cfg.Created != nil {
			resp.Created = cfg.Created.Format(time.RFC3339Nano)
		}
		for _, l := range cfg.RootFS.DiffIDs {
			resp.RootFS.Layers = append(resp.RootFS.Layers, l.String())
		}
		if len(cfg.History) > 0 {
			resp.Comment = cfg.History[len(cfg.History)-1].Comment
		}
	}
	return writeJSON(w, http.StatusOK, resp)
}

// noSuchImage words a lookup that found nothing as the Engine does.
func noSuchImage(ref string, err error) error {
	if errdefs.IsNotFound(err) {
		return errdefs.ErrNotFound.WithMessage("No such image: " + ref)
	}
	return err
}

// imagePost answers POST /images/{ref}/tag.
func (s *Server) imagePost(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	ref, ok := strings.CutSuffix(r.PathValue("ref"), "/tag")
	if !ok {
		return errdefs.ErrNotFound.WithMessage("page not found")
	}
	repo, tag := r.FormValue("repo"), r.FormValue("tag")
	if repo == "" {
		return errdefs.ErrInvalidArgument.WithMessage("repository name (repo) is required")
	}
	target := repo
	if tag != "" {
		target += ":" + tag
	}
	if _, err := s.write.Tag(ctx, ref, target); err != nil {
		return noSuchImage(ref, err)
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

// removeImage answers DELETE /images/{ref}: `docker rmi`.
func (s *Server) removeImage(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	ref := r.PathValue("ref")
	resp, err := s.write.Remove(ctx, ref, boolValue(r, "force"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

// loadImages answers POST /images/load, with the lines docker prints.
func (s *Server) loadImages(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	loaded, err := s.write.Load(ctx, r.Body)
	if err != nil && len(loaded) == 0 {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for _, img := range loaded {
		line := "Loaded image ID: " + img.Target.Digest.String()
		if name := plan.FamiliarName(img.Name); name != "" {
			line = "Loaded image: " + name
		}
		if werr := enc.Encode(jsonstream.Message{Stream: line + "\n"}); werr != nil {
			return nil
		}
	}
	if err != nil {
		enc.Encode(jsonstream.Message{Error: &jsonstream.Error{Message: err.Error()}})
	}
	return nil
}

// pruneImages answers POST /images/prune. A prune that failed in part
// keeps its report: what it removed, and what failed and why.
func (s *Server) pruneImages(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	args, err := parseFilters(r)
	if err != nil {
		return err
	}
	f, err := plan.ParseFilters(args, time.Now())
	if err != nil {
		return err
	}
	rec := &metrics.Recorder{Run: metrics.Run{Namespace: s.namespace}}
	rep, err := s.prune.Prune(ctx, f, prune.WithProgress(rec))
	if errors.Is(err, images.ErrPruneRunning) {
		// Not a prune that ran: the one running counts.
		return err
	}
	rec.Run.Failed = err != nil || rep.Err() != nil
	s.metrics.Add(rec.Run)
	if err != nil {
		return err
	}
	if rep.ImagesDeleted == nil {
		rep.ImagesDeleted = []image.DeleteResponse{}
	}
	return writeJSON(w, http.StatusOK, rep)
}
