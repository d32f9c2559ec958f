package leases

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// holdExpiry bounds what a process that dies while holding leaks.
const holdExpiry = time.Hour

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
		if err := lm.Delete(context.WithoutCancel(ctx), l); err != nil {
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
		if err := lm.Delete(context.WithoutCancel(ctx), l, leases.SynchronousDelete); err != nil {
			log.G(ctx).WithError(err).Warn("release a lease; it expires by itself")
		}
	}
	return leases.WithLease(ctx, l.ID), release, nil
}

// Sweep makes containerd walk its content store and unlink every blob no
// namespace references, under its own lock: never a file unlinked behind a
// running daemon's back. containerd sweeps only after a collection that
// removed content, so one is made to: a throwaway blob, written under a
// lease that is then dropped, and collect.
func Sweep(ctx context.Context, lm leases.Manager, cs content.Store, collect func(context.Context) error) error {
	l, err := lm.Create(ctx, leases.WithRandomID(), leases.WithExpiration(holdExpiry))
	if err != nil {
		return err
	}
	werr := writeNonce(leases.WithLease(ctx, l.ID), cs, "imgprune-sweep-")
	if err := lm.Delete(ctx, l); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("write the blob that makes containerd sweep: %w", werr)
	}
	return collect(ctx)
}

// holdRefsPerBlob bounds the labels of one holding blob, to keep each
// commit well below gRPC's message limit (16 MiB).
const holdRefsPerBlob = 20000

// HoldAll keeps the content ds and what it references until release, which
// drops the hold (not synchronously: the caller collects). A prune holds
// what it lets go this way while it deletes the records that kept it, so
// that no collection the daemon runs by itself takes content before the
// prune's last look at the containers.
//
// Its writes do not grow with ds: a lease holds one small blob per 20,000
// digests, whose reference labels name them, where a lease resource per
// digest would cost one transaction each.
func HoldAll(ctx context.Context, lm leases.Manager, cs content.Ingester, ds []digest.Digest) (func(), error) {
	if len(ds) == 0 {
		return func() {}, nil
	}
	l, err := lm.Create(ctx, leases.WithRandomID(), leases.WithExpiration(holdExpiry))
	if err != nil {
		return nil, fmt.Errorf("hold content: %w", err)
	}
	release := func() {
		if err := lm.Delete(context.WithoutCancel(ctx), l); err != nil {
			log.G(ctx).WithError(err).Warn("release a hold; it expires by itself")
		}
	}
	for chunk := range slices.Chunk(ds, holdRefsPerBlob) {
		if err := holdingBlob(leases.WithLease(ctx, l.ID), cs, chunk); err != nil {
			release()
			return nil, fmt.Errorf("hold content: %w", err)
		}
	}
	return release, nil
}

// holdingBlob writes a blob, unique to this call, that references ds.
func holdingBlob(ctx context.Context, cs content.Ingester, ds []digest.Digest) error {
	labels := make(map[string]string, len(ds))
	for i, d := range ds {
		labels[fmt.Sprintf("%s.imgprune.hold.%d", labelRefContent, i)] = d.String()
	}
	return writeNonce(ctx, cs, "imgprune-hold-", content.WithLabels(labels))
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
