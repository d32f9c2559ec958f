package plan

import (
	"slices"
	"time"

	"github.com/containerd/containerd/v2/core/images"
)

// IsCRIManaged reports whether containerd's CRI plugin manages img: it
// pulled it, or made it its own.
func IsCRIManaged(img images.Image) bool {
	return img.Labels[CRIImageLabel] == CRIImageManaged
}

// IsCRIImage reports whether the records of one target are a CRI image:
// one image with every name (repo:tag, repo@digest, sha256:<config>), kept
// or removed whole, as the kubelet's image garbage collection removes an
// image by its ID and never takes a name off an image in use. The kubelet
// resolves a pod's image string again each time it starts a container, so
// a used image that lost the name its pod spec gives is pulled again, or
// fails on a node that cannot pull.
func IsCRIImage(records []images.Image) bool {
	return slices.ContainsFunc(records, IsCRIManaged)
}

// decideWhole decides on a CRI image: every record stays while a container
// uses it, and all go when none does and the filters select the image. The
// filters select an image, not a name: labels of its config, until against
// its newest record (a pull that moves a tag makes new digest and ID records,
// so a freshly pulled image is new), reference when one of its names matches
// and reference! when none does, keep-last when it keeps none of its names.
// Such an image is never adopted: its ID record already counts it, and a
// dangling record would show in `crictl images` as one more digest of it.
func decideWhole(tr TargetRecords, d decision, used bool, kept map[string]bool, f Filters, labels map[string]string) decision {
	if used {
		return d
	}
	if f.DanglingOnly && len(tr.Names) > 0 {
		return d
	}
	if !f.MatchLabels(labels) || !f.matchCreated(newestRecord(tr)) || !f.MatchImage(tr.Names) {
		return d
	}
	if slices.ContainsFunc(tr.Names, func(r images.Image) bool { return kept[r.Name] }) {
		return d
	}
	d.whole = true
	d.removeNames = append(slices.Clone(tr.Names), tr.IDs...)
	for _, r := range d.removeNames {
		d.plan.Untag = append(d.plan.Untag, r.Name)
	}
	d.removeDangling = tr.Dangling
	d.plan.Gone = len(d.removeNames) > 0 || tr.Dangling != nil
	return d
}

// newestRecord is when the newest record of a target was first made.
func newestRecord(tr TargetRecords) time.Time {
	var newest time.Time
	all := append(slices.Clone(tr.Names), tr.IDs...)
	if tr.Dangling != nil {
		all = append(all, *tr.Dangling)
	}
	for _, r := range all {
		if t := CreatedAt(r); t.After(newest) {
			newest = t
		}
	}
	return newest
}
