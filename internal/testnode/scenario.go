package testnode

import (
	"context"
	"fmt"
	"strings"

	"github.com/imgprune/imgprune/internal/testimage"
)

// Scenario is a node's store as a cluster leaves it: images pulled by tag,
// pods running containers on some of them (by tag, by repo@digest and by
// image ID in turn), and one tag pulled again onto a new image while a
// container runs its old one.
type Scenario struct {
	// Images is how many workload images are pulled, each by its tag.
	Images int
	// UsedEvery: one image in UsedEvery has a container.
	UsedEvery int
	// CreateOnly creates the containers without starting them.
	CreateOnly bool
	// LayerSize is the size of each image's own layer (default 4 KiB).
	LayerSize int
}

// Made is what a Scenario made.
type Made struct {
	// Refs are the tags pulled, one per workload image.
	Refs []string
	// Images are the workload images by their tag's repo:tag in the registry.
	Images map[string]testimage.Image
	// Containers maps each container's ID to the image string its pod spec
	// gave.
	Containers map[string]string
	// Moved is the tag pulled again onto a new image; MovedFrom is the old
	// image, which a container runs.
	Moved     string
	MovedFrom testimage.Image
}

// Ref is the name a node pulls repoTag of reg by.
func (reg *Registry) Ref(repoTag string) string { return reg.Host + "/" + repoTag }

// Build pushes the scenario's images to reg, pulls them into n and runs
// its pods. Another node built from the same Scenario and registry has the
// same images and containers, by the same references.
func (s Scenario) Build(ctx context.Context, n *Node, reg *Registry) (Made, error) {
	if s.UsedEvery <= 0 {
		s.UsedEvery = 10
	}
	if s.LayerSize <= 0 {
		s.LayerSize = 4096
	}
	m := Made{Images: map[string]testimage.Image{}, Containers: map[string]string{}}
	for i := range s.Images {
		img, err := Workload(fmt.Sprintf("app-%d", i), s.LayerSize+i)
		if err != nil {
			return m, err
		}
		repoTag := fmt.Sprintf("test/app-%d:1", i)
		m.Images[repoTag] = img
		m.Refs = append(m.Refs, reg.Ref(repoTag))
	}
	if err := reg.PushAll(ctx, m.Images); err != nil {
		return m, err
	}
	if err := n.Pull(m.Refs...); err != nil {
		return m, err
	}

	// The moved tag: a container runs its first image, then the tag is
	// pulled again onto a second.
	old, err := Workload("moved-old", s.LayerSize)
	if err != nil {
		return m, err
	}
	moved, err := Workload("moved-new", s.LayerSize)
	if err != nil {
		return m, err
	}
	m.Moved, m.MovedFrom = reg.Ref("test/moved:1"), old
	if err := reg.Push(ctx, "test/moved:1", old); err != nil {
		return m, err
	}
	if err := n.Pull(m.Moved); err != nil {
		return m, err
	}
	if err := s.run(n, "moved", m.Moved, &m); err != nil {
		return m, err
	}
	if err := reg.Push(ctx, "test/moved:1", moved); err != nil {
		return m, err
	}
	if err := n.Pull(m.Moved); err != nil {
		return m, err
	}

	for i := 0; i < s.Images; i += s.UsedEvery {
		repoTag := fmt.Sprintf("test/app-%d:1", i)
		img := m.Images[repoTag]
		image := reg.Ref(repoTag)
		switch (i / s.UsedEvery) % 3 {
		case 1:
			image = reg.Ref(strings.TrimSuffix(repoTag, ":1") + "@" + img.Target.Digest.String())
		case 2:
			image = img.ConfigDesc.Digest.String()
		}
		if err := s.run(n, fmt.Sprintf("app-%d", i), image, &m); err != nil {
			return m, err
		}
	}
	return m, nil
}

// run runs a pod named name with one container of image.
func (s Scenario) run(n *Node, name, image string, m *Made) error {
	pod, err := n.RunPod(name)
	if err != nil {
		return err
	}
	var id string
	if s.CreateOnly {
		id, err = n.CreateContainer(pod, name, image)
	} else {
		id, err = n.RunContainer(pod, name, image)
	}
	if err != nil {
		return err
	}
	m.Containers[id] = image
	return nil
}
