package images

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client/pkg/stringid"
	"github.com/opencontainers/go-digest"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/reach"
	"github.com/imgprune/imgprune/daemon/store"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// Remove removes ref the way `docker rmi` does, for the Engine API's DELETE
// /images/{name}, after Moby's containerd image store:
//
//   - a name (a tag or a digest reference) of a target that keeps other
//     names is untagged, with the digest references of its repository when
//     no other tag of the repository stays (a digest reference goes with
//     every name of its repository);
//   - a target's last names go with its records and, in one synchronous
//     collection, its content, unless a container uses it: that is a
//     Conflict, and with force the names go and the target stays;
//   - an image ID, a unique prefix of one, `sha256:<id>` or the dangling
//     record's name removes every record of the target: a Conflict when a
//     container uses it or, when it has more than one name, without force.
//
// Unlike docker, a target a container uses never loses its content: force
// untags it and it stays with its dangling record. Removals and prunes of the
// namespace run one at a time: Remove waits for the one that runs, up to a
// minute, then returns ErrPruneRunning. A reference that does not parse is an InvalidArgument, one
// that names nothing a NotFound; neither changes anything.
func (s *Service) Remove(ctx context.Context, ref string, force bool) ([]image.DeleteResponse, error) {
	if _, err := reference.ParseAnyReference(ref); err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	ctx = s.withNamespace(ctx)
	ctx, cancel := s.phase(ctx)
	defer cancel()
	held, unlock, err := s.waitLock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	r, err := s.planRemoval(ctx, ref, force)
	if err != nil {
		return nil, err
	}
	switch {
	case r.whole:
		return s.removeWhole(ctx, r, held)
	case r.used:
		return s.untagKeeping(ctx, r)
	}
	return s.untag(ctx, r.untag)
}

// removeLockWait bounds how long a removal waits for a prune or another
// removal of the namespace to end.
const removeLockWait = time.Minute

