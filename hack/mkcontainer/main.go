// Command mkcontainer creates a containerd container record (no task) that
// uses an image, as the creators imgprune knows record it: by the reference
// its user typed (docker, nerdctl, ctr), optionally with a rootfs snapshot
// prepared on the image's chain (-rootfs), or as containerd's CRI plugin
// does for a pod's container (-cri: no Image, the image in CRI's metadata
// extension, a rootfs). The demo uses it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/image-spec/identity"
	"google.golang.org/protobuf/types/known/anypb"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
)

type options struct {
	address, namespace, snapshotter string
	rootfs, cri                     bool
}

func main() {
	var o options
	flag.StringVar(&o.address, "address", os.Getenv("CONTAINERD_ADDRESS"), "containerd socket")
	flag.StringVar(&o.namespace, "namespace", "moby", "containerd namespace")
	flag.StringVar(&o.snapshotter, "snapshotter", "native", "snapshotter of the rootfs")
	flag.BoolVar(&o.rootfs, "rootfs", false, "prepare the container's rootfs on the image's chain")
	flag.BoolVar(&o.cri, "cri", false, "record the container as containerd's CRI plugin does (implies -rootfs)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: mkcontainer [-address SOCK] [-namespace NS] [-rootfs|-cri] ID IMAGE-REFERENCE")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 || o.address == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := create(o, flag.Arg(0), flag.Arg(1)); err != nil {
		fmt.Fprintln(os.Stderr, "mkcontainer:", err)
		os.Exit(1)
	}
}

func create(o options, id, ref string) error {
	c, err := client.New(o.address)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), o.namespace)
	ctr := containers.Container{
		ID:      id,
		Image:   ref,
		Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		Spec:    &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte("{}")},
	}
	if o.rootfs || o.cri {
		if err := withRootfs(ctx, c, o, &ctr); err != nil {
			return err
		}
	}
	if _, err := c.ContainerService().Create(ctx, ctr); err != nil {
		return fmt.Errorf("create container %s: %w", id, err)
	}
	how := "by " + ref
	if o.cri {
		how = "as CRI records it (" + ref + " in its metadata only)"
	}
	fmt.Printf("container %s uses %s\n", id, how)
	return nil
}

// withRootfs prepares the container's snapshot on the chain of the image
// ref names and, for -cri, records the image as CRI does.
func withRootfs(ctx context.Context, c *client.Client, o options, ctr *containers.Container) error {
	ctx, done, err := c.WithLease(ctx, leases.WithRandomID())
	if err != nil {
		return err
	}
	defer done(ctx)
	rec, err := c.ImageService().Get(ctx, ctr.Image)
	if err != nil {
		return fmt.Errorf("image %s: %w", ctr.Image, err)
	}
	img := client.NewImage(c, rec)
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return fmt.Errorf("image %s: %w", ctr.Image, err)
	}
	if _, err := c.SnapshotService(o.snapshotter).Prepare(ctx, ctr.ID, identity.ChainID(diffIDs).String()); err != nil {
		return fmt.Errorf("rootfs of %s (is the image unpacked into %s?): %w", ctr.ID, o.snapshotter, err)
	}
	ctr.Snapshotter, ctr.SnapshotKey = o.snapshotter, ctr.ID
	if !o.cri {
		return nil
	}
	config, err := img.Config(ctx)
	if err != nil {
		return err
	}
	meta, err := json.Marshal(map[string]any{"Version": "v1", "Metadata": map[string]string{
		"ID": ctr.ID, "SandboxID": "sandbox-" + ctr.ID,
		"ImageRef": config.Digest.String(), "ImageDigest": rec.Target.Digest.String(), "ImageName": rec.Name,
	}})
	if err != nil {
		return err
	}
	ctr.Image = ""
	ctr.SandboxID = "sandbox-" + ctr.ID
	ctr.Labels = map[string]string{imgcontainers.CRIKindLabel: "container"}
	ctr.Extensions = map[string]typeurl.Any{imgcontainers.CRIMetadataExtension: &anypb.Any{TypeUrl: "github.com/containerd/cri/pkg/store/container/Metadata", Value: meta}}
	return nil
}
