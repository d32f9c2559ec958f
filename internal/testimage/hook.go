package testimage

import (
	"context"
	"sync"

	"github.com/containerd/containerd/v2/core/images"
)

// OnFirstDelete returns s with do run once, with the name deleted, right
// after the first deletion through it: the point between a prune's first
// deletion and its last look, where tests race it with another writer.
func OnFirstDelete(s images.Store, do func(name string)) images.Store {
	return onFirstDelete{Store: s, once: &sync.Once{}, do: do}
}

type onFirstDelete struct {
	images.Store
	once *sync.Once
	do   func(name string)
}

func (s onFirstDelete) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	err := s.Store.Delete(ctx, name, opts...)
	s.once.Do(func() { s.do(name) })
	return err
}
