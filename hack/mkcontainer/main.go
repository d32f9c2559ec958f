// Command mkcontainer creates a containerd container record (no task, no
// snapshot) that uses an image by the reference given, as a container
// engine records the reference its user typed. The demo uses it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/protobuf/types/known/anypb"
)

func main() {
	address := flag.String("address", os.Getenv("CONTAINERD_ADDRESS"), "containerd socket")
	namespace := flag.String("namespace", "moby", "containerd namespace")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: mkcontainer [-address SOCK] [-namespace NS] ID IMAGE-REFERENCE")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 || *address == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := create(*address, *namespace, flag.Arg(0), flag.Arg(1)); err != nil {
		fmt.Fprintln(os.Stderr, "mkcontainer:", err)
		os.Exit(1)
	}
}

func create(address, namespace, id, ref string) error {
	c, err := client.New(address)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), namespace)
	_, err = c.ContainerService().Create(ctx, containers.Container{
		ID:      id,
		Image:   ref,
		Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		Spec:    &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte("{}")},
	})
	if err != nil {
		return fmt.Errorf("create container %s: %w", id, err)
	}
	fmt.Printf("container %s uses %s\n", id, ref)
	return nil
}
