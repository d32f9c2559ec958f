package images

import (
	"slices"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

// selection is the target ref means and the names that go with ref.
type selection struct {
	target ocispec.Descriptor
	// mine are the target's records, every kind.
	mine []images.Image
	// names are the names ref removes: every name of the target when byID.
	names []images.Image
	// byID: ref is an image ID, every record goes; more than one name is a
	// conflict.
	byID bool
	// named is the familiar name of the record ref named, for the conflict
	// of a used target; "" when ref named no record.
	named string
}

// selectRecords resolves ref as the service resolves references everywhere,
// and says which of its target's names go, as Moby's image delete does.
func selectRecords(records []images.Image, ref string) (selection, error) {
	name, targets, err := plan.Resolve(records, ref)
	if err != nil || len(targets) != 1 {
		// Ambiguous prefixes included, as Moby has them.
		return selection{}, noSuchImage(ref)
	}
	sel := selection{mine: recordsOf(records, targets[0])}
	if len(sel.mine) == 0 {
		return selection{}, noSuchImage(ref)
	}
	sel.target = sel.mine[0].Target
	all := plan.SortRecords(sel.mine).Names
	if name != "" {
		i := slices.IndexFunc(sel.mine, func(r images.Image) bool { return r.Name == name })
		if i < 0 {
			// repo:tag@digest whose tag is on another target, or none.
			return selection{}, noSuchImage(ref)
		}
		rec := sel.mine[i]
		if plan.IsDangling(rec.Name) || plan.IsCRIImageID(rec) {
			// The dangling record and CRI's ID record are IDs, not names.
			sel.byID, sel.names = true, all
			return sel, nil
		}
		named, err := reference.ParseNormalizedNamed(rec.Name)
		if err != nil {
			// A name another tool stored that does not parse: it alone.
			sel.names, sel.named = []images.Image{rec}, rec.Name
			return sel, nil
		}
		sel.names, sel.named = sameRepository(named, all), reference.FamiliarString(named)
		return sel, nil
	}
	if named, err := reference.ParseNormalizedNamed(ref); err == nil {
		if _, ok := named.(reference.Digested); ok {
			// repo@digest without a record of that name: the names of its
			// repository on that digest. Moby checks such a removal as it
			// checks one by ID, but for the names it keeps.
			if sel.names = sameRepository(named, all); len(sel.names) == 0 {
				return selection{}, noSuchImage(ref)
			}
			return sel, nil
		}
	}
	sel.byID, sel.names = true, all
	return sel, nil
}

// sameRepository lists the names that go with named, as Moby's
// getSameReferences has them: named's own record; with a tag, the digest
// references of its repository unless another tag of the repository stays;
// with a digest alone, every name of its repository. names are the target's.
func sameRepository(named reference.Named, names []images.Image) []images.Image {
	tagged, isTagged := named.(reference.Tagged)
	_, isDigested := named.(reference.Digested)
	everyTag := !isTagged && isDigested
	var same, digests []images.Image
	otherTag := false
	for _, r := range names {
		if r.Name == named.String() {
			same = append(same, r)
			continue
		}
		n, err := reference.ParseNormalizedNamed(r.Name)
		if err != nil || n.Name() != named.Name() {
			continue
		}
		t, hasTag := n.(reference.Tagged)
		switch {
		case everyTag:
			same = append(same, r)
		case !hasTag:
			digests = append(digests, r)
		case !isTagged || t.Tag() != tagged.Tag():
			otherTag = true
		default:
			same = append(same, r)
		}
	}
	if !everyTag && !otherTag {
		same = append(same, digests...)
	}
	return same
}

// recordsOf lists the records of target among records.
func recordsOf(records []images.Image, target digest.Digest) []images.Image {
	var out []images.Image
	for _, r := range records {
		if r.Target.Digest == target {
			out = append(out, r)
		}
	}
	return out
}

// users lists the containers that use the selected target, by the evidence
