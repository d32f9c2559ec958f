// Command genimages writes a deterministic set of test images (see
// internal/testimage) as an OCI image-layout tar archive, e.g. for
// `imgprune load -i FILE`, `ctr images import FILE` or `docker load -i FILE`.
//
// It prints one line per image: its name(s), target (manifest) digest and
// size in bytes (sum of its unique blob sizes).
//
//	go run ./hack/genimages -o images.tar -count 20 -shared 0.5 -extra-names 3 -labels tier=demo
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/imgprune/imgprune/internal/testimage"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "genimages:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("genimages", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		out        = fs.String("o", "", "archive `file` to write (\"-\" for stdout; the listing then goes to stderr)")
		count      = fs.Int("count", 10, "number of images")
		layers     = fs.Int("layers", 2, "layers per image")
		layerSize  = fs.Int("layer-size", 4096, "`bytes` of file data per layer")
		shared     = fs.Float64("shared", 0.5, "fraction (0..1) of each image's layers taken from a shared pool")
		prefix     = fs.String("prefix", testimage.DefaultNamePrefix, "image `name` prefix; image i is <prefix><i>:latest")
		seed       = fs.String("seed", "", "seed for the layer contents")
		extraNames = fs.Int("extra-names", 0, "give the first `K` images a second name <prefix><i>:v1")
		labelsFlag = fs.String("labels", "", "`k=v,...` config labels for every 2nd image (0, 2, 4, ...)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *out == "" {
		return fmt.Errorf("-o is required")
	}
	if *count < 0 || *layers < 0 || *layerSize < 0 || *shared < 0 || *shared > 1 || *extraNames < 0 {
		return fmt.Errorf("-count, -layers, -layer-size and -extra-names must not be negative, -shared must be in 0..1")
	}
	labels, err := parseLabels(*labelsFlag)
	if err != nil {
		return err
	}

	imgs := testimage.NewSet(testimage.SetOptions{
		Count:          *count,
		LayersPerImage: *layers,
		LayerSize:      *layerSize,
		SharedRate:     *shared,
		NamePrefix:     *prefix,
		Seed:           *seed,
	})
	for i, img := range imgs {
		names := img.Names
		if i < *extraNames {
			names = append(names, fmt.Sprintf("%s%d:v1", *prefix, i))
		}
		var lbls map[string]string
		if i%2 == 0 {
			lbls = labels
		}
		imgs[i] = testimage.New(
			testimage.WithNames(names...),
			testimage.WithLabels(lbls),
			testimage.WithCreated(img.Created),
			testimage.WithLayers(img.Layers...),
		)
	}

	listing := stdout
	if *out == "-" {
		listing = stderr
		bw := bufio.NewWriter(stdout)
		if err := testimage.WriteArchive(bw, imgs...); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
	} else if err := writeFile(*out, imgs); err != nil {
		return err
	}

	for _, img := range imgs {
		fmt.Fprintf(listing, "%s\t%s\t%d\n", strings.Join(img.Names, ","), img.Target.Digest, img.Size())
	}
	return nil
}

func writeFile(name string, imgs []testimage.Image) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	if err := testimage.WriteArchive(bw, imgs...); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parseLabels parses "k=v,k2=v2". An empty string yields no labels.
func parseLabels(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	labels := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid label %q: want k=v", kv)
		}
		labels[k] = v
	}
	return labels, nil
}
