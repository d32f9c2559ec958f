package prune

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store"
)

// lookAgain lists the containers again: containers are created while a
// prune runs. A target the plan lets go that a container uses now keeps, or
// gets back, its dangling record. A Docker Engine is not asked again: what
// it made since, the rootfs source sees. It reports whether it could look:
// not when the containers cannot be listed.
func (a *applier) lookAgain(ctx context.Context) bool {
	ctrs, _, err := imgcontainers.List(ctx, a.s.Stores.Containers, imgcontainers.Again(a.snap.Containers, a.s.Sources...)...)
	if err == nil {
		// A new container's rootfs may sit on a chain no label names.
		a.snap.Lineage, err = imgcontainers.Lineage(ctx, a.s.Stores.Content, a.blobs, plan.Targets(a.snap.Records), ctrs)
	}
	if err != nil {
		a.fail(Failure{Name: "containers", Error: fmt.Sprintf("cannot look at the containers again before content goes, so what lost a record keeps a dangling record: %v", err)})
		return false
	}
	// Against the records the plan saw: a container may name one the prune
	// has removed since.
	u := plan.ResolveUsage(a.snap.Records, ctrs, a.snap.Lineage)
	for _, tp := range a.plan.Targets {
		d := tp.Target.Digest
		if !tp.Gone || !u.Targets[d] || a.rescued[d] {
			continue
		}
		a.rescued[d] = true
		if a.namesCount(d) || a.removed[plan.DanglingName(d)] || !a.hadDangling[d] {
			a.restore(ctx, tp.Target)
		}
		a.warnings = append(a.warnings, fmt.Sprintf("image %s came into use while the prune ran: it keeps its content", d))
	}
	return true
}

// restore gives a target back what counts it, if its content is still
// there, and reports whether it did: its dangling record, or, where names
// count, every record the prune removed of it: so that CRI lists an image
// whole and the kubelet finds it by the name its pod gives, and so that a
// store without dangling records gets none.
func (a *applier) restore(ctx context.Context, target ocispec.Descriptor) bool {
	_, err := a.s.Stores.Content.Info(ctx, target.Digest)
	switch {
	case errdefs.IsNotFound(err):
		a.fail(Failure{Name: target.Digest.String(), Error: fmt.Sprintf("its records were to be given back, but its content is gone: %v", err)})
		return false
	case err != nil:
		// Not known gone: the hold keeps it for the next prune.
		a.keepHold = true
		a.fail(Failure{Name: target.Digest.String(), Error: fmt.Sprintf("its records were to be given back, but it cannot be looked at, so the hold keeps it for the next prune: %v", err)})
		return false
	}
	ok := false
	if a.namesCount(target.Digest) {
		ok = a.recreate(ctx, a.removedOf(target.Digest))
	} else if err := store.EnsureDangling(ctx, a.s.Stores.Images, target, time.Time{}); err != nil {
		a.fail(Failure{Name: target.Digest.String(), Error: err.Error()})
	} else {
		ok = true
	}
	if !ok {
		// The hold keeps what could not be given back, for the next
		// prune (resumeDeadPrune).
		a.keepHold = true
	}
	return ok
}

// isCRI reports whether the plan saw target as a CRI image, taken whole.
func (a *applier) isCRI(target digest.Digest) bool {
	return plan.IsCRIImage(a.planned[target])
}

// namesCount reports whether target's names are its refcount, not a
// dangling record: a CRI image's, or any in a store without them.
func (a *applier) namesCount(target digest.Digest) bool {
	return !a.snap.DanglingRecords || a.isCRI(target)
}

// removedOf are the records of target the prune removed, as the plan saw
// them.
func (a *applier) removedOf(target digest.Digest) []images.Image {
	var out []images.Image
	for _, r := range a.planned[target] {
		if a.removed[r.Name] {
			out = append(out, r)
		}
	}
	return out
}

// recreate makes records again as the plan saw them, and reports whether
// every one is back; a name another client made again meanwhile is left as
// it is now. containerd stamps a record with its own creation time: the
// label CreatedAtLabel keeps when the record was first made, so that until
// and keep-last do not take the image for a new pull.
func (a *applier) recreate(ctx context.Context, records []images.Image) bool {
	ok := true
	for _, r := range records {
		labels := maps.Clone(r.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, plan.CreatedLabel(plan.CreatedAt(r)))
		_, err := a.s.Stores.Images.Create(ctx, images.Image{Name: r.Name, Target: r.Target, Labels: labels})
		if err != nil && !errdefs.IsAlreadyExists(err) {
			a.fail(Failure{Name: r.Name, Error: fmt.Sprintf("not given back: %v", err)})
			ok = false
			continue
		}
		delete(a.removed, r.Name)
		a.givenBack[r.Name] = true
	}
	return ok
}
