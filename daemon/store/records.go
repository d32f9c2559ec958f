package store

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"golang.org/x/sync/errgroup"
)

// hexDigits are the digits of a digest's encoding, in order.
const hexDigits = "0123456789abcdef"

// maxPrefix bounds how deep ListRecords splits a listing.
const maxPrefix = 4

// ListRecords lists the image records of the namespace in ctx. A daemon answers a list
// in one message of at most 16 MiB (about 80,000 records), and reads every
// record for each list it answers: past that size, the records are asked
// for in halves of the range of their targets' digests, each half halved
// again while it is too large, so that as few lists as may be are asked.
func ListRecords(ctx context.Context, is images.Store) ([]images.Image, error) {
	records, err := is.List(ctx)
	if !errdefs.IsResourceExhausted(err) {
		return records, err
	}
	return listRange(ctx, is, "", 0, len(hexDigits)-1)
}

// listRange lists the records whose target's encoded digest starts with
// prefix and then a digit from hexDigits[lo] to hexDigits[hi].
func listRange(ctx context.Context, is images.Store, prefix string, lo, hi int) ([]images.Image, error) {
	class := fmt.Sprintf("[%c-%c]", hexDigits[lo], hexDigits[hi])
	records, err := is.List(ctx, fmt.Sprintf(`target.digest~="^[a-z0-9]+:%s%s"`, prefix, class))
	switch {
	case !errdefs.IsResourceExhausted(err):
		if err != nil {
			return nil, fmt.Errorf("list images with targets %s%s: %w", prefix, class, err)
		}
		return records, nil
	case lo < hi:
		// The halves are asked side by side: the daemon reads every
		// record for each, and has cores to spare for the other.
		mid := (lo + hi) / 2
		var low, high []images.Image
		var g errgroup.Group
		g.Go(func() (err error) {
			low, err = listRange(ctx, is, prefix, lo, mid)
			return err
		})
		g.Go(func() (err error) {
			high, err = listRange(ctx, is, prefix, mid+1, hi)
			return err
		})
		if err := g.Wait(); err != nil {
			return nil, err
		}
		return append(low, high...), nil
	case len(prefix) < maxPrefix:
		return listRange(ctx, is, prefix+string(hexDigits[lo]), 0, len(hexDigits)-1)
	}
	return nil, fmt.Errorf("list images with targets %s%s: %w", prefix, class, err)
}
