package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/imgprune/imgprune/daemon/watch"
)

// deployDir is the repository's deploy folder, from this package's.
const deployDir = "../../deploy"

// TestDeployKubernetes reads every manifest in deploy/kubernetes into its
// real Kubernetes type, unknown fields rejected, and checks that what the
// pod mounts, exposes and probes is what its imgprune command line asks for,
// as the real command parses it.
func TestDeployKubernetes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.y*ml"))
	assert.NilError(t, err)
	assert.Assert(t, len(files) > 0, "no manifest in %s/kubernetes", deployDir)
	var daemonSets []appsv1.DaemonSet
	for _, file := range files {
		for i, doc := range yamlDocuments(t, file) {
			var typ metav1.TypeMeta
			assert.NilError(t, yaml.Unmarshal(doc, &typ), "%s, document %d", file, i)
			switch typ.GroupVersionKind().String() {
			case appsv1.SchemeGroupVersion.WithKind("DaemonSet").String():
				var ds appsv1.DaemonSet
				assert.NilError(t, yaml.UnmarshalStrict(doc, &ds), "%s, document %d", file, i)
				daemonSets = append(daemonSets, ds)
			default:
				t.Fatalf("%s, document %d: a %s, which this test does not know: teach it", file, i, typ.GroupVersionKind())
			}
		}
	}
	assert.Assert(t, is.Len(daemonSets, 1))
	for _, ds := range daemonSets {
		t.Run(ds.Name, func(t *testing.T) { checkDaemonSet(t, ds) })
	}
}

// yamlDocuments returns the documents of a YAML file, the empty ones left
// out, as kubectl splits them.
func yamlDocuments(t *testing.T, file string) [][]byte {
	t.Helper()
	f, err := os.Open(file)
	assert.NilError(t, err)
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		assert.NilError(t, err, file)
		j, err := yaml.YAMLToJSON(doc)
		assert.NilError(t, err, file)
		if string(j) != "null" {
			docs = append(docs, doc)
		}
	}
}

func checkDaemonSet(t *testing.T, ds appsv1.DaemonSet) {
	assert.Assert(t, ds.Spec.Selector != nil)
	selector, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	assert.NilError(t, err)
	assert.Assert(t, selector.Matches(labels.Set(ds.Spec.Template.Labels)), "the selector %s does not select the pods' labels %v", selector, ds.Spec.Template.Labels)

	pod := ds.Spec.Template.Spec
	// It talks to containerd, never to an API server.
	assert.Assert(t, pod.AutomountServiceAccountToken != nil && !*pod.AutomountServiceAccountToken, "automountServiceAccountToken must be false")
	// Every node, whatever its taints: one toleration of everything.
	assert.Assert(t, slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Key == "" && tol.Operator == corev1.TolerationOpExists && tol.Effect == ""
	}), "no toleration of every taint: %+v", pod.Tolerations)
	assert.Assert(t, is.Len(pod.Containers, 1))
	c := pod.Containers[0]

	cmd := parseCommandLine(t, slices.Concat(c.Command, c.Args))
	assert.Equal(t, cmd.Name(), "watch")
	// The command line says where containerd is, whatever imgprune's
	// defaults and the environment.
	for _, name := range []string{"address", "namespace", "root", "docker-host", "listen"} {
		assert.Assert(t, cmd.Flags().Changed(name), "--%s is not set", name)
	}
	assert.Equal(t, flagValue(t, cmd, "namespace"), "k8s.io")
	assert.Equal(t, flagValue(t, cmd, "docker-host"), "none")
	checkFilters(t, cmd)
	checkThresholds(t, cmd)

	// The prune lock is a file beside the socket that every imgprune on the
	// node shares: the socket's folder, read-write, at the host's path.
	socketDir := path.Dir(socketPath(t, flagValue(t, cmd, "address")))
	m := hostMount(t, pod, c, socketDir)
	assert.Assert(t, !m.ReadOnly, "%s is mounted read-only: imgprune could not lock its prunes beside the socket", socketDir)
	// imgprune reads the root at the path containerd gives.
	root := flagValue(t, cmd, "root")
	assert.Assert(t, path.IsAbs(root), "--root %s", root)
	hostMount(t, pod, c, path.Clean(root))

	// /healthz and /metrics are served on --listen.
	_, port, err := net.SplitHostPort(flagValue(t, cmd, "listen"))
	assert.NilError(t, err)
	listenPort, err := strconv.Atoi(port)
	assert.NilError(t, err)
	probe := c.LivenessProbe
	assert.Assert(t, probe != nil && probe.HTTPGet != nil, "no HTTP liveness probe")
	assert.Equal(t, probe.HTTPGet.Path, "/healthz")
	assert.Equal(t, containerPort(t, c, probe.HTTPGet.Port), int32(listenPort), "the liveness probe's port")
	assert.Equal(t, containerPort(t, c, intstr.FromString("metrics")), int32(listenPort), "the metrics port")
	if p, ok := ds.Spec.Template.Annotations["prometheus.io/port"]; ok {
		assert.Equal(t, p, port, "the prometheus.io/port annotation")
	}

	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		limit, ok := c.Resources.Limits[name]
		assert.Assert(t, ok, "no %s limit", name)
		request, ok := c.Resources.Requests[name]
		assert.Assert(t, ok, "no %s request", name)
		assert.Assert(t, request.Cmp(limit) <= 0, "the %s request %s is above the limit %s", name, &request, &limit)
	}

	// Root, which owns the socket, with no capability and nothing to gain.
	sc := c.SecurityContext
	assert.Assert(t, sc != nil)
	assert.Assert(t, sc.RunAsUser != nil && *sc.RunAsUser == 0, "runAsUser must be 0: the socket is root's")
	assert.Assert(t, sc.Privileged == nil || !*sc.Privileged)
	assert.Assert(t, sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "allowPrivilegeEscalation must be false")
	assert.Assert(t, sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "readOnlyRootFilesystem must be true")
	assert.Assert(t, sc.Capabilities != nil)
	assert.DeepEqual(t, sc.Capabilities.Drop, []corev1.Capability{"ALL"})
	assert.Assert(t, is.Len(sc.Capabilities.Add, 0))
}

