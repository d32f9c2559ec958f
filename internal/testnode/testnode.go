// Package testnode runs a Kubernetes node's container runtime for tests and
// benchmarks, as a kubelet would drive it: a private containerd with its CRI
// plugin (internal/testctrd, WithCRI), a local registry to pull from, and
// crictl. Images are the project's own: hack/pause, a static Go binary, as
// the pod sandbox image and as every workload's entrypoint.
//
// The tools come from `make node-deps` (hack/install-node.sh) in
// <repo>/_output/e2e/bin.
package testnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/internal/testimage"
)

// Namespace is CRI's containerd namespace.
const Namespace = "k8s.io"

// SandboxRepo is the repository of the pod sandbox image in the registry.
const SandboxRepo = "k8s/pause:3.10"

var errNoTool = errors.New("not built: run make node-deps")

// Tool is the path of a tool `make node-deps` builds.
func Tool(name string) (string, error) {
	repo, err := testctrd.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(repo, "_output", "e2e", "bin", name)
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("testnode: %s %w", bin, errNoTool)
	}
	return bin, nil
}

var (
	pauseOnce sync.Once
	pauseBin  []byte
	pauseErr  error
)

// Pause is the static hack/pause binary, built once per process.
func Pause() ([]byte, error) {
	pauseOnce.Do(func() {
		repo, err := testctrd.RepoRoot()
		if err != nil {
			pauseErr = err
			return
		}
		out := filepath.Join(repo, "_output", "e2e", "pause")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./hack/pause")
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			pauseErr = fmt.Errorf("testnode: build hack/pause: %v: %s", err, b)
			return
		}
		pauseBin, pauseErr = os.ReadFile(out)
	})
	return pauseBin, pauseErr
}

// SandboxImage is the pod sandbox image: the pause binary alone.
func SandboxImage() (testimage.Image, error) {
	bin, err := Pause()
	if err != nil {
		return testimage.Image{}, err
	}
	return testimage.New(testimage.WithLayers(testimage.FileLayer("pause", bin)), testimage.WithEntrypoint("/pause")), nil
}

// Workload is a workload image: the pause binary's layer, which every
// workload shares as images share a base, and a layer of its own of size
// bytes drawn from seed.
func Workload(seed string, size int) (testimage.Image, error) {
	bin, err := Pause()
	if err != nil {
		return testimage.Image{}, err
	}
	return testimage.New(
		testimage.WithLayers(testimage.FileLayer("pause", bin), testimage.NewLayer(seed, size)),
		testimage.WithEntrypoint("/pause", seed),
		testimage.WithLabels(map[string]string{"org.imgprune.test.seed": seed}),
	), nil
}

// Node is a containerd with its CRI plugin, pulling from a Registry.
type Node struct {
	Daemon *testctrd.Daemon
	// Sandbox is the pod sandbox image's name.
	Sandbox string
	dir     string
	crictl  string
	pods    map[string]string // pod ID -> its config file
	mu      sync.Mutex
}

// Start starts a node under dir (short: unix socket paths are limited),
// pulling from reg, and pulls its sandbox image, which CRI pins. The sandbox
// image must be in reg (PushSandbox).
func Start(dir string, reg *Registry) (*Node, error) {
	n, err := Open(dir, reg)
	if err != nil {
		return nil, err
	}
	if _, err := n.Crictl("pull", n.Sandbox); err != nil {
		n.Stop()
		return nil, err
	}
	return n, nil
}

// Open starts a node on dir as it is: a new one, or the store a stopped
// node left there (a copy of one, say).
func Open(dir string, reg *Registry) (*Node, error) {
	crictl, err := Tool("crictl")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "certs.d", reg.Host), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "certs.d", reg.Host, "hosts.toml"), reg.hostsFile(), 0o644); err != nil {
		return nil, err
	}
	sandbox := reg.Host + "/" + SandboxRepo
	d, err := testctrd.Start(dir, testctrd.WithCRI(sandbox))
	if err != nil {
		return nil, err
	}
	return &Node{Daemon: d, Sandbox: sandbox, dir: d.Dir, crictl: crictl, pods: map[string]string{}}, nil
}

// PushSandbox pushes the sandbox image to reg.
func PushSandbox(ctx context.Context, reg *Registry) error {
	img, err := SandboxImage()
	if err != nil {
		return err
	}
	return reg.Push(ctx, SandboxRepo, img)
}

// Dir is the node's folder.
func (n *Node) Dir() string { return n.dir }

