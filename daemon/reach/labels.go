package reach

import (
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// The labels containerd's garbage collector reads (core/metadata/gc.go).
const (
	LabelRoot          = "containerd.io/gc.root"
	LabelRefContent    = "containerd.io/gc.ref.content"
	LabelRefImage      = "containerd.io/gc.ref.image"
	LabelRefSnapshot   = "containerd.io/gc.ref.snapshot."
	LabelBRefContent   = "containerd.io/gc.bref.content"
	LabelBRefImage     = "containerd.io/gc.bref.image"
	LabelBRefSnapshot  = "containerd.io/gc.bref.snapshot."
	LabelBRefContainer = "containerd.io/gc.bref.container"
	LabelCondSnapshot  = "containerd.io/gc.cond.snapshot"
	LabelCondUsedAt    = "containerd.io/gc.cond.value-usedat"
	LabelExpire        = "containerd.io/gc.expire"
	LabelFlat          = "containerd.io/gc.flat"
)

// LabelRefConfig is the reference a manifest names its config with.
const LabelRefConfig = LabelRefContent + ".config"

// Snapshot names a snapshot: its snapshotter and key.
type Snapshot struct{ Snapshotter, Key string }

// Refs are references to content, snapshots and image records.
type Refs struct {
	Content   []digest.Digest
	Snapshots []Snapshot
	Images    []string
}

func (r *Refs) add(o Refs) {
	r.Content = append(r.Content, o.Content...)
	r.Snapshots = append(r.Snapshots, o.Snapshots...)
	r.Images = append(r.Images, o.Images...)
}

// HasRefPrefix reports whether key is prefix itself or prefix followed by
// "." or "/", as containerd reads reference labels.
func HasRefPrefix(key, prefix string) bool {
	rest, ok := strings.CutPrefix(key, prefix)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '/')
}

// snapshotRef reads a snapshot reference label "<prefix><snapshotter>[/…]".
func snapshotRef(key, prefix, value string) (Snapshot, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok || rest == "" {
		return Snapshot{}, false
	}
	name, _, _ := strings.Cut(rest, "/")
	return Snapshot{name, value}, true
}

// LabelRefs are the references labels carry, as the collector follows them
// from a marked object.
func LabelRefs(labels map[string]string) Refs {
	return readRefs(labels, LabelRefContent, LabelRefImage, LabelRefSnapshot)
}

// backRefs are the objects labels say reference the labelled one: when one
// of them is kept, so is it.
func backRefs(labels map[string]string) Refs {
	return readRefs(labels, LabelBRefContent, LabelBRefImage, LabelBRefSnapshot)
}

// readRefs reads the labels with the content, image and snapshot prefixes of
// one kind of reference.
func readRefs(labels map[string]string, contentPrefix, imagePrefix, snapshotPrefix string) Refs {
	var r Refs
	for k, v := range labels {
		switch {
		case HasRefPrefix(k, contentPrefix):
			// Taken as it is, as the collector takes it: a value that is
			// no digest names no blob.
			r.Content = append(r.Content, digest.Digest(v))
		case HasRefPrefix(k, imagePrefix):
			r.Images = append(r.Images, v)
		default:
			if sk, ok := snapshotRef(k, snapshotPrefix, v); ok {
				r.Snapshots = append(r.Snapshots, sk)
			}
		}
	}
	return r
}

// isRoot reports whether labels make an object a root: any key starting
// with the root label.
func isRoot(labels map[string]string) bool {
	for k := range labels {
		if strings.HasPrefix(k, LabelRoot) {
			return true
		}
	}
	return false
}

// expired reports whether labels carry an expiry that has passed.
func expired(labels map[string]string, now time.Time) bool {
	exp, err := time.Parse(time.RFC3339, labels[LabelExpire])
	return err == nil && now.After(exp)
}

// condition is a conditional snapshot reference: the labelled object keeps
// the snapshot while the snapshot's used-at time satisfies one of tests.
type condition struct {
	snapshot Snapshot
	tests    []func(usedAt time.Time) bool
}

// conditions reads "containerd.io/gc.cond.snapshot.<snapshotter>" =
// "usedat<24h,usedat>1h|<key>" labels, as containerd 2.4 does.
func conditions(labels map[string]string, now time.Time) []condition {
	var out []condition
	for k, v := range labels {
		rest, ok := strings.CutPrefix(k, LabelCondSnapshot)
		if !ok {
			continue
		}
		sn, _, _ := strings.Cut(strings.TrimLeft(rest, "./"), "/")
		conds, key, ok := strings.Cut(v, "|")
		if !ok {
			continue
		}
		c := condition{snapshot: Snapshot{sn, key}}
		for cond := range strings.SplitSeq(conds, ",") {
			if test := usedAtTest(cond, now); test != nil {
				c.tests = append(c.tests, test)
			}
		}
		if len(c.tests) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// usedAtTest parses "usedat<D" or "usedat>D".
func usedAtTest(cond string, now time.Time) func(time.Time) bool {
	rest, ok := strings.CutPrefix(cond, "usedat")
	if !ok || rest == "" {
		return nil
	}
	op, value := rest[0], rest[1:]
	if strings.HasPrefix(value, "=") {
		return nil // <= and >= are not conditions containerd knows
	}
	d, err := time.ParseDuration(value)
	if err != nil {
		return nil
	}
	switch op {
	case '<':
		return func(t time.Time) bool { return now.Sub(t) < d }
	case '>':
		return func(t time.Time) bool { return now.Sub(t) > d }
	}
	return nil
}