// hostMount returns the container's mount of dir, and checks that it is
// the host's dir at the same path: a hostPath volume of an existing folder
// (not one created on a node whose containerd is elsewhere), whose
// unmounts on the host reach the pod (the folders hold container mounts).
func hostMount(t *testing.T, pod corev1.PodSpec, c corev1.Container, dir string) corev1.VolumeMount {
	t.Helper()
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return path.Clean(m.MountPath) == dir })
	assert.Assert(t, i >= 0, "nothing is mounted at %s", dir)
	m := c.VolumeMounts[i]
	assert.Equal(t, m.SubPath, "", "the mount at %s", dir)
	assert.Equal(t, m.SubPathExpr, "", "the mount at %s", dir)
	assert.Assert(t, m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationHostToContainer, "the mount at %s: mountPropagation must be HostToContainer", dir)
	i = slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
	assert.Assert(t, i >= 0, "no volume %s", m.Name)
	hp := pod.Volumes[i].HostPath
	assert.Assert(t, hp != nil, "the volume %s mounted at %s is not a hostPath", m.Name, dir)
	assert.Equal(t, path.Clean(hp.Path), dir, "the volume %s mounted at %s", m.Name, dir)
	assert.Assert(t, hp.Type != nil && *hp.Type == corev1.HostPathDirectory, "the volume %s: type must be Directory", m.Name)
	return m
}

// containerPort resolves a port of the container, by number or by name.
func containerPort(t *testing.T, c corev1.Container, port intstr.IntOrString) int32 {
	t.Helper()
	if port.Type == intstr.Int {
		return port.IntVal
	}
	i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == port.StrVal })
	assert.Assert(t, i >= 0, "no container port named %q", port.StrVal)
	return c.Ports[i].ContainerPort
}

