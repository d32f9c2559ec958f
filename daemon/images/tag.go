package images

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/client/pkg/stringid"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/daemon/store"
	imgleases "github.com/imgprune/imgprune/pkg/leases"
)

// Tag gives the image source (a name or an image ID) the name target. A
// target name that pointed elsewhere is moved; its old target keeps its
// content through its dangling record.
func (s *Service) Tag(ctx context.Context, source, target string) (images.Image, error) {
	ctx = s.withNamespace(ctx)
	named, err := reference.ParseNormalizedNamed(target)
	if err != nil {
		return images.Image{}, fmt.Errorf("invalid target name %q: %v: %w", target, err, errdefs.ErrInvalidArgument)
	}
	if _, ok := named.(reference.Digested); ok {
		return images.Image{}, fmt.Errorf("invalid target name %q: refusing to create a tag with a digest reference: %w", target, errdefs.ErrInvalidArgument)
	}
	name := reference.TagNameOnly(named).String()
	src, err := s.resolveImage(ctx, source)
	if err != nil {
		return images.Image{}, err
	}
	// Hold the source's content while the name is made, so that a prune
	// running now cannot collect it under the new name.
	ctx, release, err := imgleases.Hold(ctx, s.stores.Leases, s.stores.Content, src.Target.Digest)
	if err != nil {
		return images.Image{}, fmt.Errorf("tag %s: %w", source, err)
	}
	defer release()
	if err := s.keepCounted(ctx, src.Target, src.CreatedAt); err != nil {
		return images.Image{}, err
	}
	img := images.Image{Name: name, Target: src.Target, Labels: src.Labels}
	created, err := s.stores.Images.Create(ctx, img)
	if !errdefs.IsAlreadyExists(err) {
		if err != nil {
			return images.Image{}, fmt.Errorf("tag %s as %s: %w", source, name, err)
		}
		return created, nil
	}
	old, err := s.stores.Images.Get(ctx, name)
	if err != nil {
		return images.Image{}, fmt.Errorf("tag %s as %s: %w", source, name, err)
	}
	if old.Target.Digest != src.Target.Digest {
		records, err := store.ListRecords(ctx, s.stores.Images)
		if err != nil {
			return images.Image{}, fmt.Errorf("tag %s as %s: list images: %w", source, name, err)
		}
		user, err := s.lastNameInUse(ctx, records, name, old.Target)
		if err != nil {
			return images.Image{}, fmt.Errorf("tag %s as %s: %w", source, name, err)
		}
		if user != "" {
			return images.Image{}, errdefs.ErrConflict.WithMessage(fmt.Sprintf("conflict: %s is the last name of image %s, which container %s uses, and in namespace %s, which keeps no dangling records, its names are what keeps its content: tag the image with another name first",
				name, stringid.TruncateID(old.Target.Digest.String()), stringid.TruncateID(user), s.namespace))
		}
	}
	if err := s.keepCounted(ctx, old.Target, old.CreatedAt); err != nil {
		return images.Image{}, err
	}
	updated, err := s.stores.Images.Update(ctx, img, "target")
	if err != nil {
		return images.Image{}, fmt.Errorf("tag %s as %s: %w", source, name, err)
	}
	return updated, nil
}

// resolveImage finds the record that ref (a name, a digest or a possibly
// truncated image ID) means.
func (s *Service) resolveImage(ctx context.Context, ref string) (images.Image, error) {
	records, err := store.ListRecords(ctx, s.stores.Images)
	if err != nil {
		return images.Image{}, fmt.Errorf("list images: %w", err)
	}
	return resolveIn(records, ref)
}

// resolveIn finds the record among records that ref means.
func resolveIn(records []images.Image, ref string) (images.Image, error) {
	name, targets, err := plan.Resolve(records, ref)
	if err != nil {
		return images.Image{}, fmt.Errorf("no such image %q: %v: %w", ref, err, errdefs.ErrNotFound)
	}
	want := targets[0]
	for _, rec := range records {
		if rec.Target.Digest == want && (name == "" || rec.Name == name) {
			return rec, nil
		}
	}
	return images.Image{}, fmt.Errorf("no such image %q: %w", strings.TrimSpace(ref), errdefs.ErrNotFound)
}
