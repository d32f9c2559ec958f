//go:build e2e

// Package e2e drives a real Docker Engine (moby's containerd image store, on
// a private containerd) with the docker CLI, directly and through `imgprune
// serve --upstream`. `make e2e` builds what it needs (hack/install-e2e.sh).
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/internal/testcmd"
	"github.com/imgprune/imgprune/internal/testctrd"
	"github.com/imgprune/imgprune/internal/testengine"
	"github.com/imgprune/imgprune/internal/testimage"
)

// The engine, the proxy in front of it, the docker CLI and the images the
// tests load.
var (
	engineSock, proxySock, standaloneSock string
	// ctrdAddress is the socket of the engine's containerd.
	ctrdAddress string
	dockerBin   string
	// imgpruneBin runs against the engine's containerd with imgpruneArgs.
	imgpruneBin     string
	imgpruneArgs    []string
	archive         string
	app, old, other testimage.Image
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	code, err := setUp(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return code
}

// setUp starts a containerd, a dockerd on it and `imgprune serve
// --upstream` in front of the dockerd, runs the tests, and stops them all.
func setUp(m *testing.M) (int, error) {
	repo, err := testctrd.RepoRoot()
	if err != nil {
		return 0, err
	}
	if dockerBin, err = testcmd.DockerCLI(); err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "imgprune-e2e")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)

	engine, err := testengine.Start(dir)
	if err != nil {
		return 0, err
	}
	defer engine.Stop()
	engineSock = engine.Sock
	ctrd := engine.Ctrd
	ctrdAddress = ctrd.Address

	imgprune := filepath.Join(dir, "imgprune")
	if out, err := exec.Command("go", "build", "-o", imgprune, filepath.Join(repo, "cmd", "imgprune")).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build imgprune: %v: %s", err, out)
	}
	imgpruneBin, imgpruneArgs = imgprune, []string{"--address", ctrd.Address, "--namespace", "moby", "--root", filepath.Join(ctrd.Dir, "root")}
	proxySock = filepath.Join(dir, "proxy.sock")
	stopProxy, err := testengine.Serve(proxySock, filepath.Join(dir, "imgprune.log"), imgprune,
		"--address", ctrd.Address, "--namespace", "moby", "--root", filepath.Join(ctrd.Dir, "root"),
		"serve", "--socket", proxySock, "--upstream", "unix://"+engineSock)
	if err != nil {
		return 0, err
	}
	defer stopProxy()
	standaloneSock = filepath.Join(dir, "standalone.sock")
	stopStandalone, err := testengine.Serve(standaloneSock, filepath.Join(dir, "standalone.log"), imgprune,
		"--address", ctrd.Address, "--namespace", "standalone", "--root", filepath.Join(ctrd.Dir, "root"), "--docker-host", "none",
		"serve", "--socket", standaloneSock)
	if err != nil {
		return 0, err
	}
	defer stopStandalone()

	if err := writeImages(repo, dir); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// writeImages builds the program the containers run and writes an archive
// of three images that run it.
func writeImages(repo, dir string) error {
	prog := filepath.Join(dir, "app")
	cmd := exec.Command("go", "build", "-trimpath", "-o", prog, filepath.Join(repo, "e2e", "testdata", "app", "main.go"))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the containers' program: %v: %s", err, out)
	}
	data, err := os.ReadFile(prog)
	if err != nil {
		return err
	}
	appLayer = testimage.FileLayer("app", data)
	app = runnable("app", testimage.WithNames("docker.io/e2e/app:1"))
	old = runnable("old", testimage.WithNames("docker.io/e2e/old:1"))
	other = runnable("other", testimage.WithNames("docker.io/e2e/other:1"))
	archive = filepath.Join(dir, "images.tar")
	return writeArchive(archive, app, old, other)
}

// appLayer holds the program the containers run.
var appLayer testimage.Layer

// runnable is an image that runs the program, with a layer of its own made
// from seed.
func runnable(seed string, opts ...testimage.Opt) testimage.Image {
	return testimage.New(append([]testimage.Opt{testimage.WithEntrypoint("/app"),
		testimage.WithLayers(appLayer, testimage.NewLayer("e2e/"+seed, 4096))}, opts...)...)
}

