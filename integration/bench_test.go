package integration

import (
	"context"
	"fmt"
	"testing"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"gotest.tools/v3/assert"

	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/internal/testimage"
)

// BenchmarkPruneAll prunes stores of n images (two names each, half their
// layers shared, one in ten used by a container) with prune -a, against
// the real daemon. Only the prune is timed.
func BenchmarkPruneAll(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			c, err := client.New(daemon.Address)
			assert.NilError(b, err)
			defer c.Close()
			var reclaimed uint64
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				ns := fmt.Sprintf("bench-prune-%d-%d", n, i)
				svc := imgsvc.NewFromClient(c, ns, imgsvc.WithDanglingRecords(true), imgsvc.WithSnapshotter(snapshotter))
				fillStore(b, c, ns, n)
				b.StartTimer()
				rep, err := svc.Prune(context.Background(), plan.Filters{})
				assert.NilError(b, err)
				assert.NilError(b, rep.Err())
				reclaimed = rep.SpaceReclaimed
			}
			b.ReportMetric(float64(reclaimed), "bytes-reclaimed")
		})
	}
}

// fillStore writes n images into namespace ns and creates a container for
// one image in ten, by truncated ID.
func fillStore(b *testing.B, c *client.Client, ns string, n int) {
	e := &env{ctx: context.Background(), t: b, client: c, ns: ns}
	set := testimage.NewSet(testimage.SetOptions{Count: n, LayersPerImage: 2, LayerSize: 1024, SharedRate: 0.5, Seed: ns, NamePrefix: "example.com/bench/app"})
	for i := range set {
		set[i].Names = append(set[i].Names, fmt.Sprintf("example.com/bench/app%d:v1", i))
	}
	e.write(set...)
	for i := 0; i < n; i += 10 {
		e.container(fmt.Sprint("c", i), set[i].Target.Digest.Encoded()[:12], nil)
	}
}

// BenchmarkDeleteEachWithGC is the baseline imgprune avoids: the same
// stores emptied one record at a time, each with a synchronous garbage
// collection, as an image service that collects per image does.
func BenchmarkDeleteEachWithGC(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			c, err := client.New(daemon.Address)
			assert.NilError(b, err)
			defer c.Close()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				ns := fmt.Sprintf("bench-each-%d-%d", n, i)
				fillStore(b, c, ns, n)
				ctx := namespaces.WithNamespace(context.Background(), ns)
				records, err := c.ImageService().List(ctx)
				assert.NilError(b, err)
				b.StartTimer()
				for _, r := range records {
					assert.NilError(b, c.ImageService().Delete(ctx, r.Name, images.SynchronousDelete()))
				}
			}
		})
	}
}