// waitLock takes the prune lock, waiting while another prune or removal
// holds it, as `docker rmi` waits for the daemon's own locks: a test
// harness removes images side by side. It gives up with ErrPruneRunning
// after removeLockWait, or when ctx ends.
func (s *Service) waitLock(ctx context.Context) (func() error, func(), error) {
	deadline := time.Now().Add(removeLockWait)
	// Each try writes leases: the wait grows, so that a long prune is not
	// met with a stream of writes (which also count towards the daemon's
	// next collection).
	wait := 50 * time.Millisecond
	for {
		held, unlock, err := s.lock(ctx)
		if !errors.Is(err, ErrPruneRunning) || time.Now().After(deadline) {
			return held, unlock, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// removal is what Remove decided, from one listing of the records and the
// containers.
type removal struct {
	selection
	// records are every record as listed: containers are resolved against
	// them, also once some are removed.
	records []images.Image
	// untag are the names that go.
	untag []images.Image
	// used: a container uses the target, which stays with its refcount
	// (its dangling record, or CRI's ID records).
	used bool
	// whole: every record of the target goes, and its content.
	whole bool
}

// planRemoval decides what removing ref does. It writes nothing.
func (s *Service) planRemoval(ctx context.Context, ref string, force bool) (removal, error) {
	ctrs, _, records, err := imgcontainers.ListUsed(ctx, s.stores, s.sources...)
	if err != nil {
		return removal{}, err
	}
	sel, err := selectRecords(records, ref)
	if err != nil {
		return removal{}, err
	}
	r := removal{selection: sel, records: records, untag: sel.names}
	names := plan.SortRecords(sel.mine).Names
	if !sel.byID && len(sel.names) < len(names) {
		// Other names stay: the target is only untagged, whoever uses it.
		return r, nil
	}
	users, err := s.users(ctx, records, sel, ctrs)
	if err != nil {
		return removal{}, err
	}
	switch {
	case len(users) > 0 && !force:
		return removal{}, sel.usedConflict(users[0])
	case sel.byID && len(names) > 1 && !force:
		return removal{}, deleteConflict(stringid.TruncateID(sel.target.Digest.String()), "image is referenced in multiple repositories")
	}
	r.untag, r.used, r.whole = names, len(users) > 0, len(users) == 0
	return r, nil
}

// a prune accepts: the reference they were created by, their image ID, CRI's
// metadata, and the image their rootfs was prepared on.
func (s *Service) users(ctx context.Context, records []images.Image, sel selection, ctrs []plan.Container) ([]string, error) {
	var blobs map[digest.Digest]content.Info
	if slices.ContainsFunc(ctrs, func(c plan.Container) bool { return c.Rootfs != nil }) {
		var err error
		if blobs, err = s.imageBlobs(ctx, sel.target.Digest); err != nil {
			return nil, err
		}
	}
	lineage, err := imgcontainers.Lineage(ctx, s.stores.Content, blobs, plan.Targets(sel.mine), ctrs)
	if err != nil {
		return nil, err
	}
	return plan.UsersOf(records, ctrs, lineage, sel.target.Digest), nil
}

// imageBlobs reads what the lineage of one target asks of its blobs: the
// labels of its indexes, manifests and configs. It spares a removal the walk
// of the whole content store a prune makes.
func (s *Service) imageBlobs(ctx context.Context, target digest.Digest) (map[digest.Digest]content.Info, error) {
	blobs := map[digest.Digest]content.Info{}
	queue := []digest.Digest{target}
	for len(queue) > 0 {
		d := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if _, seen := blobs[d]; seen {
			continue
		}
		info, err := s.stores.Content.Info(ctx, d)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read labels of %s: %w", d, err)
		}
		blobs[d] = info
		for k, v := range info.Labels {
			if k != reach.LabelRefConfig && !reach.HasRefPrefix(k, reach.LabelRefContent+".m") {
				continue
			}
			if child, err := digest.Parse(v); err == nil {
				queue = append(queue, child)
			}
		}
	}
	return blobs, nil
}

// untag removes names, each on its own, and reports them as docker does. A
// name removed or moved to another target since the listing is left alone.
func (s *Service) untag(ctx context.Context, names []images.Image) ([]image.DeleteResponse, error) {
	out := []image.DeleteResponse{}
	for _, r := range names {
		removed, err := s.deleteRecord(ctx, r)
		if err != nil {
			return out, err
		}
		if removed {
			out = append(out, image.DeleteResponse{Untagged: plan.FamiliarName(r.Name)})
		}
	}
	return out, nil
}

// deleteRecord removes r if it still points where it did when listed.
func (s *Service) deleteRecord(ctx context.Context, r images.Image) (bool, error) {
	target := r.Target
	err := s.stores.Images.Delete(ctx, r.Name, images.DeleteTarget(&target))
	switch {
	case errdefs.IsNotFound(err):
		log.G(ctx).WithField("image", r.Name).Debug("image changed since it was listed; left alone")
		return false, nil
	case err != nil:
		return false, fmt.Errorf("remove %s: %w", r.Name, err)
	}
	return true, nil
}

// untagKeeping untags a target a container uses, where a dangling record
// can keep its content (a store with dangling records; elsewhere it is a
// Conflict, even forced). Its dangling record keeps its content: it is made sure of before the names go and once more after,
// since another client may remove it meanwhile. A CRI image keeps its ID
// records instead, as a prune keeps them: a dangling record would show in
// `crictl images` as one more digest of the image.
func (s *Service) untagKeeping(ctx context.Context, r removal) ([]image.DeleteResponse, error) {
	if len(plan.SortRecords(r.mine).IDs) > 0 {
		return s.untag(ctx, r.untag)
	}
	if !s.DanglingRecords() {
		// Its names are all that keeps its content here.
		return nil, errdefs.ErrConflict.WithMessage(fmt.Sprintf("conflict: unable to delete %s - a container uses it, and in namespace %s, which keeps no dangling records, its names are what keeps its content: remove the container first",
			stringid.TruncateID(r.target.Digest.String()), s.namespace))
	}
	safe, cancel := s.finishing(ctx)
	defer cancel()
	if err := store.EnsureDangling(safe, s.stores.Images, r.target, entered(r.mine)); err != nil {
		return nil, err
	}
	out, err := s.untag(ctx, r.untag)
	if eerr := store.EnsureDangling(safe, s.stores.Images, r.target, entered(r.mine)); err == nil {
		err = eerr
	}
	return out, err
}

// removeWhole removes every record of the target and has containerd's
// collector take its content, in one synchronous collection. A container
// that came to use the target meanwhile keeps it.
func (s *Service) removeWhole(ctx context.Context, r removal, held func() error) ([]image.DeleteResponse, error) {
	// Until the last look at the containers, a hold keeps what the records
	// kept from the collections the daemon runs by itself. An embedded
	// store is this process's alone: nothing collects, nothing is created.
	release := func() {}
	if !s.exclusive {
		var err error
		if _, release, err = imgleases.Hold(ctx, s.stores.Leases, s.stores.Content, r.target.Digest); errdefs.IsNotFound(err) {
			release = func() {} // no content left to hold
		} else if err != nil {
			return nil, fmt.Errorf("hold %s: %w", r.target.Digest, err)
		}
	}
	out, kept, err := s.removeRecords(ctx, r, held)
	release()
	if err != nil || kept {
		return out, err
	}
	// The records are gone: interrupted or not, collect and report.
	ctx, cancel := s.finishing(ctx)
	defer cancel()
	if err := s.collect(ctx); err != nil {
		return out, fmt.Errorf("the records of %s are removed, but not yet its content: %w", r.target.Digest, err)
	}
	// Deleted, as in a prune's report, once the content left: a lease (a
	// load in flight, a dead prune's hold) may keep it a while longer.
	if _, err := s.stores.Content.Info(ctx, r.target.Digest); errdefs.IsNotFound(err) {
		out = append(out, image.DeleteResponse{Deleted: r.target.Digest.String()})
	}
	return out, nil
}

// removeRecords removes the names, CRI's ID records, then the dangling
// record, and looks at the containers once more before the content may go:
// kept tells a container came to use the target, which keeps, or gets back,
// its dangling record.
func (s *Service) removeRecords(ctx context.Context, r removal, held func() error) (out []image.DeleteResponse, kept bool, err error) {
	if out, err = s.untag(ctx, r.untag); err != nil {
		return out, false, err
	}
	tr := plan.SortRecords(r.mine)
	for _, id := range tr.IDs {
		if _, err := s.deleteRecord(ctx, id); err != nil {
			return out, false, err
		}
	}
	if tr.Dangling != nil {
		// Only the holder of the prune lock lets content go.
		if err := held(); err != nil {
			return out, false, fmt.Errorf("%s keeps its dangling record: %w", r.target.Digest, err)
		}
		if _, err := s.deleteRecord(ctx, *tr.Dangling); err != nil {
			return out, false, err
		}
	}
	if s.exclusive {
		return out, false, nil
	}
	safe, cancel := s.finishing(ctx)
	defer cancel()
	used, err := s.usedNow(safe, r)
	if err == nil && !used {
		return out, false, nil
	}
	if rerr := store.EnsureDangling(safe, s.stores.Images, r.target, entered(r.mine)); rerr != nil {
		return out, true, rerr
	}
	if err != nil {
		return out, true, fmt.Errorf("cannot look at the containers again, so %s keeps its content: %w", r.target.Digest, err)
	}
	log.G(ctx).WithField("image", r.target.Digest).Info("image came into use while it was removed: it keeps its content")
	return out, true, nil
}

// usedNow lists the containers again: they are created while a removal
// runs. A container resolves against the records as listed, since it may
// name one removed since.
func (s *Service) usedNow(ctx context.Context, r removal) (bool, error) {
	ctrs, _, err := s.listContainers(ctx)
	if err != nil {
		return false, err
	}
	users, err := s.users(ctx, r.records, r.selection, ctrs)
	return len(users) > 0, err
}

// entered is when the target of records entered the store, as far as they
// tell.
func entered(records []images.Image) time.Time {
	var first time.Time
	for _, r := range records {
		if t := plan.CreatedAt(r); first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first
}

// usedConflict is Moby's conflict for a target a stopped container uses:
// imgprune's containers never run.
func (sel selection) usedConflict(ctrID string) error {
	if sel.named != "" {
		return deleteConflict(sel.named, fmt.Sprintf("container %s is using its referenced image %s", stringid.TruncateID(ctrID), stringid.TruncateID(sel.target.Digest.String())))
	}
	return deleteConflict(stringid.TruncateID(sel.target.Digest.String()), "image is being used by stopped container "+stringid.TruncateID(ctrID))
}

// deleteConflict is Moby's soft imageDeleteConflict: one force overrides.
func deleteConflict(ref, msg string) error {
	return errdefs.ErrConflict.WithMessage(fmt.Sprintf("conflict: unable to delete %s (must be forced) - %s", ref, msg))
}

// noSuchImage is Moby's ErrImageDoesNotExist for a reference that parses.
func noSuchImage(ref string) error {
	parsed, err := reference.ParseAnyReference(ref)
	if err != nil {
		return errdefs.ErrNotFound.WithMessage("No such image: " + ref)
	}
	if named, ok := parsed.(reference.Named); ok {
		parsed = reference.TagNameOnly(named)
	}
	return errdefs.ErrNotFound.WithMessage("No such image: " + reference.FamiliarString(parsed))
}