// writeArchive writes imgs to an archive at path, as docker save does.
func writeArchive(path string, imgs ...testimage.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := testimage.WriteArchive(f, imgs...); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cli runs docker against the server on sock.
type cli struct {
	t    *testing.T
	sock string
	home string
}

func newCLI(t *testing.T, sock string) cli {
	return cli{t: t, sock: sock, home: t.TempDir()}
}

// env is the environment docker runs in: the server on sock.
func (c cli) env() []string {
	return append(os.Environ(), "DOCKER_HOST=unix://"+c.sock, "DOCKER_CONFIG="+c.home, "DOCKER_CLI_HINTS=false")
}

// exec runs docker with stdin and returns its stdout, stderr and exit code.
func (c cli) exec(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	cmd := exec.Command(dockerBin, args...)
	cmd.Env = c.env()
	cmd.Stdin = strings.NewReader(stdin)
	stdout, stderr, code, err := testcmd.Run(cmd)
	assert.NilError(c.t, err)
	return stdout, stderr, code
}

// run runs docker with stdin and returns its stdout and exit code.
func (c cli) run(stdin string, args ...string) (string, int) {
	c.t.Helper()
	stdout, stderr, code := c.exec(stdin, args...)
	if code != 0 {
		c.t.Logf("docker %v: exit %d: %s", args, code, stderr)
	}
	return stdout, code
}

// ok runs docker and fails the test unless it succeeds.
func (c cli) ok(args ...string) string {
	c.t.Helper()
	out, code := c.run("", args...)
	assert.Assert(c.t, is.Equal(code, 0), "docker %v", args)
	return out
}

var (
	containerID    = regexp.MustCompile(`(?m)^[0-9a-f]{64}$`)
	shortContainer = regexp.MustCompile(`container [0-9a-f]{12}`)
)

// recorder runs docker commands and keeps a transcript of them: each
// command, its exit code, its output with container IDs replaced and
// listings sorted, and its error when it failed. The lines of prunes, where
// imgprune and the engine may differ, are marked.
type recorder struct {
	cli
	transcript []string
	// created names each container the session created with --name by its
	// ID; the IDs differ from server to server, the names do not.
	created map[string]string
	// dir is a folder the session's files are in, shown as <tmp>.
	dir string
}

func (r *recorder) step(stdin string, args ...string) {
	r.t.Helper()
	stdout, stderr, code := r.exec(stdin, args...)
	if i := slices.Index(args, "--name"); args[0] == "create" && code == 0 && i >= 0 && i+1 < len(args) {
		if r.created == nil {
			r.created = map[string]string{}
		}
		r.created[strings.TrimSpace(stdout)] = args[i+1]
	}
	stdout, stderr = r.normalize(stdout), r.normalize(stderr)
	stdout = containerID.ReplaceAllString(stdout, "<container>")
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if args[0] == "images" || args[0] == "ps" {
		// Images built at the same time come in no set order; a table's
		// header stays first.
		header := 1
		if slices.Contains(args, "--format") {
			header = 0
		}
		slices.Sort(lines[min(header, len(lines)):])
	}
	mark := ""
	if len(args) > 1 && args[0] == "image" && args[1] == "prune" {
		mark = "prune| "
		// The Engine reports in the order of a Go map: the names, then
		// the targets, each sorted.
		if report := slices.Concat(sortedReport(lines, "untagged: "), sortedReport(lines, "deleted: ")); len(report) > 0 {
			rest := slices.DeleteFunc(lines, func(l string) bool {
				return l == "Deleted Images:" || strings.HasPrefix(l, "untagged: ") || strings.HasPrefix(l, "deleted: ")
			})
			lines = slices.Concat([]string{"Deleted Images:"}, report, rest)
		}
	}
	r.transcript = append(r.transcript, fmt.Sprintf("$ docker %s (exit %d)", r.normalize(strings.Join(args, " ")), code))
	for _, l := range lines {
		r.transcript = append(r.transcript, mark+l)
	}
	if code != 0 {
		// Errors, not warnings (the engine's about networking).
		r.transcript = append(r.transcript, mark+"stderr: "+shortContainer.ReplaceAllString(strings.TrimSpace(stderr), "container <container>"))
	}
}

// normalize shows the containers the session named by their names, in
// full and short, and its folder as <tmp>.
func (r *recorder) normalize(s string) string {
	for id, name := range r.created {
		if len(id) == 64 {
			s = strings.ReplaceAll(s, id, "<container "+name+">")
			s = strings.ReplaceAll(s, id[:12], "<container "+name+">")
		}
	}
	if r.dir != "" {
		s = strings.ReplaceAll(s, r.dir, "<tmp>")
	}
	// Of the containers that use an image, the Engine names any one.
	s = usingContainer.ReplaceAllString(s, "container <container> is using")
	return stoppedContainer.ReplaceAllString(s, "stopped container <container>")
}

var (
	usingContainer   = regexp.MustCompile(`container <container [^>]+> is using`)
	stoppedContainer = regexp.MustCompile(`stopped container <container [^>]+>`)
)

// sortedReport are the lines of a prune's report that start with prefix,
// sorted.
func sortedReport(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// scenario is a fixed docker CLI session that runs containers.
func scenario(t *testing.T, sock string) []string {
	r := &recorder{cli: newCLI(t, sock)}
	list := []string{"images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"}
	r.step("", "load", "-i", archive)
	r.step("", list...)
	r.step("", "create", "--name", "byname", "e2e/app:1")
	r.step("", "create", "--name", "byid", app.Target.Digest.Encoded()[:12])
	r.step("", "ps", "-a", "--format", "{{.Names}} {{.Image}} {{.Status}}")
	r.step("", "inspect", "--format", "{{.Name}} {{.Config.Image}} {{.Image}}", "byname")
	r.step("", "image", "inspect", "--format", "{{.Id}} {{.RepoTags}}", "e2e/app:1")
	r.step("", "run", "--rm", "e2e/app:1", "x")
	r.step("hi\n", "run", "--rm", "-i", "e2e/app:1", "cat")
	r.step("", "run", "-d", "--name", "runner", "e2e/app:1", "serve")
	r.step("", "exec", "runner", "/app", "y")
	waitLogs(t, r.cli, "runner", "serving\n")
	r.step("", "logs", "runner")
	r.step("", "rm", "-f", "runner")
	r.step("", "image", "prune", "-a", "-f")
	r.step("", list...)
	r.step("", "rm", "byname", "byid")
	r.step("", "image", "prune", "-a", "-f")
	r.step("", "images", "-q")
	return r.transcript
}

// waitLogs waits until a container has written want.
func waitLogs(t *testing.T, c cli, name, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if out, _ := c.run("", "logs", name); out == want {
			return
		}
		assert.Assert(t, time.Now().Before(deadline), "container %s never wrote %q", name, want)
	}
}

// TestTranscriptThroughTheProxy: the same docker session prints the same
// through imgprune as straight against the engine, but for the prunes; and
// imgprune's prunes remove exactly what the engine's do here.
func TestTranscriptThroughTheProxy(t *testing.T) {
	direct := scenario(t, engineSock)
	proxied := scenario(t, proxySock)

	unmarked := func(lines []string) []string {
		return slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return strings.HasPrefix(l, "prune| ") })
	}
	assert.Check(t, is.DeepEqual(unmarked(proxied), unmarked(direct)))
	t.Logf("transcript through the proxy:\n%s", strings.Join(proxied, "\n"))
	t.Logf("the engine's own prunes:\n%s", strings.Join(slices.DeleteFunc(slices.Clone(direct), func(l string) bool { return !strings.HasPrefix(l, "prune| ") }), "\n"))
	joined := strings.Join(proxied, "\n")
	for _, want := range []string{
		"$ docker run --rm e2e/app:1 x (exit 0)\nhello from [/app x]",
		"$ docker run --rm -i e2e/app:1 cat (exit 0)\nhi",
		"$ docker exec runner /app y (exit 0)\nhello from [/app y]",
		"$ docker image prune -a -f (exit 0)\nprune| Deleted Images:\nprune| untagged: e2e/old:1\n",
		"\nprune| deleted: " + old.Target.Digest.String() + "\n",
		"$ docker images --format {{.Repository}}:{{.Tag}} {{.ID}} (exit 0)\ne2e/app:1 " + app.Target.Digest.Encoded()[:12] + "\n$ docker rm",
	} {
		assert.Check(t, is.Contains(joined, want))
	}
}

