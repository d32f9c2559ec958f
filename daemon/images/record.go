package images

import (
	"strings"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
)

// danglingPrefix is the name prefix of a dangling record. It is the one Moby
// uses, so a Docker Engine sharing the namespace and imgprune agree on them.
const danglingPrefix = "moby-dangling@"

// pinnedLabel marks an image that containerd's CRI must never garbage collect.
const (
	pinnedLabel = "io.cri-containerd.pinned"
	pinnedValue = "pinned"
)

// danglingName is the name of the record that keeps target's content alive
// whatever names point at it: one per target, the target's refcount.
func danglingName(target digest.Digest) string {
	return danglingPrefix + target.String()
}

// isDangling reports whether name is a dangling record's name.
func isDangling(name string) bool {
	return strings.HasPrefix(name, danglingPrefix)
}

// isCRIImageID reports whether img is one of the records containerd's CRI
// plugin names an image by its ID: "sha256:<config digest>", labelled as
// managed by CRI. It is a name of the image, not one a user typed.
func isCRIImageID(img images.Image) bool {
	if img.Labels[imgcontainers.CRIImageLabel] != imgcontainers.CRIImageManaged {
		return false
	}
	_, err := digest.Parse(img.Name)
	return err == nil
}

// isPinned reports whether CRI pinned the record.
func isPinned(img images.Image) bool {
	return img.Labels[pinnedLabel] == pinnedValue
}

// FamiliarName is how docker shows a record's name: "busybox:latest" for
// "docker.io/library/busybox:latest", and "" for a dangling record. Names
// that do not parse are shown as stored.
func FamiliarName(name string) string {
	if isDangling(name) {
		return ""
	}
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return name
	}
	return reference.FamiliarString(ref)
}
