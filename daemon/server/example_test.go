package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/moby/moby/api/types/container"
	mobyclient "github.com/moby/moby/client"

	"github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/server"
	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/internal/testimage"
)

// A test suite's harness: a private containerd, the Engine API served over
// one namespace of it, and the store reset between tests with moby's
// client, as `docker image prune -a` would. It needs root and the
// containerd of `make containerd`; `make test` runs it.
func Example_testHarness() {
	ctx := context.Background()
	// Short: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "harness")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ctrd, err := testctrd.Start(filepath.Join(dir, "ctrd"))
	if err != nil {
		panic(err)
	}
	defer ctrd.Stop()
	c, err := client.New(ctrd.Address)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	// Serve the namespace the tests use, as `imgprune serve` does.
	sock := filepath.Join(dir, "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		panic(err)
	}
	serving, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		svc := images.NewFromClient(c, "harness", images.WithSnapshotter("native"))
		served <- server.New(svc).Serve(serving, l, 10*time.Second)
	}()
	defer func() { stop(); <-served }()
	docker, err := mobyclient.New(mobyclient.WithHost("unix://" + sock))
	if err != nil {
		panic(err)
	}
	defer docker.Close()

	// reset removes every container, then every image: containers keep
	// their images from a prune.
	reset := func() {
		list, err := docker.ContainerList(ctx, mobyclient.ContainerListOptions{All: true})
		if err != nil {
			panic(err)
		}
		for _, ctr := range list.Items {
			if _, err := docker.ContainerRemove(ctx, ctr.ID, mobyclient.ContainerRemoveOptions{Force: true}); err != nil {
				panic(err)
			}
		}
		pruned, err := docker.ImagePrune(ctx, mobyclient.ImagePruneOptions{Filters: make(mobyclient.Filters).Add("dangling", "false")})
		if err != nil {
			panic(err)
		}
		deleted := 0
		for _, d := range pruned.Report.ImagesDeleted {
			if d.Deleted != "" {
				deleted++
			}
		}
		fmt.Printf("reset: %d containers, %d images removed\n", len(list.Items), deleted)
	}

	for _, test := range []string{"first", "second"} {
		// A test loads its image and makes a container of it...
		var archive bytes.Buffer
		img := testimage.New(testimage.WithNames("docker.io/example/"+test+":1"), testimage.WithLayers(testimage.NewLayer(test, 1024)))
		if err := testimage.WriteArchive(&archive, img); err != nil {
			panic(err)
		}
		loaded, err := docker.ImageLoad(ctx, &archive, mobyclient.ImageLoadWithQuiet(true))
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, loaded)
		loaded.Close()
		if _, err := docker.ContainerCreate(ctx, mobyclient.ContainerCreateOptions{Name: test, Config: &container.Config{Image: "example/" + test + ":1", Cmd: []string{"run"}}}); err != nil {
			panic(err)
		}
		// ...and finds only what it made.
		list, err := docker.ImageList(ctx, mobyclient.ImageListOptions{})
		if err != nil {
			panic(err)
		}
		var tags []string
		for _, sum := range list.Items {
			tags = append(tags, sum.RepoTags...)
		}
		fmt.Printf("%s test sees: %s\n", test, strings.Join(tags, ", "))
		reset()
	}
	// Output:
	// first test sees: example/first:1
	// reset: 1 containers, 1 images removed
	// second test sees: example/second:1
	// reset: 1 containers, 1 images removed
}