// Crictl runs crictl against the node and returns its standard output.
func (n *Node) Crictl(args ...string) (string, error) {
	endpoint := "unix://" + n.Daemon.Address
	cmd := exec.Command(n.crictl, append([]string{"--runtime-endpoint", endpoint, "--image-endpoint", endpoint, "--timeout", "2m"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("crictl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Pull pulls refs through CRI, a few at a time, as a kubelet's parallel
// pulls do.
func (n *Node) Pull(refs ...string) error {
	var g errgroup.Group
	g.SetLimit(4)
	for _, ref := range refs {
		g.Go(func() error { _, err := n.Crictl("pull", ref); return err })
	}
	return g.Wait()
}

// RunPod runs a host-network pod sandbox named name (no CNI needed) and
// returns its ID.
func (n *Node) RunPod(name string) (string, error) {
	config := map[string]any{
		"metadata":      map[string]any{"name": name, "uid": "uid-" + name, "namespace": "default", "attempt": 0},
		"log_directory": filepath.Join(n.dir, "pods", name),
		"linux": map[string]any{
			"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}},
		},
	}
	file, err := n.writeJSON("pod-"+name+".json", config)
	if err != nil {
		return "", err
	}
	out, err := n.Crictl("runp", file)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(out)
	n.mu.Lock()
	n.pods[id] = file
	n.mu.Unlock()
	return id, nil
}

// CreateContainer creates a container named name in pod from image, as
// the pod spec gives it (a tag, repo@digest or an image ID), and returns
// its ID.
func (n *Node) CreateContainer(pod, name, image string) (string, error) {
	n.mu.Lock()
	podFile := n.pods[pod]
	n.mu.Unlock()
	if podFile == "" {
		return "", fmt.Errorf("testnode: pod %s was not run by this node", pod)
	}
	file, err := n.writeJSON("ctr-"+pod[:12]+"-"+name+".json", map[string]any{
		"metadata": map[string]any{"name": name, "attempt": 0},
		"image":    map[string]any{"image": image},
		"log_path": name + ".log",
		"linux":    map[string]any{},
	})
	if err != nil {
		return "", err
	}
	out, err := n.Crictl("create", pod, file, podFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// RunContainer creates a container as CreateContainer does and starts it.
func (n *Node) RunContainer(pod, name, image string) (string, error) {
	id, err := n.CreateContainer(pod, name, image)
	if err != nil {
		return "", err
	}
	_, err = n.Crictl("start", id)
	return id, err
}

func (n *Node) writeJSON(name string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	file := filepath.Join(n.dir, "cri-configs", name)
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return "", err
	}
	return file, os.WriteFile(file, b, 0o644)
}

// Image is an image as `crictl images` lists it.
type Image struct {
	ID          string   `json:"id"`
	RepoTags    []string `json:"repoTags"`
	RepoDigests []string `json:"repoDigests"`
	Size        string   `json:"size"`
	Pinned      bool     `json:"pinned"`
}

// Images lists the node's images through CRI.
func (n *Node) Images() ([]Image, error) {
	var list struct{ Images []Image }
	err := n.crictlJSON(&list, "images", "-o", "json")
	return list.Images, err
}

// crictlJSON runs crictl with args and decodes its JSON output into v.
func (n *Node) crictlJSON(v any, args ...string) error {
	out, err := n.Crictl(args...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("crictl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// Container is a container as `crictl ps -a` lists it.
type Container struct {
	ID           string `json:"id"`
	PodSandboxID string `json:"podSandboxId"`
	Metadata     struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Image struct {
		Image string `json:"image"`
	} `json:"image"`
	// ImageRef is the image ID CRI resolved at creation.
	ImageRef string `json:"imageRef"`
	State    string `json:"state"`
}

// Containers lists every container through CRI, in every state.
func (n *Node) Containers() ([]Container, error) {
	var list struct{ Containers []Container }
	err := n.crictlJSON(&list, "ps", "-a", "-o", "json")
	return list.Containers, err
}

// StopPods stops every pod and its containers, which stay, as a node's do
// when the kubelet stops them: their shims exit.
func (n *Node) StopPods() error {
	n.mu.Lock()
	pods := make([]string, 0, len(n.pods))
	for id := range n.pods {
		pods = append(pods, id)
	}
	n.mu.Unlock()
	for _, id := range pods {
		if _, err := n.Crictl("stopp", id); err != nil {
			return err
		}
	}
	return nil
}

// Shutdown stops the daemon and leaves its store in the node's folder, for
// Open to start again or to be copied. What still runs is ended, as a
// node's reboot ends it (hack/containerd-down.sh).
func (n *Node) Shutdown() error {
	return n.Daemon.StopKeepingStore()
}

// Stop removes every pod (stopping its containers and their shims), stops
// the daemon and removes the node's folder (unless KEEP is set, as for
// testctrd). It is safe on a nil Node.
func (n *Node) Stop() error {
	if n == nil || n.Daemon == nil {
		return nil
	}
	_, rmErr := n.Crictl("rmp", "--all", "--force")
	err := n.Daemon.Stop()
	if err == nil && rmErr != nil {
		err = rmErr
	}
	n.Daemon = nil
	return err
}
