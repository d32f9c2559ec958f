package prune

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// configLabels reads the config labels of every target among records, all
// platforms merged. Content that is missing (a platform not pulled) has none.
func (s *pruner) configLabels(ctx context.Context, records []images.Image) (map[digest.Digest]map[string]string, error) {
	out := map[digest.Digest]map[string]string{}
	for _, r := range records {
		if _, done := out[r.Target.Digest]; done {
			continue
		}
		labels, err := targetLabels(ctx, s.Stores.Content, r.Target)
		if err != nil {
			return nil, fmt.Errorf("read labels of %s: %w", r.Name, err)
		}
		out[r.Target.Digest] = labels
	}
	return out, nil
}

func targetLabels(ctx context.Context, cs content.Store, target ocispec.Descriptor) (map[string]string, error) {
	labels := map[string]string{}
	handler := images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		switch desc.MediaType {
		case ocispec.MediaTypeImageConfig, images.MediaTypeDockerSchema2Config:
			blob, err := content.ReadBlob(ctx, cs, desc)
			if err != nil {
				return nil, err
			}
			var cfg ocispec.Image
			if err := json.Unmarshal(blob, &cfg); err != nil {
				return nil, fmt.Errorf("decode config %s: %w", desc.Digest, err)
			}
			maps.Copy(labels, cfg.Config.Labels)
			return nil, nil
		}
		children, err := images.Children(ctx, cs, desc)
		if errdefs.IsNotFound(err) {
			return nil, images.ErrSkipDesc
		}
		return children, err
	})
	if err := images.Walk(ctx, handler, target); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	return labels, nil
}
