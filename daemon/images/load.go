package images

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store"

	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// Load imports an OCI or Docker archive, as `docker load` does: names come
// from the archive's annotations, each target gets its dangling record in
// the same step, and the layers are unpacked into the snapshotter. The whole
// load holds a lease, so a concurrent prune cannot collect it half-written.
func (s *Service) Load(ctx context.Context, archive io.Reader) ([]images.Image, error) {
	if s.client == nil {
		return nil, fmt.Errorf("load needs a containerd daemon: %w", errdefs.ErrNotImplemented)
	}
	ctx = s.withNamespace(ctx)
	// Everything the load writes is leased until it returns, then released
	// synchronously: what the archive brought that no record keeps (its
	// index, say) is gone before the next prune's accounting.
	ctx, release, err := imgleases.Temporary(ctx, s.stores.Leases, 24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer release()
	// The import moves names the archive shares with the store; where
	// dangling records are the refcount, the targets they leave must keep
	// theirs. Each is written as the import reads its name, after the
	// archive was read whole and before any name is written: a load that
	// fails so changes nothing.
	records, err := store.ListRecords(ctx, s.stores.Images)
	if err != nil {
		return nil, fmt.Errorf("load: list images: %w", err)
	}
	ictx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	moves := s.nameMoves(ctx, records, cancel)
	checked := s.newArchiveCheck(ctx)
	// The import asks, for every manifest and after reading the archive
	// whole, whether to skip its dangling record, with the name it takes.
	imported, err := s.client.Import(ictx, archive,
		client.WithImageRefTranslator(refName),
		client.WithSkipDigestRef(func(name string) bool {
			if err := checked.question(ctx); err != nil {
				cancel(err)
				return true
			}
			moves.adopt(name)
			// Where names count, a named image gets no dangling record.
			return name != "" && !s.DanglingRecords()
		}),
		// A nameless image's record is its dangling record, in any store:
		// it has no other name.
		client.WithDigestRef(plan.DanglingName),
	)
	if checked.err != nil {
		return nil, fmt.Errorf("load: %w", checked.err)
	}
	adoptErr := moves.err()
	if adoptErr != nil {
		return nil, fmt.Errorf("load: %w", adoptErr)
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	loaded := loadedImages(imported)
	unpacked := map[digest.Digest]bool{}
	for _, img := range imported {
		if unpacked[img.Target.Digest] {
			continue
		}
		unpacked[img.Target.Digest] = true
		err := client.NewImage(s.client, img).Unpack(ctx, s.snapshotter)
		if errdefs.IsNotFound(err) {
			// Nothing for this host's platform: loaded, not unpacked, as
			// docker loads a foreign image.
			log.G(ctx).WithError(err).WithField("image", img.Name).Warn("not unpacked")
			continue
		}
		if err != nil {
			// The images are in the store: say which, so nothing is lost
			// track of.
			return loaded, fmt.Errorf("loaded %s but could not unpack %s into %s: %w", describeImages(loaded), img.Name, s.snapshotter, err)
		}
	}
	return loaded, nil
}

// nameMoves adopts, in a store with dangling records, the targets whose
// names a load moves: the target a name points at now gets its dangling
// record before the import points the name elsewhere. The first failure
// cancels the import.
type nameMoves struct {
	s        *Service
	ctx      context.Context
	byName   map[string]images.Image
	byTarget map[digest.Digest][]images.Image
	records  []images.Image
	cancel   context.CancelCauseFunc
	mu       sync.Mutex
	adopted  map[digest.Digest]bool
	failed   error
}

func (s *Service) nameMoves(ctx context.Context, records []images.Image, cancel context.CancelCauseFunc) *nameMoves {
	m := &nameMoves{s: s, ctx: ctx, cancel: cancel, records: records, byName: map[string]images.Image{}, byTarget: plan.ByTarget(records), adopted: map[digest.Digest]bool{}}
	for _, r := range records {
		m.byName[r.Name] = r
	}
	return m
}

// adopt adopts the target name points at now, once. Where names are the
// refcount, only a used target whose last name this is gets a dangling
// record: the load may move that name, and the record rescues the content
// a container needs.
func (m *nameMoves) adopt(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.byName[name]
	if !ok || m.failed != nil || m.adopted[old.Target.Digest] {
		return
	}
	m.adopted[old.Target.Digest] = true
	if !m.s.DanglingRecords() {
		user, err := m.s.lastNameInUse(m.ctx, m.records, name, old.Target)
		if err == nil && user != "" {
			err = store.EnsureDangling(m.ctx, m.s.stores.Images, old.Target, plan.CreatedAt(old))
		}
		if err != nil {
			m.failed = err
			m.cancel(err)
		}
		return
	}
	for _, r := range plan.Adoptions(m.byTarget[old.Target.Digest]) {
		if err := store.CreateDangling(m.ctx, m.s.stores.Images, r); err != nil {
			m.failed = err
			// The import's writes fail from here on.
			m.cancel(err)
			return
		}
	}
}

func (m *nameMoves) err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed
}

// loadedImages are the images a load brought, as the Engine tells them:
// each name, and the dangling record of each manifest that had none. The
// import gives every manifest its names, then its dangling record: a
// dangling record right after a name of its target is that manifest's.
func loadedImages(imported []images.Image) []images.Image {
	var loaded []images.Image
	for i, img := range imported {
		if plan.IsDangling(img.Name) && i > 0 && !plan.IsDangling(imported[i-1].Name) && imported[i-1].Target.Digest == img.Target.Digest {
			continue
		}
		loaded = append(loaded, img)
	}
	return loaded
}

func describeImages(imgs []images.Image) string {
	var out []string
	for _, img := range imgs {
		if n := plan.FamiliarName(img.Name); n != "" {
			out = append(out, n)
		} else {
			out = append(out, img.Target.Digest.String())
		}
	}
	return strings.Join(out, ", ")
}

// refName turns an OCI layout's ref.name annotation into an image name. A
// bare tag names nothing: the image is loaded by its dangling record only.
func refName(name string) string {
	if !strings.ContainsAny(name, "/:@") {
		return ""
	}
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return ""
	}
	return reference.TagNameOnly(ref).String()
}