// TestProxyPruneKeepsWhatContainersUse: through the proxy, a prune keeps the
// image of a container made by ID, and the image of one whose tag then
// moved to another image (where the engine's own prune leaves it no name);
// the rest goes.
func TestProxyPruneKeepsWhatContainersUse(t *testing.T) {
	c := newCLI(t, proxySock)
	c.ok("load", "-i", archive)
	c.ok("tag", "e2e/other:1", "e2e/moved:1")
	c.ok("create", "--name", "moved", "e2e/moved:1")
	c.ok("tag", "e2e/app:1", "e2e/moved:1")
	c.ok("create", "--name", "byid", app.Target.Digest.Encoded()[:12])
	c.ok("rmi", "e2e/app:1")

	out := c.ok("image", "prune", "-a", "-f")

	assert.Check(t, is.Contains(out, "untagged: e2e/old:1\ndeleted: "+old.Target.Digest.String()))
	assert.Check(t, !strings.Contains(out, "deleted: "+app.Target.Digest.String()), out)
	assert.Check(t, !strings.Contains(out, "deleted: "+other.Target.Digest.String()), out)
	for _, id := range []string{app.Target.Digest.String(), other.Target.Digest.String()} {
		_, code := c.run("", "image", "inspect", id)
		assert.Check(t, is.Equal(code, 0), "%s should stay", id)
	}
	_, code := c.run("", "image", "inspect", old.Target.Digest.String())
	assert.Check(t, code != 0, "e2e/old:1 should be gone")
	assert.Check(t, is.Equal(c.ok("ps", "-a", "--format", "{{.Names}}"), "byid\nmoved\n"))

	c.ok("rm", "moved", "byid")
	c.ok("image", "prune", "-a", "-f")
	assert.Check(t, is.Equal(c.ok("images", "-q"), ""))
}

