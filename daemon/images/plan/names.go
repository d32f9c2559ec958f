package plan

import (
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// danglingPrefix is the name prefix of a dangling record. It is the one Moby
// uses, so a Docker Engine sharing the namespace and imgprune agree on them.
const danglingPrefix = "moby-dangling@"

// The label containerd's CRI plugin marks the image records it makes with.
const (
	CRIImageLabel   = "io.cri-containerd.image"
	CRIImageManaged = "managed"
)

// PinnedLabel marks an image that containerd's CRI must never garbage collect.
const (
	PinnedLabel = "io.cri-containerd.pinned"
	PinnedValue = "pinned"
)

// DanglingName is the name of the record that keeps target's content alive
// whatever names point at it: one per target, the target's refcount.
func DanglingName(target digest.Digest) string {
	return danglingPrefix + target.String()
}

// IsDangling reports whether name is a dangling record's name.
func IsDangling(name string) bool {
	return strings.HasPrefix(name, danglingPrefix)
}

// IsCRIImageID reports whether img is one of the records containerd's CRI
// plugin names an image by its ID: "sha256:<config digest>", labelled as
// managed by CRI. It is a name of the image, not one a user typed.
func IsCRIImageID(img images.Image) bool {
	if img.Labels[CRIImageLabel] != CRIImageManaged {
		return false
	}
	_, err := digest.Parse(img.Name)
	return err == nil
}

// IsPinned reports whether CRI pinned the record.
func IsPinned(img images.Image) bool {
	return img.Labels[PinnedLabel] == PinnedValue
}

// FamiliarName is how docker shows a record's name: "busybox:latest" for
// "docker.io/library/busybox:latest", and "" for a dangling record. Names
// that do not parse are shown as stored.
func FamiliarName(name string) string {
	if IsDangling(name) {
		return ""
	}
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return name
	}
	return reference.FamiliarString(ref)
}

// CreatedAtLabel keeps, on a dangling record adopted or made after its
// target entered the store, when the target entered: containerd stamps a
// record with its own creation time, and until must not see a target that
// an interrupted prune left nameless as new.
const CreatedAtLabel = "org.imgprune.created"

func CreatedLabel(t time.Time) map[string]string {
	if t.IsZero() {
		return nil
	}
	return map[string]string{CreatedAtLabel: t.UTC().Format(time.RFC3339Nano)}
}

// CreatedAt is when a record's target entered the store, as far as the
// record tells.
func CreatedAt(img images.Image) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, img.Labels[CreatedAtLabel]); err == nil {
		return t
	}
	return img.CreatedAt
}

// LastUsedLabel keeps, on a target's count record, when imgprune last saw a
// container use the target. It lives in containerd's store, so it outlives
// restarts of imgprune and of containerd.
const LastUsedLabel = "org.imgprune.last-used"

// LastUsedLabels is the label that records t as a target's last use.
func LastUsedLabels(t time.Time) map[string]string {
	return map[string]string{LastUsedLabel: t.UTC().Format(time.RFC3339Nano)}
}

// LastUsed is when a target was last seen in use, as its records tell: the
// newest stamp among them, zero when it never was.
func LastUsed(records []images.Image) time.Time {
	var last time.Time
	for _, r := range records {
		if t, err := time.Parse(time.RFC3339Nano, r.Labels[LastUsedLabel]); err == nil && t.After(last) {
			last = t
		}
	}
	return last
}

// CountRecord is the record that counts a target's references, on which its
// last use is stamped: its dangling record, or for a CRI image its first ID
// record. It is nil when the target has neither (another tool named it and
// no prune adopted it yet).
func (tr TargetRecords) CountRecord() *images.Image {
	if tr.Dangling != nil {
		return tr.Dangling
	}
	if len(tr.IDs) > 0 {
		return &tr.IDs[0]
	}
	return nil
}

// Targets lists the targets of records, each once, in their order.
func Targets(records []images.Image) []digest.Digest {
	seen := map[digest.Digest]bool{}
	var out []digest.Digest
	for _, r := range records {
		if !seen[r.Target.Digest] {
			seen[r.Target.Digest] = true
			out = append(out, r.Target.Digest)
		}
	}
	return out
}

// ByTarget groups records by their target.
func ByTarget(records []images.Image) map[digest.Digest][]images.Image {
	byTarget := map[digest.Digest][]images.Image{}
	for _, r := range records {
		byTarget[r.Target.Digest] = append(byTarget[r.Target.Digest], r)
	}
	return byTarget
}