// TestDeploySystemd checks the systemd units in deploy/systemd: their
// imgprune command lines, as the real command parses them, against what
// the units let the service write; and, where systemd-analyze is
// installed, that systemd reads them without a complaint.
func TestDeploySystemd(t *testing.T) {
	dir := filepath.Join(deployDir, "systemd")
	units, err := filepath.Glob(filepath.Join(dir, "*.service"))
	assert.NilError(t, err)
	timers, err := filepath.Glob(filepath.Join(dir, "*.timer"))
	assert.NilError(t, err)
	all, err := filepath.Glob(filepath.Join(dir, "*"))
	assert.NilError(t, err)
	assert.Equal(t, len(all), len(units)+len(timers), "a file in %s that is neither a service nor a timer", dir)

	for _, file := range units {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			unit := readUnit(t, file)
			svc := unit["Service"]
			assert.Assert(t, is.Contains(strings.Fields(strings.Join(unit["Unit"]["After"], " ")), "containerd.service"))
			assert.Assert(t, is.Len(svc["ExecStart"], 1))
			cmd := parseCommandLine(t, execWords(t, svc["ExecStart"][0]))
			// imgprune-SUBCOMMAND.service
			assert.Equal(t, "imgprune-"+cmd.Name()+".service", name)
			for _, name := range []string{"address", "namespace", "root"} {
				assert.Assert(t, cmd.Flags().Changed(name), "--%s is not set", name)
			}
			checkFilters(t, cmd)
			switch cmd.Name() {
			case "prune":
				assert.DeepEqual(t, svc["Type"], []string{"oneshot"})
				for _, name := range []string{"all", "force"} {
					v, err := cmd.Flags().GetBool(name)
					assert.NilError(t, err)
					assert.Assert(t, v, "--%s is not set", name)
				}
				assert.Equal(t, flagValue(t, cmd, "progress"), "none")
			case "watch":
				assert.DeepEqual(t, svc["Type"], []string{"simple"})
				assert.DeepEqual(t, svc["Restart"], []string{"on-failure"})
				checkThresholds(t, cmd)
			default:
				t.Fatalf("a service for imgprune %s, which this test does not know: teach it", cmd.Name())
			}

			// The file system is read-only to the service but for what it
			// writes: the lock beside the socket, the metrics file.
			var writable []string
			for _, p := range strings.Fields(strings.Join(svc["ReadWritePaths"], " ")) {
				writable = append(writable, path.Clean(strings.TrimPrefix(p, "-")))
			}
			assert.DeepEqual(t, svc["ProtectSystem"], []string{"strict"})
			assert.Assert(t, is.Contains(writable, path.Dir(socketPath(t, flagValue(t, cmd, "address")))), "ReadWritePaths: imgprune could not lock its prunes beside the socket")
			if metrics := flagValue(t, cmd, "metrics-file"); metrics != "" {
				assert.Assert(t, is.Contains(writable, path.Dir(metrics)), "ReadWritePaths: imgprune could not write --metrics-file")
			}
		})
	}

	for _, file := range timers {
		t.Run(filepath.Base(file), func(t *testing.T) {
			timer := readUnit(t, file)
			service := strings.TrimSuffix(filepath.Base(file), ".timer") + ".service"
			if u := timer["Timer"]["Unit"]; len(u) > 0 {
				service = u[len(u)-1]
			}
			assert.Equal(t, service, "imgprune-prune.service", "the timer starts %s", service)
			assert.Assert(t, is.Contains(units, filepath.Join(dir, service)))
			assert.Assert(t, len(timer["Timer"]["OnCalendar"]) > 0, "no OnCalendar")
			assert.DeepEqual(t, timer["Install"]["WantedBy"], []string{"timers.target"})
		})
	}

	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze is not installed, the units are not verified:", err)
		}
		// verify checks that each ExecStart names an executable file, and
		// runs none: the units get this test's own binary in place of
		// imgprune's, an executable that is there wherever this runs; their
		// arguments are checked above.
		self, err := os.Executable()
		assert.NilError(t, err)
		tmp := t.TempDir()
		var files []string
		for _, file := range append(units, timers...) {
			b, err := os.ReadFile(file)
			assert.NilError(t, err)
			if strings.HasSuffix(file, ".service") {
				binary := execWords(t, readUnit(t, file)["Service"]["ExecStart"][0])[0]
				b = bytes.ReplaceAll(b, []byte("ExecStart="+binary), []byte("ExecStart="+self))
			}
			files = append(files, filepath.Join(tmp, filepath.Base(file)))
			assert.NilError(t, os.WriteFile(files[len(files)-1], b, 0o644))
		}
		out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, files...)...).CombinedOutput()
		t.Logf("systemd-analyze verify:\n%s", out)
		// It may complain about the host's own units too: only ours count.
		var ours []string
		for line := range strings.Lines(string(out)) {
			if strings.Contains(line, "imgprune") {
				ours = append(ours, line)
			}
		}
		assert.Assert(t, is.Len(ours, 0))
		assert.NilError(t, err)
	})
}

// unitFile is a systemd unit file's settings: by section, by key, every
// value in order.
type unitFile map[string]map[string][]string

