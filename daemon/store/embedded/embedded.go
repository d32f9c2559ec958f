// Package embedded opens a containerd store in-process from a stopped
// daemon's root directory: containerd's metadata DB on its bolt file, its
// local content store and the snapshotters found on disk. It serves hosts
// where the daemon is stopped or cannot start (a full disk), and tests that
// need no daemon.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/metadata/boltutil"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/containerd/v2/plugins/snapshots/native"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/imgprune/imgprune/daemon/store"
)

// Store is a containerd store opened in-process from a daemon's root.
type Store struct {
	root         string
	bolt         *bolt.DB
	db           *metadata.DB
	snapshotters map[string]snapshots.Snapshotter
}

// metadataDir is where containerd's metadata plugin keeps its state, below
// the root.
const metadataDir = "io.containerd.metadata.v1.bolt"

// Opt configures Open.
type Opt func(*options)

type options struct{ create bool }

// CreateStore lets Open create a new, empty store where there is
// none, as tests need. Without it, a root that holds no store is an error, so
// that a mistyped root changes nothing.
func CreateStore() Opt { return func(o *options) { o.create = true } }

// Open opens the store under root. It fails with NotFound when root
// holds no store, with Conflict when a running daemon holds it, and with
// NotImplemented when it has snapshots of a snapshotter it cannot open.
func Open(ctx context.Context, root string, opts ...Opt) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	metaDB := filepath.Join(root, metadataDir, "meta.db")
	if !o.create && !exists(metaDB) {
		return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("no containerd store under %s: %s does not exist", root, metaDB))
	}
	if err := os.MkdirAll(filepath.Dir(metaDB), 0o711); err != nil {
		return nil, fmt.Errorf("open store at %s: %w", root, err)
	}
	cs, err := local.NewStore(filepath.Join(root, store.ContentDir))
	if err != nil {
		return nil, fmt.Errorf("open content store: %w", err)
	}
	sns, err := openSnapshotters(root)
	if err != nil {
		return nil, err
	}
	options := *bolt.DefaultOptions
	options.NoFreelistSync = true // as containerd opens it
	options.Timeout = time.Second
	bdb, err := bolt.Open(metaDB, 0o644, &options)
	if err != nil {
		closeAll(sns)
	}
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, errdefs.ErrConflict.WithMessage(fmt.Sprintf("the store under %s is in use, is containerd running? Use its socket (--address) instead", root))
	}
	if err != nil {
		return nil, fmt.Errorf("open metadata at %s: %w", root, err)
	}
	e := &Store{root: root, bolt: bdb, db: metadata.NewDB(bdb, cs, sns), snapshotters: sns}
	if err := e.checkSnapshotters(); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.db.Init(ctx); err != nil {
		e.Close()
		return nil, fmt.Errorf("open metadata at %s: %w", root, err)
	}
	return e, nil
}

// checkSnapshotters refuses a store with snapshots of a snapshotter it did
// not open: the collection would drop their records and leave their data on
// disk, uncounted.
func (e *Store) checkSnapshotters() error {
	var unknown []string
	err := e.bolt.View(func(tx *bolt.Tx) error {
		v1 := tx.Bucket([]byte("v1"))
		if v1 == nil {
			return nil
		}
		return v1.ForEach(func(ns, v []byte) error {
			sbkt := v1.Bucket(ns)
			if v != nil || sbkt == nil || sbkt.Bucket([]byte("snapshots")) == nil {
				return nil
			}
			sbkt = sbkt.Bucket([]byte("snapshots"))
			return sbkt.ForEach(func(name, v []byte) error {
				b := sbkt.Bucket(name)
				if k, _ := b.Cursor().First(); v == nil && k != nil && e.snapshotters[string(name)] == nil {
					unknown = append(unknown, string(ns)+"/"+string(name))
				}
				return nil
			})
		})
	})
	if err != nil {
		return fmt.Errorf("read snapshotters of %s: %w", e.root, err)
	}
	if len(unknown) > 0 {
		return errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("the store under %s has snapshots of snapshotters an offline prune cannot open (%s); prune through containerd's socket", e.root, strings.Join(unknown, ", ")))
	}
	return nil
}

// openSnapshotters opens the snapshotters that have state under root, and
// native, which needs nothing of the host.
func openSnapshotters(root string) (map[string]snapshots.Snapshotter, error) {
	sns := map[string]snapshots.Snapshotter{}
	nativeSn, err := native.NewSnapshotter(store.SnapshotterDir(root, "native"))
	if err != nil {
		return nil, fmt.Errorf("open native snapshotter: %w", err)
	}
	sns["native"] = nativeSn
	if dir := store.SnapshotterDir(root, "overlayfs"); exists(dir) {
		// As containerd runs it (sync_remove = false): a removal renames, and
		// the collection's cleanup removes the directories once. A
		// synchronous removal lists every directory each time.
		sn, err := overlay.NewSnapshotter(dir, overlay.AsynchronousRemove)
		if err != nil {
			closeAll(sns)
			return nil, fmt.Errorf("open overlayfs snapshotter: %w", err)
		}
		sns["overlayfs"] = sn
	}
	return sns, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Stores returns the store's interfaces for an image service.
func (e *Store) Stores() store.Stores {
	return store.Stores{
		Images:      metadata.NewImageStore(e.db),
		Content:     e.db.ContentStore(),
		Leases:      metadata.NewLeaseManager(e.db),
		Containers:  metadata.NewContainerStore(e.db),
		Sandboxes:   metadata.NewSandboxStore(e.db),
		Namespaces:  namespaceList{e.db},
		Snapshotter: e.db.Snapshotter,
		Collector:   e,
		Batch:       e.Batch,
	}
}

// Batch runs fn with one metadata transaction in its context: the writes fn
// makes through the stores with that context commit together, in one sync
// of the database, or not at all. fn must not use another context for the
// stores meanwhile: its transaction would wait on this one.
func (e *Store) Batch(ctx context.Context, fn func(context.Context) error) error {
	return e.db.Update(func(tx *bolt.Tx) error {
		return fn(boltutil.WithTransaction(ctx, tx))
	})
}

// Root is the directory the store was opened from.
func (e *Store) Root() string { return e.root }

// Collect runs the metadata store's garbage collection, which removes the
// content and snapshots nothing references.
func (e *Store) Collect(ctx context.Context) error {
	if _, err := e.db.GarbageCollect(ctx); err != nil {
		return fmt.Errorf("garbage collection: %w", err)
	}
	return nil
}

// Close releases the store, snapshotters included, for containerd.
func (e *Store) Close() error {
	return errors.Join(closeAll(e.snapshotters), e.bolt.Close())
}

func closeAll(sns map[string]snapshots.Snapshotter) error {
	var errs []error
	for name, sn := range sns {
		if err := sn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close snapshotter %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// namespaceList lists the namespaces of a metadata store.
type namespaceList struct{ db *metadata.DB }

func (n namespaceList) List(ctx context.Context) ([]string, error) {
	var out []string
	err := n.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = metadata.NewNamespaceStore(tx).List(ctx)
		return err
	})
	return out, err
}