// TestStandaloneLikeTheEngine: imgprune serve on its own prints what the
// engine prints for the same session on the same images, but for the
// prunes' lines.
func TestStandaloneLikeTheEngine(t *testing.T) {
	session := func(sock string) []string {
		r := &recorder{cli: newCLI(t, sock)}
		step := func(args ...string) { r.step("", args...) }
		step("load", "-i", archive)
		step("images")
		step("image", "inspect", "--format", "{{.Id}} {{.RepoTags}} {{.RepoDigests}} {{.Created}} {{.Size}} {{.Architecture}} {{.Os}} {{.Config.Entrypoint}} {{.RootFS.Layers}}", "e2e/app:1")
		step("tag", "e2e/app:1", "e2e/app:2")
		step("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}")
		step("create", "--name", "c1", "e2e/app:1", "x")
		step("ps", "-a", "--format", "{{.Names}} {{.Image}} {{.Command}} {{.Status}}")
		step("inspect", "--format", "{{.Name}} {{.Config.Image}} {{.Image}} {{.State.Status}} {{.Path}} {{.Args}}", "c1")
		step("rmi", "e2e/app:2")
		step("rmi", "e2e/app:1")
		step("rmi", "e2e/nothing:1")
		step("system", "df")
		step("rm", "c1")
		step("rmi", "e2e/app:1")
		step("image", "prune", "-a", "-f")
		step("images", "-q")
		return r.transcript
	}
	engine := session(engineSock)
	standalone := session(standaloneSock)
	unmarked := func(lines []string) []string {
		return slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return strings.HasPrefix(l, "prune| ") })
	}
	assert.Check(t, is.DeepEqual(unmarked(standalone), unmarked(engine)))
	t.Logf("the engine's transcript:\n%s", strings.Join(engine, "\n"))
}

// TestProxyPassesStreamsThrough: through imgprune, a followed log streams,
// an exec with a terminal runs on its upgraded connection, and a build
// (the engine's classic builder: this CLI has no buildx) streams its
// context up and its output down.
func TestProxyPassesStreamsThrough(t *testing.T) {
	c := newCLI(t, proxySock)
	c.ok("load", "-i", archive)
	c.ok("run", "-d", "--name", "streamer", "e2e/app:1", "serve")
	defer c.run("", "rm", "-f", "streamer")
	waitLogs(t, c, "streamer", "serving\n")

	// logs -f never ends by itself: it must have streamed the line when
	// it is stopped.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	follow := exec.CommandContext(ctx, dockerBin, "logs", "-f", "streamer")
	follow.Env = c.env()
	out, _ := follow.Output()
	assert.Check(t, is.Equal(string(out), "serving\n"))

	// exec -it needs a terminal: script gives it one.
	tty := exec.Command("script", "-qec", dockerBin+" exec -it streamer /app tty", "/dev/null")
	tty.Env = c.env()
	stdout, stderr, code, err := testcmd.Run(tty)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.Contains(stdout, "hello from [/app tty]"))

	dir := t.TempDir()
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM e2e/app:1\nRUN [\"/app\", \"during-build\"]\n"), 0o644))
	build := exec.Command(dockerBin, "build", "-t", "e2e/built:1", dir)
	build.Env = append(c.env(), "DOCKER_BUILDKIT=0")
	stdout, stderr, code, err = testcmd.Run(build)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(code, 0), stderr)
	assert.Check(t, is.Contains(stdout, "hello from [/app during-build]"))
	assert.Check(t, is.Contains(stdout, "Successfully tagged e2e/built:1"))

	c.ok("rm", "-f", "streamer")
	c.ok("image", "prune", "-a", "-f")
	assert.Check(t, is.Equal(c.ok("images", "-q"), ""))
}
