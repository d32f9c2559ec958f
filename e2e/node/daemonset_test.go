//go:build e2e

package node

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/imgprune/imgprune/daemon/images/plan"
	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/internal/testnode"
)

// sharedNode starts a node whose folder is a shared mount, as / is on a
// systemd host: the template's HostToContainer propagation needs its
// hostPaths on a shared or slave mount.
func sharedNode(t *testing.T) *testnode.Node {
	t.Helper()
	dir, err := os.MkdirTemp(tmp, "s")
	assert.NilError(t, err)
	assert.NilError(t, unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""))
	assert.NilError(t, unix.Mount("", dir, "", unix.MS_SHARED|unix.MS_REC, ""))
	// Stopping the node unmounts what is under its folder, itself too.
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	n, err := testnode.Start(dir, reg)
	assert.NilError(t, err)
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Logf("stop node: %v", err)
		}
	})
	return n
}

// daemonSet reads deploy/kubernetes/daemonset.yaml.
func daemonSet(t *testing.T) appsv1.DaemonSet {
	t.Helper()
	repo, err := testctrd.RepoRoot()
	assert.NilError(t, err)
	b, err := os.ReadFile(filepath.Join(repo, "deploy", "kubernetes", "daemonset.yaml"))
	assert.NilError(t, err)
	var ds appsv1.DaemonSet
	assert.NilError(t, yaml.UnmarshalStrict(b, &ds))
	return ds
}

// loadImage builds imgprune's container image as `make image` does, named
// name, and loads it into n's namespace with imgprune load.
func loadImage(t *testing.T, n *testnode.Node, name string) {
	t.Helper()
	repo, err := testctrd.RepoRoot()
	assert.NilError(t, err)
	bin, archive := filepath.Join(tmp, "image-imgprune"), filepath.Join(tmp, "imgprune-image.tar")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/imgprune")
	build.Dir, build.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	assert.NilError(t, err, string(out))
	mk := exec.Command("go", "run", "./hack/mkimage", "-binary", bin, "-name", name, "-o", archive)
	mk.Dir = repo
	out, err = mk.CombinedOutput()
	assert.NilError(t, err, string(out))
	out, err = imgpruneOn(n, "load", "-i", archive).CombinedOutput()
	assert.NilError(t, err, string(out))
}

// podConfigs are the CRI configs of the DaemonSet's pod, as the kubelet
// makes them from its template, on node n: the template's hostPath
// volumes are n's socket folder and root. The pod uses the host's network:
// the test node has no CNI.
func podConfigs(t *testing.T, n *testnode.Node, spec corev1.PodSpec) (pod, ctr map[string]any) {
	t.Helper()
	hostPaths := map[string]string{"/run/containerd": n.Dir(), "/var/lib/containerd": filepath.Join(n.Dir(), "root")}
	volumes := map[string]string{}
	for _, v := range spec.Volumes {
		assert.Assert(t, v.HostPath != nil, "volume %s is a hostPath", v.Name)
		volumes[v.Name] = hostPaths[v.HostPath.Path]
		assert.Assert(t, volumes[v.Name] != "", "hostPath %s", v.HostPath.Path)
	}
	assert.Assert(t, is.Len(spec.Containers, 1))
	c := spec.Containers[0]
	var mounts []map[string]any
	for _, m := range c.VolumeMounts {
		propagation := 0
		if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationHostToContainer {
			propagation = 1 // PROPAGATION_HOST_TO_CONTAINER
		}
		mounts = append(mounts, map[string]any{"container_path": m.MountPath, "host_path": volumes[m.Name], "readonly": m.ReadOnly, "propagation": propagation})
	}
	sc := c.SecurityContext
	var drop []string
	for _, cp := range sc.Capabilities.Drop {
		drop = append(drop, string(cp))
	}
	pod = map[string]any{
		"metadata":      map[string]any{"name": "imgprune-node", "uid": "uid-imgprune", "namespace": "kube-system", "attempt": 0},
		"log_directory": filepath.Join(n.Dir(), "pods", "imgprune"),
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
	}
	ctr = map[string]any{
		"metadata": map[string]any{"name": c.Name, "attempt": 0},
		"image":    map[string]any{"image": c.Image},
		"command":  c.Command,
		"args":     c.Args,
		"mounts":   mounts,
		"log_path": c.Name + ".log",
		"linux": map[string]any{
			"resources": map[string]any{
				"memory_limit_in_bytes": c.Resources.Limits.Memory().Value(),
				"cpu_period":            100000,
				"cpu_quota":             c.Resources.Limits.Cpu().MilliValue() * 100,
			},
			"security_context": map[string]any{
				"seccomp":         map[string]any{"profile_type": 0}, // the template's RuntimeDefault
				"run_as_user":     map[string]any{"value": *sc.RunAsUser},
				"readonly_rootfs": *sc.ReadOnlyRootFilesystem,
				"privileged":      *sc.Privileged,
				"no_new_privs":    !*sc.AllowPrivilegeEscalation,
				"capabilities":    map[string]any{"drop_capabilities": drop},
			},
		},
	}
	return pod, ctr
}

