// Command mkimage writes imgprune's container image as an OCI image-layout
// tar archive, with no Docker and no registry: one layer holding a static
// imgprune binary at /usr/local/bin/imgprune, its entrypoint. The archive
// loads with `imgprune load -i`, `ctr images import` or `docker load -i`,
// and pushes with any OCI tool. The same binary makes the same bytes.
//
//	CGO_ENABLED=0 go build -trimpath -o _output/image/imgprune ./cmd/imgprune
//	go run ./hack/mkimage -binary _output/image/imgprune -name ghcr.io/imgprune/imgprune:latest -o _output/imgprune-image.tar
package main

import (
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/distribution/reference"

	"github.com/imgprune/imgprune/internal/testimage"
)

// binaryPath is where the image holds imgprune, as deploy/ runs it.
const binaryPath = "usr/local/bin/imgprune"

func main() {
	binary := flag.String("binary", "", "the static imgprune `binary` to put in the image")
	name := flag.String("name", "", "the image's `reference`, e.g. ghcr.io/imgprune/imgprune:latest")
	out := flag.String("o", "", "the archive `file` to write")
	version := flag.String("version", "", "the image's org.opencontainers.image.version label")
	flag.Parse()
	if err := run(*binary, *name, *out, *version); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(binary, name, out, version string) error {
	if binary == "" || name == "" || out == "" {
		return errors.New("-binary, -name and -o are required")
	}
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return fmt.Errorf("-name %q: %w", name, err)
	}
	bin, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	if err := static(binary); err != nil {
		return err
	}
	labels := map[string]string{
		"org.opencontainers.image.title":  "imgprune",
		"org.opencontainers.image.source": "https://github.com/imgprune/imgprune",
	}
	if version != "" {
		labels["org.opencontainers.image.version"] = version
	}
	img := testimage.New(
		testimage.WithNames(reference.TagNameOnly(ref).String()),
		testimage.WithLayers(testimage.FileLayer(binaryPath, bin)),
		testimage.WithEntrypoint("/"+binaryPath),
		testimage.WithLabels(labels),
	)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := testimage.WriteArchive(f, img); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Printf("%s %s (%d bytes)\n", reference.TagNameOnly(ref), img.Target.Digest, img.Size())
	return nil
}

// static refuses a binary that needs a dynamic loader: the image holds
// nothing else.
func static(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s is no Linux binary: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is linked dynamically: build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}
