//go:build e2e

package node

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/internal/testnode"
)

// kubeletConfig is a standalone kubelet's: no API server, static pods from
// dir/manifests, cgroupfs on this host's cgroup v1, and neither image
// garbage collection nor eviction of its own to muddle what the pod does.
func kubeletConfig(dir string) string {
	return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
staticPodPath: ` + filepath.Join(dir, "manifests") + `
address: 127.0.0.1
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
podLogsDir: ` + filepath.Join(dir, "logs") + `
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "0%", "nodefs.available": "0%", "imagefs.available": "0%"}
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
resolvConf: ""
`
}

// TestDaemonSetOnAKubelet runs the DaemonSet's pod template as a static pod
// of a real kubelet (make kubelet) on the node, with the image the project
// builds: its mounts, security context (seccomp RuntimeDefault included),
// resources and probe as deployed. Two changes a standalone node needs: the
// pod uses the host's network (no CNI) and no priority class (no API
// server to resolve it); the hostPaths are the test node's socket folder
// and root.
func TestDaemonSetOnAKubelet(t *testing.T) {
	repo, err := testctrd.RepoRoot()
	assert.NilError(t, err)
	kubelet := filepath.Join(repo, "_output", "kubelet", "kubelet")
	if _, err := os.Stat(kubelet); err != nil {
		t.Fatalf("no kubelet at %s: run make kubelet", kubelet)
	}
	n := sharedNode(t)
	ds := daemonSet(t)
	spec := ds.Spec.Template.Spec
	loadImage(t, n, spec.Containers[0].Image)
	spec.HostNetwork = true
	spec.PriorityClassName = ""
	for i, v := range spec.Volumes {
		spec.Volumes[i].HostPath.Path = map[string]string{"/run/containerd": n.Dir(), "/var/lib/containerd": filepath.Join(n.Dir(), "root")}[v.HostPath.Path]
	}
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: ds.Name, Namespace: ds.Namespace, Labels: ds.Spec.Template.Labels, Annotations: ds.Spec.Template.Annotations},
		Spec:       spec,
	}
	manifest, err := yaml.Marshal(pod)
	assert.NilError(t, err)
	dir := filepath.Join(n.Dir(), "kubelet")
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "manifests"), 0o755))
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "manifests", "imgprune.yaml"), manifest, 0o644))
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(kubeletConfig(dir)), 0o644))

	logf, err := os.Create(filepath.Join(tmp, "kubelet.log"))
	assert.NilError(t, err)
	defer logf.Close()
	cmd := exec.Command(kubelet, "--config", filepath.Join(dir, "config.yaml"),
		"--container-runtime-endpoint", "unix://"+n.Daemon.Address, "--root-dir", filepath.Join(dir, "root"),
		"--cert-dir", filepath.Join(dir, "pki"), "--hostname-override", "imgprune-test-node")
	cmd.Stdout, cmd.Stderr = logf, logf
	assert.NilError(t, cmd.Start())
	// Stopped before the node: its pods go with the node's.
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	kubeletLog := func() string {
		b, _ := os.ReadFile(logf.Name())
		lines := strings.Split(string(b), "\n")
		return strings.Join(lines[max(0, len(lines)-30):], "\n")
	}

	var id string
	for deadline := time.Now().Add(2 * time.Minute); id == "" && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		ctrs, err := n.Containers()
		assert.NilError(t, err)
		for _, c := range ctrs {
			if c.Metadata.Name == spec.Containers[0].Name && c.State == "CONTAINER_RUNNING" {
				id = c.ID
			}
		}
	}
	assert.Assert(t, id != "", "the kubelet did not run the static pod:\n%s", kubeletLog())
	// The workload is a static pod too: the kubelet stops pods it was not
	// given.
	checkWatchPod(t, n, ds, id, func() string { out, _ := n.Crictl("logs", id); return out + "\nkubelet:\n" + kubeletLog() }, func() string {
		img, err := testnode.Workload("kubelet-workload", 4096)
		assert.NilError(t, err)
		assert.NilError(t, reg.Push(context.Background(), "test/kubelet-workload:1", img))
		workload := corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "workload", Namespace: "default"},
			Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{
				{Name: "app", Image: reg.Ref("test/kubelet-workload:1"), ImagePullPolicy: corev1.PullIfNotPresent},
			}},
		}
		b, err := yaml.Marshal(workload)
		assert.NilError(t, err)
		assert.NilError(t, os.WriteFile(filepath.Join(dir, "manifests", "workload.yaml"), b, 0o644))
		return img.ConfigDesc.Digest.String()
	})
}
