package images

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"golang.org/x/sync/errgroup"
)

// hexDigits are the digits of a digest's encoding, in order.
const hexDigits = "0123456789abcdef"

// maxPrefix bounds how deep listRecords splits a listing.
const maxPrefix = 4

// listRecords lists the namespace's image records. A daemon answers a list
// in one message of at most 16 MiB (about 80,000 records), and reads every
// record for each list it answers: past that size, the records are asked
// for in halves of the range of their targets' digests, each half halved
// again while it is too large, so that as few lists as may be are asked.
func (s *Service) listRecords(ctx context.Context) ([]images.Image, error) {
	records, err := s.stores.Images.List(ctx)
	if !errdefs.IsResourceExhausted(err) {
		return records, err
	}
	return s.listRange(ctx, "", 0, len(hexDigits)-1)
}

// listRange lists the records whose target's encoded digest starts with
// prefix and then a digit from hexDigits[lo] to hexDigits[hi].
func (s *Service) listRange(ctx context.Context, prefix string, lo, hi int) ([]images.Image, error) {
	class := fmt.Sprintf("[%c-%c]", hexDigits[lo], hexDigits[hi])
	records, err := s.stores.Images.List(ctx, fmt.Sprintf(`target.digest~="^[a-z0-9]+:%s%s"`, prefix, class))
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
			low, err = s.listRange(ctx, prefix, lo, mid)
			return err
		})
		g.Go(func() (err error) {
			high, err = s.listRange(ctx, prefix, mid+1, hi)
			return err
		})
		if err := g.Wait(); err != nil {
			return nil, err
		}
		return append(low, high...), nil
	case len(prefix) < maxPrefix:
		return s.listRange(ctx, prefix+string(hexDigits[lo]), 0, len(hexDigits)-1)
	}
	return nil, fmt.Errorf("list images with targets %s%s: %w", prefix, class, err)
}
