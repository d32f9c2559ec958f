package reach

import (
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/images"
)

// keep returns what the collector keeps when records are the image records
// left: what unexpired records, containers, leases, ingests, sandboxes and
// root labels reach, following references, snapshot parents, back
// references and satisfied conditional references.
func (g *Graph) keep(records []images.Image) map[node]bool {
	byName := make(map[string]images.Image, len(records))
	for _, r := range records {
		byName[r.Name] = r
	}
	// Edges that depend on the records left, beside the graph's own.
	extra := map[node][]node{}
	for d, info := range g.Content {
		g.addSatisfied(extra, contentNode(d), info.Labels)
	}
	var queue []node
	push := func(r Refs) { queue = append(queue, nodes(r)...) }
	for _, r := range records {
		n := imageNode(r.Name)
		g.addSatisfied(extra, n, r.Labels)
		if !expired(r.Labels, g.now) {
			queue = append(queue, n)
			continue
		}
		// An expired record is no root, but what it says references it
		// keeps it.
		for _, by := range nodes(backRefs(r.Labels)) {
			extra[by] = append(extra[by], n)
		}
	}
	push(g.roots)
	for id := range g.containers {
		queue = append(queue, containerNode(id))
	}
	size := len(g.Content) + len(g.Snapshots) + len(records)
	kept := make(map[node]bool, size)
	seen := make(map[node]bool, size)
	for len(queue) > 0 {
		n := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if seen[n] {
			continue
		}
		seen[n] = true
		// Back references hold even from an object that is not there, as
		// containerd sends them before it looks the object up.
		queue = append(queue, g.backRefs[n]...)
		queue = append(queue, extra[n]...)
		if !g.has(n, byName) {
			continue
		}
		kept[n] = true
		switch {
		case n.container != "":
			// Its snapshot and labels are roots already.
		case n.content != "":
			push(g.contentRefs(n.content))
		case n.image != "":
			r := byName[n.image]
			queue = append(queue, contentNode(r.Target.Digest))
			push(LabelRefs(r.Labels))
		default:
			info := g.Snapshots[n.snap]
			if info.Parent != "" {
				queue = append(queue, snapshotNode(Snapshot{n.snap.Snapshotter, info.Parent}))
			}
			push(LabelRefs(info.Labels))
		}
	}
	g.keepFlat(kept, byName)
	return kept
}

// keepFlat keeps what flat leases hold, and nothing it references: a flat
// snapshot keeps its parents, a flat image its target.
func (g *Graph) keepFlat(kept map[node]bool, byName map[string]images.Image) {
	for _, d := range g.flat.Content {
		kept[contentNode(d)] = kept[contentNode(d)] || g.has(contentNode(d), byName)
	}
	for _, name := range g.flat.Images {
		if r, ok := byName[name]; ok {
			kept[imageNode(name)] = true
			target := contentNode(r.Target.Digest)
			kept[target] = kept[target] || g.has(target, byName)
		}
	}
	for _, s := range g.flat.Snapshots {
		for n := snapshotNode(s); g.has(n, byName); n = snapshotNode(Snapshot{s.Snapshotter, g.Snapshots[n.snap].Parent}) {
			kept[n] = true
		}
	}
}

// addSatisfied adds the conditional snapshot references of from whose
// condition the snapshot's used-at time satisfies now.
func (g *Graph) addSatisfied(edges map[node][]node, from node, labels map[string]string) {
	for _, c := range conditions(labels, g.now) {
		info, ok := g.Snapshots[c.snapshot]
		if !ok {
			continue
		}
		if satisfies(info.Labels, c.tests) {
			edges[from] = append(edges[from], snapshotNode(c.snapshot))
		}
	}
}

// satisfies reports whether any used-at value of a snapshot's labels (every
// key with the value label's prefix) passes any of tests.
func satisfies(labels map[string]string, tests []func(time.Time) bool) bool {
	for k, v := range labels {
		if !strings.HasPrefix(k, LabelCondUsedAt) {
			continue
		}
		usedAt, err := time.Parse(time.RFC3339, v)
		if err != nil {
			continue
		}
		for _, test := range tests {
			if test(usedAt) {
				return true
			}
		}
	}
	return false
}

func nodes(r Refs) []node {
	var out []node
	for _, d := range r.Content {
		out = append(out, contentNode(d))
	}
	for _, s := range r.Snapshots {
		out = append(out, snapshotNode(s))
	}
	for _, name := range r.Images {
		out = append(out, imageNode(name))
	}
	return out
}

func (g *Graph) has(n node, records map[string]images.Image) bool {
	switch {
	case n.content != "":
		_, ok := g.Content[n.content]
		return ok
	case n.container != "":
		return g.containers[n.container]
	case n.image != "":
		_, ok := records[n.image]
		return ok
	}
	_, ok := g.Snapshots[n.snap]
	return ok
}