// TestDaemonSetPodOnANode runs the pod template of deploy/ through CRI, as
// a kubelet would: its image built by the project, its mounts, security
// context and resources. The watch in it answers its liveness probe and
// serves /metrics, and it reaches containerd: a container made on the node
// has its image's last use stamped from the pod.
func TestDaemonSetPodOnANode(t *testing.T) {
	n := sharedNode(t)
	ds := daemonSet(t)
	spec := ds.Spec.Template.Spec
	loadImage(t, n, spec.Containers[0].Image)
	podCfg, ctrCfg := podConfigs(t, n, spec)
	write := func(name string, v any) string {
		b, err := json.Marshal(v)
		assert.NilError(t, err)
		file := filepath.Join(tmp, name)
		assert.NilError(t, os.WriteFile(file, b, 0o644))
		return file
	}
	podFile, ctrFile := write("ds-pod.json", podCfg), write("ds-ctr.json", ctrCfg)
	out, err := n.Crictl("runp", podFile)
	assert.NilError(t, err)
	pod := strings.TrimSpace(out)
	out, err = n.Crictl("create", pod, ctrFile, podFile)
	assert.NilError(t, err)
	id := strings.TrimSpace(out)
	_, err = n.Crictl("start", id)
	assert.NilError(t, err)
	logs := func() string { out, _ := n.Crictl("logs", id); return out }
	checkWatchPod(t, n, ds, id, logs, func() string {
		made, err := testnode.Scenario{Images: 1, UsedEvery: 1}.Build(context.Background(), n, reg)
		assert.NilError(t, err)
		return made.Images["test/app-0:1"].ConfigDesc.Digest.String()
	})
}

// checkWatchPod checks the pod of the DaemonSet running as container id on
// n: its liveness probe and /metrics answer, and the workload pod that
// workload makes on the node has its image's last use stamped by the
// watch, through the socket the pod mounts, on the ID record workload
// returns. logs tells what the pod said.
func checkWatchPod(t *testing.T, n *testnode.Node, ds appsv1.DaemonSet, id string, logs func() string, workload func() string) {
	t.Helper()
	ctx := context.Background()
	spec := ds.Spec.Template.Spec
	probe := spec.Containers[0].LivenessProbe.HTTPGet
	var port string
	for _, p := range spec.Containers[0].Ports {
		if p.Name == probe.Port.String() {
			port = strconv.Itoa(int(p.ContainerPort))
		}
	}
	assert.Assert(t, port != "", "the probe's port %s is one of the container's", probe.Port.String())
	get := func(path string) (int, string) {
		resp, err := http.Get("http://127.0.0.1:" + port + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var code int
	for deadline := time.Now().Add(20 * time.Second); code != http.StatusOK && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		code, _ = get(probe.Path)
	}
	assert.Assert(t, is.Equal(code, http.StatusOK), "the liveness probe: %s", logs())
	code, _ = get(ds.Spec.Template.Annotations["prometheus.io/path"])
	assert.Check(t, is.Equal(code, http.StatusOK))

	// A workload pod on the node: the watch, through the socket it mounts,
	// stamps its image's last use.
	idRecord := workload()
	c, err := client.New(n.Daemon.Address)
	assert.NilError(t, err)
	defer c.Close()
	var stamped bool
	for deadline := time.Now().Add(time.Minute); !stamped && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		rec, err := c.ImageService().Get(namespaces.WithNamespace(ctx, testnode.Namespace), idRecord)
		if err == nil { // the kubelet may still be pulling it
			_, stamped = rec.Labels[plan.LastUsedLabel]
		}
	}
	assert.Check(t, stamped, "no last use stamped from the pod: %s", logs())
	ctrs, err := n.Containers()
	assert.NilError(t, err)
	for _, ctr := range ctrs {
		if ctr.ID == id {
			assert.Check(t, is.Equal(ctr.State, "CONTAINER_RUNNING"), logs())
		}
	}
}
