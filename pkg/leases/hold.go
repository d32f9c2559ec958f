package leases

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// holdExpiry bounds what a process that dies while holding leaks.
const holdExpiry = time.Hour

// HoldOpt configures a hold.
type HoldOpt func(*holdOptions)

type holdOptions struct{ expiry time.Duration }

// HoldFor sets when a hold expires by itself (an hour by default): longer
// than the holder may take, since it is never renewed, and short enough
// that a holder that died leaks little for long.
func HoldFor(d time.Duration) HoldOpt {
	return func(o *holdOptions) {
		if d > 0 {
			o.expiry = d
		}
	}
}

// Hold leases the content d for the caller, once it is sure the content is
// still there, so that a write making a new name for it (a tag) cannot lose
// it to a collection meanwhile. The returned context carries the lease;
// release drops it.
func Hold(ctx context.Context, lm leases.Manager, cs content.Store, d digest.Digest) (context.Context, func(), error) {
	l, err := lm.Create(ctx, leases.WithRandomID(), leases.WithExpiration(holdExpiry))
	if err != nil {
		return ctx, nil, err
	}
	release := func() {
		dctx, cancel := releaseContext(ctx)
		defer cancel()
		if err := lm.Delete(dctx, l); err != nil {
			log.G(ctx).WithError(err).Debug("release a hold; it expires by itself")
		}
	}
	err = lm.AddResource(ctx, l, leases.Resource{ID: d.String(), Type: "content"})
	if err == nil {
		_, err = cs.Info(ctx, d)
	}
	if err != nil {
		release()
		return ctx, nil, err
	}
	return leases.WithLease(ctx, l.ID), release, nil
}

// Temporary leases whatever is written under the returned context (a load's
// blobs, records and snapshots) until release, which drops the lease
// synchronously: what nothing else references is gone when it returns, not
// at a later collection that would race the next prune's accounting.
func Temporary(ctx context.Context, lm leases.Manager, expiration time.Duration) (context.Context, func(), error) {
	l, err := lm.Create(ctx, leases.WithRandomID(), leases.WithExpiration(expiration))
	if err != nil {
		return ctx, nil, err
	}
	release := func() {
		dctx, cancel := releaseContext(ctx)
		defer cancel()
		if err := lm.Delete(dctx, l, leases.SynchronousDelete); err != nil {
			log.G(ctx).WithError(err).Warn("release a lease; it expires by itself")
		}
	}
	return leases.WithLease(ctx, l.ID), release, nil
}

// Sweep makes containerd walk its content store and unlink every blob no
// namespace references, under its own lock: never a file unlinked behind a
// running daemon's back. containerd sweeps only after a collection that
// removed content, so one is made to: a throwaway blob, written under a
// lease that is then dropped, and collect. Each snapshotter of sns is swept
// the same way, with a throwaway snapshot: containerd then removes what the
// snapshotter holds that no record knows, and has it clean up its
// directories (overlayfs removes those none of its snapshots own).
func Sweep(ctx context.Context, lm leases.Manager, cs content.Store, collect func(context.Context) error, sns ...snapshots.Snapshotter) error {
	l, err := lm.Create(ctx, leases.WithRandomID(), leases.WithExpiration(holdExpiry))
	if err != nil {
		return err
	}
	werr := writeNonce(leases.WithLease(ctx, l.ID), cs, "imgprune-sweep-")
	// A snapshotter that cannot take the throwaway snapshot is not swept;
	// the rest still are.
	var serr []error
	for _, sn := range sns {
		if werr != nil {
			break
		}
		if _, err := sn.Prepare(leases.WithLease(ctx, l.ID), "imgprune-sweep-"+randomHex(), ""); err != nil {
			serr = append(serr, fmt.Errorf("prepare the snapshot that makes containerd clean up: %w", err))
		}
	}
	if err := lm.Delete(ctx, l); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("write the blob that makes containerd sweep: %w", werr)
	}
	return errors.Join(append(serr, collect(ctx))...)
}

// holdRefsPerBlob bounds the labels of one holding blob, to keep each
// commit well below gRPC's message limit (16 MiB).
const holdRefsPerBlob = 20000

