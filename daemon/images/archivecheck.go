package images

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/docker/go-units"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// WithUnpackLimit sets the most the compressed blobs a load brings may
// expand to, in bytes, all together: a gzip or zstd layer of a few
// kilobytes can expand to fill the disk. By default it is the free space
// of the daemon root's filesystem when that is this host's, and no limit
// otherwise. A negative n is no limit.
func WithUnpackLimit(n int64) Opt {
	return func(s *Service) { s.unpackLimit = &n }
}

// limitOf is the expansion a load may bring: the set limit, or the free
// space of the daemon's root.
func (s *Service) limitOf(ctx context.Context) int64 {
	if s.unpackLimit != nil {
		if *s.unpackLimit < 0 {
			return math.MaxInt64
		}
		return *s.unpackLimit
	}
	root := s.diskRoot(ctx)
	if root == "" {
		return math.MaxInt64
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		log.G(ctx).WithError(err).Warn("load: free space unknown; layers unbounded")
		return math.MaxInt64
	}
	return int64(st.Bavail) * st.Bsize
}

// maxArchiveManifests is the most manifests an archive may list: a docker
// save of a thousand images lists about as many; an index of a hundred
// thousand would flood the store with records, one commit each.
const maxArchiveManifests = 10000

// archiveCheck checks a load's archive before anything is unpacked or
// named: that it lists at most maxArchiveManifests manifests, that its
// layers' expansion fits the limit and that no manifest or index claims a
// size its blob does not have. It runs on the import's questions, when the
// archive is in the content store whole and no name is written yet: a
// refusal there leaves the store as it was.
type archiveCheck struct {
	s         *Service
	since     time.Time
	limit     int64
	manifests int
	once      sync.Once
	err       error
}

func (s *Service) newArchiveCheck(ctx context.Context) *archiveCheck {
	// Blobs the store had before the load may have their snapshots
	// already; only new ones are counted. A second of slack covers a
	// daemon clock a little behind this one's: counting more is safe.
	return &archiveCheck{s: s, since: time.Now().Add(-time.Second), limit: s.limitOf(ctx)}
}

// question answers the import's question about one manifest: the first
// one checks every blob the load's lease holds that is new to the store.
// The import asks one question at a time.
func (e *archiveCheck) question(ctx context.Context) error {
	e.once.Do(func() { e.err = e.blobs(ctx) })
	if e.manifests++; e.err == nil && e.manifests > maxArchiveManifests {
		e.err = fmt.Errorf("refusing the archive: it lists more than %d manifests; nothing was loaded: %w", maxArchiveManifests, errdefs.ErrInvalidArgument)
	}
	return e.err
}

func (e *archiveCheck) blobs(ctx context.Context) error {
	id, ok := leases.FromContext(ctx)
	if !ok {
		return fmt.Errorf("check the archive: the load holds no lease: %w", errdefs.ErrFailedPrecondition)
	}
	res, err := e.s.stores.Leases.ListResources(ctx, leases.Lease{ID: id})
	if err != nil {
		return fmt.Errorf("check the archive: %w", err)
	}
	cs := e.s.stores.Content
	var total int64
	for _, r := range res {
		dgst, err := digest.Parse(r.ID)
		if r.Type != "content" || err != nil {
			continue
		}
		info, err := cs.Info(ctx, dgst)
		if err != nil {
			return fmt.Errorf("check the archive: %w", err)
		}
		if info.CreatedAt.Before(e.since) {
			continue
		}
		if err := checkClaims(ctx, cs, info); err != nil {
			return fmt.Errorf("refusing the archive; nothing was loaded: %w", err)
		}
		if e.limit == math.MaxInt64 {
			continue
		}
		n, err := expandedSize(ctx, cs, info, e.limit-total)
		if err != nil {
			return fmt.Errorf("check the archive: blob %s: %w", dgst, err)
		}
		total += n
		if total > e.limit {
			return fmt.Errorf("refusing the archive: its layers expand past %s (blob %s of %s reached it); nothing was loaded: %w",
				units.BytesSize(float64(e.limit)), dgst, units.BytesSize(float64(info.Size)), errdefs.ErrResourceExhausted)
		}
	}
	return nil
}

// maxManifestSize is the largest blob read as a manifest or index: what
// registries accept (distribution's limit is 4 MiB).
const maxManifestSize = 4 << 20

// checkClaims fails when info's blob is a manifest or an index whose
// descriptors claim sizes other than their blobs': containerd trusts the
// blob, and a claim of petabytes would be what every reader of the
// descriptor sees. Children not in the store are another platform's.
func checkClaims(ctx context.Context, cs content.Store, info content.Info) error {
	if info.Size > maxManifestSize {
		return nil
	}
	b, err := content.ReadBlob(ctx, cs, ocispec.Descriptor{Digest: info.Digest, Size: info.Size})
	if err != nil || len(b) == 0 || b[0] != '{' {
		return nil
	}
	var m struct {
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	children := append(m.Manifests, m.Layers...)
	if m.Config != nil {
		children = append(children, *m.Config)
	}
	for _, c := range children {
		ci, err := cs.Info(ctx, c.Digest)
		if err != nil {
			continue
		}
		if c.Size != ci.Size {
			return fmt.Errorf("%s claims that %s is %d bytes; it is %d: %w", info.Digest, c.Digest, c.Size, ci.Size, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// expandedSize is what a compressed blob expands to, read up to one byte
// past max; 0 for a blob that is not compressed, which takes no more room
// unpacked than it does stored.
func expandedSize(ctx context.Context, p content.Provider, info content.Info, max int64) (int64, error) {
	ra, err := p.ReaderAt(ctx, ocispec.Descriptor{Digest: info.Digest, Size: info.Size})
	if err != nil {
		return 0, err
	}
	defer ra.Close()
	ds, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return 0, err
	}
	defer ds.Close()
	if ds.GetCompression() == compression.Uncompressed {
		return 0, nil
	}
	n, err := io.Copy(io.Discard, io.LimitReader(ds, max+1))
	if err != nil {
		// What does not decode is the unpack's to refuse, with the
		// digest check it makes; it cannot expand past what decoded.
		log.G(ctx).WithError(err).WithField("blob", info.Digest).Debug("load: blob does not decompress")
	}
	return n, nil
}
