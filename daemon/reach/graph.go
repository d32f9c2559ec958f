// Package reach models containerd's garbage collector for one namespace:
// what a set of image records keeps, and what a collection frees, with the
// bytes. It is shared by the dry run, the accounting and check. It lists
// through containerd's own interfaces and never writes.
package reach

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/imgprune/imgprune/daemon/store"
)

// node is an object of the namespace the collector marks.
type node struct {
	content   digest.Digest
	snap      Snapshot
	image     string
	container string
}

func contentNode(d digest.Digest) node { return node{content: d} }
func snapshotNode(s Snapshot) node     { return node{snap: s} }
func imageNode(name string) node       { return node{image: name} }
func containerNode(id string) node     { return node{container: id} }

// Graph is what a namespace holds besides its image records, listed once:
// content and snapshots with their labels, and the collector's other roots
// (containers, unexpired leases, sandboxes, objects labelled as roots) and
// back references. It is not safe for concurrent use.
type Graph struct {
	// Content are the namespace's blobs.
	Content map[digest.Digest]content.Info
	// Snapshots are the snapshots of the snapshotters listed.
	Snapshots map[Snapshot]snapshots.Info

	roots Refs
	// flat are held by flat leases: kept, but not what they reference.
	flat Refs
	// backRefs lists, for an object, the objects that say they reference it.
	backRefs map[node][]node
	// containers are the namespace's containers: roots, which keep what
	// says it belongs to them (gc.bref.container).
	containers map[string]bool
	// now is when the graph was listed: expiries and conditions are read
	// against it.
	now time.Time
	// refs are the references of each blob, read from its labels once.
	refs map[digest.Digest]Refs
}

// contentRefs are the references blob d's labels carry.
func (g *Graph) contentRefs(d digest.Digest) Refs {
	if r, ok := g.refs[d]; ok {
		return r
	}
	r := LabelRefs(g.Content[d].Labels)
	g.refs[d] = r
	return r
}

func newGraph() *Graph {
	return &Graph{Content: map[digest.Digest]content.Info{}, Snapshots: map[Snapshot]snapshots.Info{}, backRefs: map[node][]node{}, containers: map[string]bool{}, now: time.Now(), refs: map[digest.Digest]Refs{}}
}

// ListContent lists the namespace's content alone: enough for sizes and
// for what is left after a collection. References are read from a blob's
// labels when first asked for.
func ListContent(ctx context.Context, cs content.Store) (*Graph, error) {
	return listContent(ctx, cs, false)
}

// ListGraph lists the namespace's content as the start of the collector's
// graph, which Complete finishes: it reads each blob's references as it
// goes, so that a walk run beside the other listings leaves Complete less
// to do after them.
func ListGraph(ctx context.Context, cs content.Store) (*Graph, error) {
	return listContent(ctx, cs, true)
}