// readUnit reads a systemd unit file as systemd does: comments, sections,
// and lines that a backslash continues.
func readUnit(t *testing.T, file string) unitFile {
	t.Helper()
	b, err := os.ReadFile(file)
	assert.NilError(t, err)
	unit := unitFile{}
	section := ""
	var continued string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			continued += s + " "
			continue
		}
		line, continued = continued+line, ""
		switch {
		case line == "":
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if unit[section] == nil {
				unit[section] = map[string][]string{}
			}
		default:
			key, value, ok := strings.Cut(line, "=")
			assert.Assert(t, ok && section != "", "%s:%d: %q", file, i+1, line)
			key, value = strings.TrimSpace(key), strings.TrimSpace(value)
			if value == "" {
				// An empty value empties a list.
				unit[section][key] = []string{}
				continue
			}
			unit[section][key] = append(unit[section][key], value)
		}
	}
	assert.Equal(t, continued, "", "%s: the last line is continued", file)
	return unit
}

// execWords splits an ExecStart command line into its words as systemd
// does: quotes, backslash escapes, "%%" for a percent sign. A specifier or
// a variable would need a host to expand: it fails the test.
func execWords(t *testing.T, line string) []string {
	t.Helper()
	// A prefix (-, @, :, +, !) changes how systemd runs the command, not
	// the command.
	line = strings.TrimLeft(line, "-@:+!")
	var words []string
	var word strings.Builder
	inWord := false
	var quote rune
	runes := []rune(line)
	for i := 0; i < len(runes); i++ {
		r := runes[i]
		switch {
		case r == '\\' && i+1 < len(runes):
			i++
			word.WriteRune(runes[i])
			inWord = true
		case r == '%' || r == '$':
			assert.Assert(t, i+1 < len(runes) && runes[i+1] == r, "%q: a specifier or variable in ExecStart, which this test does not expand", line)
			i++
			word.WriteRune(r)
			inWord = true
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			word.WriteRune(r)
		case r == '"' || r == '\'':
			quote = r
			inWord = true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	assert.Equal(t, quote, rune(0), "%q: a quote is not closed", line)
	if inWord {
		words = append(words, word.String())
	}
	return words
}

// parseCommandLine parses an imgprune command line, the binary first, with
// the real command: it returns the subcommand, its flags set.
func parseCommandLine(t *testing.T, argv []string) *cobra.Command {
	t.Helper()
	assert.Assert(t, len(argv) > 1, "%q: no subcommand", argv)
	assert.Assert(t, path.IsAbs(argv[0]), "%q: the binary is not an absolute path", argv[0])
	assert.Equal(t, path.Base(argv[0]), "imgprune")
	cmd, rest, err := newRootCommand().Find(argv[1:])
	assert.NilError(t, err, "%q", argv)
	assert.Assert(t, cmd.HasParent(), "%q: no subcommand", argv)
	assert.NilError(t, cmd.ParseFlags(rest), "%q", argv)
	assert.NilError(t, cmd.ValidateArgs(cmd.Flags().Args()), "%q", argv)
	assert.NilError(t, cmd.ValidateRequiredFlags(), "%q", argv)
	assert.NilError(t, cmd.ValidateFlagGroups(), "%q", argv)
	return cmd
}

// flagValue is the value of a flag of cmd, its parents' persistent flags
// included once cmd has parsed its flags.
func flagValue(t *testing.T, cmd *cobra.Command, name string) string {
	t.Helper()
	f := cmd.Flags().Lookup(name)
	assert.Assert(t, f != nil, "imgprune %s has no flag --%s", cmd.Name(), name)
	return f.Value.String()
}

// socketPath is the file of a containerd address, as imgprune reads it.
func socketPath(t *testing.T, address string) string {
	t.Helper()
	p := strings.TrimPrefix(address, "unix://")
	assert.Assert(t, path.IsAbs(p), "--address %s is not a socket's absolute path", address)
	return path.Clean(p)
}

// checkFilters parses the --filter values as a prune does.
func checkFilters(t *testing.T, cmd *cobra.Command) {
	t.Helper()
	filters, err := cmd.Flags().GetStringArray("filter")
	assert.NilError(t, err)
	_, err = (pruneOptions{all: true, filters: filters}).parseFilters()
	assert.NilError(t, err)
}

// checkThresholds checks watch's --interval, --high and --low as the
// command does before it connects.
func checkThresholds(t *testing.T, cmd *cobra.Command) {
	t.Helper()
	var w watch.Watcher
	var err error
	w.High, err = parsePercent("--high", flagValue(t, cmd, "high"))
	assert.NilError(t, err)
	w.Low, err = parsePercent("--low", flagValue(t, cmd, "low"))
	assert.NilError(t, err)
	w.Interval, err = time.ParseDuration(flagValue(t, cmd, "interval"))
	assert.NilError(t, err)
	assert.NilError(t, w.Validate())
}