// HoldAll keeps the targets ts and what they reference until release,
// which drops the hold (not synchronously: the caller collects). A prune
// holds what it lets go this way while it deletes the records that kept
// it, so that no collection the daemon runs by itself takes content before
// the prune's last look at the containers. Only a prune holding the prune
// lock holds: a hold found by the next holder is one a prune that died
// left (LeftHolds).
//
// Its writes do not grow with ts: a lease holds one small blob per 20,000
// targets, whose reference labels name them, where a lease resource per
// target would cost one transaction each.
func HoldAll(ctx context.Context, lm leases.Manager, cs content.Ingester, ts []ocispec.Descriptor, opts ...HoldOpt) (func(), error) {
	if len(ts) == 0 {
		return func() {}, nil
	}
	o := holdOptions{expiry: holdExpiry}
	for _, opt := range opts {
		opt(&o)
	}
	l, err := lm.Create(ctx, leases.WithRandomID(), leases.WithExpiration(o.expiry), leases.WithLabel(holdLabel, "prune"))
	if err != nil {
		return nil, fmt.Errorf("hold content: %w", err)
	}
	release := func() {
		dctx, cancel := releaseContext(ctx)
		defer cancel()
		if err := lm.Delete(dctx, l); err != nil {
			log.G(ctx).WithError(err).Warn("release a hold; it expires by itself")
		}
	}
	for chunk := range slices.Chunk(ts, holdRefsPerBlob) {
		if err := holdingBlob(leases.WithLease(ctx, l.ID), cs, chunk); err != nil {
			release()
			return nil, fmt.Errorf("hold content: %w", err)
		}
	}
	return release, nil
}

// holdLabel marks the leases HoldAll makes; holdTypeLabel, on a holding
// blob, gives the media type of the target of the same number.
const (
	holdLabel     = "org.imgprune.hold"
	holdTypeLabel = "org.imgprune.hold.type."
	holdRefLabel  = labelRefContent + ".imgprune.hold."
)

// holdingBlob writes a blob, unique to this call, that references ts.
func holdingBlob(ctx context.Context, cs content.Ingester, ts []ocispec.Descriptor) error {
	labels := make(map[string]string, 2*len(ts))
	for i, t := range ts {
		n := strconv.Itoa(i)
		labels[holdRefLabel+n] = t.Digest.String()
		labels[holdTypeLabel+n] = t.MediaType
	}
	return writeNonce(ctx, cs, "imgprune-hold-", content.WithLabels(labels))
}

// LeftHolds finds the holds of prunes that did not finish, in the
// namespace of ctx, and the targets they hold, by digest and media type
// (the caller asks the store for what it needs of each). The caller holds
// the prune lock, so no live prune holds anything.
func LeftHolds(ctx context.Context, lm leases.Manager, cs content.InfoProvider) ([]leases.Lease, []ocispec.Descriptor, error) {
	holds, err := lm.List(ctx, fmt.Sprintf("labels.%q", holdLabel))
	if err != nil {
		return nil, nil, fmt.Errorf("list holds: %w", err)
	}
	var targets []ocispec.Descriptor
	for _, l := range holds {
		resources, err := lm.ListResources(ctx, l)
		if err != nil && !errdefs.IsNotFound(err) {
			return nil, nil, fmt.Errorf("list what hold %s holds: %w", l.ID, err)
		}
		for _, r := range resources {
			if r.Type != "content" {
				continue
			}
			blob, err := cs.Info(ctx, digest.Digest(r.ID))
			if errdefs.IsNotFound(err) {
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("read hold %s: %w", l.ID, err)
			}
			for key, value := range blob.Labels {
				if n, ok := strings.CutPrefix(key, holdRefLabel); ok {
					targets = append(targets, ocispec.Descriptor{MediaType: blob.Labels[holdTypeLabel+n], Digest: digest.Digest(value)})
				}
			}
		}
	}
	slices.SortFunc(targets, func(a, b ocispec.Descriptor) int { return strings.Compare(a.Digest.String(), b.Digest.String()) })
	return holds, targets, nil
}

// writeNonce writes a small blob no other write makes, its ingest named
// after prefix.
func writeNonce(ctx context.Context, cs content.Ingester, prefix string, opts ...content.Opt) error {
	nonce := make([]byte, 32)
	rand.Read(nonce)
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(nonce), Size: int64(len(nonce))}
	return content.WriteBlob(ctx, cs, prefix+desc.Digest.Encoded(), bytes.NewReader(nonce), desc, opts...)
}

// labelRefContent is the prefix of the labels by which the collector
// follows a blob to the content it references.
const labelRefContent = "containerd.io/gc.ref.content"

// releaseTimeout bounds the release of a lease, which runs to its end when
// its caller was cancelled: a daemon that stops answering fails it.
const releaseTimeout = time.Minute

// releaseContext is ctx without its cancellation, bounded by releaseTimeout.
func releaseContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
}
