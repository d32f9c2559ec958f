package plan

import "github.com/opencontainers/go-digest"

// Container is what one source knows of a container's image, in any state
// (created, stopped, running). Each field is set only when the source
// records it.
type Container struct {
	ID string
	// Source names the source that reported the container, for warnings.
	Source string
	// Image is the reference as the container's creator typed it: a name,
	// "repo:tag@digest", "repo@digest", a full or truncated image ID.
	Image string
	// ImageID is the target digest resolved at creation.
	ImageID digest.Digest
	// ConfigID is the image config digest resolved at creation: CRI's image
	// ID, the name of its `sha256:<config digest>` record.
	ConfigID digest.Digest
	// RunsRecorded is set when the creator runs the image it recorded at
	// creation (ImageID, ConfigID), whatever Image names now, as CRI does:
	// the kubelet's image GC keeps that image and not the one a moved tag
	// names since. Image then protects its name but no other target.
	RunsRecorded bool
	// Rootfs is the snapshot the container's root filesystem was prepared
	// on: the chain ID of the image it was unpacked from.
	Rootfs *Parent
}

// Parent is a snapshot a container's snapshot was prepared on.
type Parent struct {
	Snapshotter string
	// Key is the parent snapshot's key: for an unpacked image, its chain ID.
	Key string
}
