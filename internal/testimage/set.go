package testimage

import (
	"fmt"
	"time"
)

// SetOptions makes a set of n images with shared layers.
type SetOptions struct {
	// Count is the number of images.
	Count int
	// LayersPerImage defaults to 2.
	LayersPerImage int
	// LayerSize is the bytes per layer file, default 4096.
	LayerSize int
	// SharedRate (0..1) is the fraction of each image's layers taken from a
	// shared pool (pool size ~ max(1, LayersPerImage*Count*SharedRate/4), but
	// at least the number of shared layers per image); the rest are unique to
	// the image. The number of shared layers per image is
	// round(LayersPerImage*SharedRate).
	SharedRate float64
	// NamePrefix defaults to "example.com/test/app"; image i is named
	// fmt.Sprintf("%s%d:latest", NamePrefix, i).
	NamePrefix string
	// Seed makes different sets with otherwise equal options differ.
	Seed string
	// Created defaults to DefaultCreated; image i gets Created + i seconds.
	Created time.Time
}

// DefaultNamePrefix is the default SetOptions.NamePrefix.
const DefaultNamePrefix = "example.com/test/app"

// NewSet makes o.Count images (deterministic). Shared layers come first in
// each image, in pool order starting at a rotating offset, so every pool layer
// is used and no image uses a layer twice.
func NewSet(o SetOptions) []Image {
	if o.Count <= 0 {
		return nil
	}
	if o.LayersPerImage <= 0 {
		o.LayersPerImage = 2
	}
	if o.LayerSize <= 0 {
		o.LayerSize = 4096
	}
	o.SharedRate = min(max(o.SharedRate, 0), 1)
	if o.NamePrefix == "" {
		o.NamePrefix = DefaultNamePrefix
	}
	if o.Created.IsZero() {
		o.Created = DefaultCreated
	}

	shared := min(int(float64(o.LayersPerImage)*o.SharedRate+0.5), o.LayersPerImage)
	var pool []Layer
	if shared > 0 {
		n := max(1, int(float64(o.LayersPerImage*o.Count)*o.SharedRate/4+0.5), shared)
		pool = make([]Layer, n)
		for j := range pool {
			pool[j] = NewLayer(fmt.Sprintf("%s/shared/%d", o.Seed, j), o.LayerSize)
		}
	}

	imgs := make([]Image, o.Count)
	for i := range imgs {
		layers := make([]Layer, 0, o.LayersPerImage)
		for j := range shared {
			layers = append(layers, pool[(i*shared+j)%len(pool)])
		}
		for j := shared; j < o.LayersPerImage; j++ {
			layers = append(layers, NewLayer(fmt.Sprintf("%s/image/%d/%d", o.Seed, i, j), o.LayerSize))
		}
		imgs[i] = New(
			WithNames(fmt.Sprintf("%s%d:latest", o.NamePrefix, i)),
			WithCreated(o.Created.Add(time.Duration(i)*time.Second)),
			WithLayers(layers...),
		)
	}
	return imgs
}