func listContent(ctx context.Context, cs content.Store, withRefs bool) (*Graph, error) {
	// The walk is gathered first and the maps made at their size: grown
	// one blob at a time, they cost more than the walk itself.
	var infos []content.Info
	err := cs.Walk(ctx, func(info content.Info) error {
		infos = append(infos, info)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list content: %w", err)
	}
	g := newGraph()
	g.Content = make(map[digest.Digest]content.Info, len(infos))
	if withRefs {
		g.refs = make(map[digest.Digest]Refs, len(infos))
	}
	for _, info := range infos {
		g.Content[info.Digest] = info
		if withRefs {
			g.refs[info.Digest] = LabelRefs(info.Labels)
		}
	}
	return g, nil
}

// ListPresent lists the namespace's content and the snapshots of
// snapshotters: what a prune's accounting needs after its collection.
func ListPresent(ctx context.Context, st store.Stores, snapshotters map[string]bool) (*Graph, error) {
	g, err := ListContent(ctx, st.Content)
	if err != nil {
		return nil, err
	}
	for name := range snapshotters {
		if err := g.walkSnapshots(ctx, st, name); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Take lists everything the collector looks at in the namespace of ctx:
// one content walk, one walk per snapshotter anything references, the
// leases and the sandboxes. An ingest keeps the blob it adopts from another
// namespace, but the content API does not show such an ingest: the model
// cannot see that edge, so a dry run may count such a blob (one being
// written into this namespace while it is unreferenced here) as freed. ctrs are the namespace's container records;
// snapshotter is always walked.
func Take(ctx context.Context, st store.Stores, ctrs []containers.Container, snapshotter string) (*Graph, error) {
	g, err := ListGraph(ctx, st.Content)
	if err != nil {
		return nil, err
	}
	return Complete(ctx, st, g, ctrs, snapshotter)
}

// Complete adds to g, a graph of the namespace's content alone
// (ListGraph), everything else Take lists: a caller may list the content
// while it lists other things.
func Complete(ctx context.Context, st store.Stores, g *Graph, ctrs []containers.Container, snapshotter string) (*Graph, error) {
	snapshotters := map[string]bool{snapshotter: true}
	note := func(r Refs) {
		for _, s := range r.Snapshots {
			snapshotters[s.Snapshotter] = true
		}
	}
	for d, info := range g.Content {
		n := contentNode(d)
		if isRoot(info.Labels) {
			g.roots.Content = append(g.roots.Content, d)
		}
		g.addBackRefs(n, info.Labels)
		note(g.contentRefs(d))
	}
	for _, c := range ctrs {
		g.containers[c.ID] = true
		if c.SnapshotKey != "" {
			g.roots.Snapshots = append(g.roots.Snapshots, Snapshot{c.Snapshotter, c.SnapshotKey})
			snapshotters[c.Snapshotter] = true
		}
		refs := LabelRefs(c.Labels)
		g.roots.add(refs)
		note(refs)
	}
	if err := g.leaseRoots(ctx, st, snapshotters); err != nil {
		return nil, err
	}
	if err := g.sandboxRoots(ctx, st, snapshotters); err != nil {
		return nil, err
	}
	for name := range snapshotters {
		if err := g.walkSnapshots(ctx, st, name); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// addBackRefs records that n is kept whenever what its back reference
// labels name is.
func (g *Graph) addBackRefs(n node, labels map[string]string) {
	r := backRefs(labels)
	for _, d := range r.Content {
		g.backRefs[contentNode(d)] = append(g.backRefs[contentNode(d)], n)
	}
	for _, s := range r.Snapshots {
		g.backRefs[snapshotNode(s)] = append(g.backRefs[snapshotNode(s)], n)
	}
	for _, name := range r.Images {
		g.backRefs[imageNode(name)] = append(g.backRefs[imageNode(name)], n)
	}
	for k, id := range labels {
		if HasRefPrefix(k, LabelBRefContainer) {
			g.backRefs[containerNode(id)] = append(g.backRefs[containerNode(id)], n)
		}
	}
}

// leaseRoots adds what unexpired leases hold: kept, and, unless the lease
// is flat, what it references.
func (g *Graph) leaseRoots(ctx context.Context, st store.Stores, snapshotters map[string]bool) error {
	ls, err := st.Leases.List(ctx)
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	for _, l := range ls {
		if expired(l.Labels, g.now) {
			continue
		}
		r := &g.roots
		if _, flat := l.Labels[LabelFlat]; flat {
			r = &g.flat
		}
		resources, err := st.Leases.ListResources(ctx, l)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("list resources of lease %s: %w", l.ID, err)
		}
		for _, res := range resources {
			switch {
			case res.Type == "content":
				if d, err := digest.Parse(res.ID); err == nil {
					r.Content = append(r.Content, d)
				}
			case res.Type == "images":
				r.Images = append(r.Images, res.ID)
			case strings.HasPrefix(res.Type, "snapshots/"):
				name := strings.TrimPrefix(res.Type, "snapshots/")
				r.Snapshots = append(r.Snapshots, Snapshot{name, res.ID})
				snapshotters[name] = true
			}
		}
	}
	return nil
}

// sandboxRoots adds what sandboxes' labels reference: roots to containerd.
func (g *Graph) sandboxRoots(ctx context.Context, st store.Stores, snapshotters map[string]bool) error {
	if st.Sandboxes == nil {
		return nil
	}
	sbs, err := st.Sandboxes.List(ctx)
	if errdefs.IsNotImplemented(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list sandboxes: %w", err)
	}
	for _, sb := range sbs {
		refs := LabelRefs(sb.Labels)
		g.roots.add(refs)
		for _, s := range refs.Snapshots {
			snapshotters[s.Snapshotter] = true
		}
	}
	return nil
}

func (g *Graph) walkSnapshots(ctx context.Context, st store.Stores, name string) error {
	if st.Snapshotter == nil {
		return nil
	}
	sn := st.Snapshotter(name)
	if sn == nil {
		// An embedded store has only the snapshotters found on disk.
		return nil
	}
	err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		k := Snapshot{name, info.Name}
		g.Snapshots[k] = info
		if isRoot(info.Labels) {
			g.roots.Snapshots = append(g.roots.Snapshots, k)
		}
		g.addBackRefs(snapshotNode(k), info.Labels)
		return nil
	})
	// A snapshotter this daemon does not run holds nothing to count; the
	// daemon answers InvalidArgument for one it has not loaded.
	if err != nil && !errdefs.IsNotFound(err) && !errdefs.IsNotImplemented(err) && !errdefs.IsInvalidArgument(err) {
		return fmt.Errorf("list snapshots of %s: %w", name, err)
	}
	return nil
}
