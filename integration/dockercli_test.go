package integration

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	units "github.com/docker/go-units"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/internal/testcmd"
	"github.com/imgprune/imgprune/internal/testimage"
)

// dockerCLI is the docker CLI the tests drive (testcmd.DockerCLI). Never
// skipped: a run without it tests less than it says.
func dockerCLI(t *testing.T) string {
	t.Helper()
	bin, err := testcmd.DockerCLI()
	assert.NilError(t, err)
	return bin
}

// serveCmd runs `imgprune serve` over the test's namespace and returns the
// socket and the running command.
func (e *env) serveCmd(t *testing.T, args ...string) (string, *exec.Cmd, *bytes.Buffer) {
	t.Helper()
	dir, err := os.MkdirTemp("", "imgprune-cli")
	assert.NilError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	cmd := exec.Command(imgprune(t), "--address", daemon.Address, "--namespace", e.ns, "--root", filepath.Join(daemon.Dir, "root"),
		"--snapshotter", snapshotter, "--docker-host", "none", "serve", "--socket", sock)
	cmd.Args = append(cmd.Args, args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	assert.NilError(t, cmd.Start())
	killOnCleanup(t, cmd)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		assert.Assert(t, time.Now().Before(deadline), "imgprune serve did not listen: %s", log.String())
	}
	return sock, cmd, &log
}

// TestDockerCLI drives `imgprune serve` with the docker CLI: the commands a
// test harness and an operator use print what they print against an
// Engine, and a SIGTERM stops the server cleanly.
func TestDockerCLI(t *testing.T) {
	e := newEnv(t)
	sock, serve, serveLog := e.serveCmd(t)
	home := t.TempDir()
	docker := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(dockerCLI(t), args...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+sock, "DOCKER_CONFIG="+home, "DOCKER_CLI_HINTS=false")
		return runCmd(t, cmd)
	}
	ok := func(args ...string) string {
		t.Helper()
		stdout, stderr, code := docker(args...)
		assert.Assert(t, is.Equal(code, 0), "docker %v: %s", args, stderr)
		return stdout
	}

	assert.Check(t, is.Equal(ok("version", "--format", "{{.Server.APIVersion}}"), "1.56\n"))

	app1 := testimage.New(testimage.WithNames("docker.io/library/app:1"), testimage.WithLayers(layer(t, "app1")))
	app2 := testimage.New(testimage.WithNames("docker.io/library/app:2"), testimage.WithLayers(layer(t, "app2")))
	archive := filepath.Join(t.TempDir(), "images.tar")
	f, err := os.Create(archive)
	assert.NilError(t, err)
	assert.NilError(t, testimage.WriteArchive(f, app1, app2))
	assert.NilError(t, f.Close())
	assert.Check(t, is.Equal(ok("load", "-i", archive), "Loaded image: app:1\nLoaded image: app:2\n"))

	assert.Check(t, is.Equal(ok("tag", "app:1", "app:extra"), ""))
	id1, id2 := app1.Target.Digest, app2.Target.Digest
	lines := strings.Split(strings.TrimSpace(ok("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")), "\n")
	slices.Sort(lines)
	assert.Check(t, is.DeepEqual(lines, []string{"app:1 " + id1.Encoded()[:12], "app:2 " + id2.Encoded()[:12], "app:extra " + id1.Encoded()[:12]}))
	assert.Check(t, is.Equal(ok("image", "inspect", "--format", "{{.Id}} {{json .RepoTags}}", "app:1"), id1.String()+` ["app:1","app:extra"]`+"\n"))

	ctr := strings.TrimSpace(ok("create", "--name", "web", "app:1", "sleep", "60"))
	assert.Check(t, regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(ctr), ctr)
	assert.Check(t, is.Equal(ok("ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Image}} {{.Command}} {{.Status}}"), ctr[:12]+` web app:1 "sleep 60" Created`+"\n"))
	assert.Check(t, is.Equal(ok("ps", "--format", "{{.Names}}"), ""))
	assert.Check(t, is.Equal(ok("inspect", "--format", "{{.Name}} {{.Image}} {{.Config.Image}}", "web"), "/web "+id1.String()+" app:1\n"))

	// rmi untags while another name remains, and refuses the last name of
	// an image a container uses.
	assert.Check(t, is.Equal(ok("rmi", "app:1"), "Untagged: app:1\n"))
	_, stderr, code := docker("rmi", "app:extra")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(stderr, "conflict: unable to delete app:extra (must be forced) - container "+ctr[:12]+" is using its referenced image "+id1.Encoded()[:12]))

	// As an Engine does, prune -a untags the name the container was not
	// created by; the image it runs stays, dangling.
	stdout := ok("image", "prune", "-a", "-f")
	assert.Check(t, is.Contains(stdout, "Deleted Images:\nuntagged: app:2\ndeleted: "+id2.String()+"\nuntagged: app:extra\n\nTotal reclaimed space: "), stdout)
	assert.Check(t, is.Equal(ok("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"), "<none>:<none> "+id1.Encoded()[:12]+"\n"))
	df := ok("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}")
	assert.Check(t, is.Contains(df, "Images 1 1\n"), df)
	assert.Check(t, is.Contains(df, "Containers 1 0\n"), df)

	assert.Check(t, is.Equal(ok("rm", "web"), "web\n"))
	assert.Check(t, is.Equal(ok("ps", "-a", "--format", "{{.Names}}"), ""))
	stdout = ok("image", "prune", "-a", "-f")
	assert.Check(t, is.Contains(stdout, "Deleted Images:\nuntagged: "+id1.String()+"\ndeleted: "+id1.String()+"\n\nTotal reclaimed space: "), stdout)
	assert.Check(t, is.Equal(ok("images", "-q"), ""))
	_, stderr, code = docker("image", "inspect", "app:1")
	assert.Check(t, is.Equal(code, 1))
	assert.Check(t, is.Contains(stderr, "No such image: app:1"))

	// SIGTERM: the server stops, exits 0 and leaves no socket behind.
	assert.NilError(t, serve.Process.Signal(syscall.SIGTERM))
	assert.Check(t, serve.Wait(), serveLog.String())
	assert.Check(t, !onDiskNow(sock))
}

// TestDockerCLIPrune: the cases of the docker CLI's own prune tests
// (cli/command/image/prune_test.go), against imgprune serve instead of a
// fake client: what reaches the server, and what the CLI prints.
func TestDockerCLIPrune(t *testing.T) {
	e := newEnv(t)
	sock, _, _ := e.serveCmd(t)
	home := t.TempDir()
	docker := func(stdin string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(dockerCLI(t), args...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+sock, "DOCKER_CONFIG="+home, "DOCKER_CLI_HINTS=false")
		cmd.Stdin = strings.NewReader(stdin)
		stdout, _, code := runCmd(t, cmd)
		return stdout, code
	}
	labelled := testimage.New(testimage.WithLayers(layer(t, "labelled")), testimage.WithLabels(map[string]string{"foobar": "1"}))
	dangling := testimage.New(testimage.WithLayers(layer(t, "dangling")))
	named := newImage(t, "named", "docker.io/library/named:1")
	e.writeDangling(labelled)
	e.writeDangling(dangling)
	e.write(named)

	// Without --force the CLI asks, and a no changes nothing.
	out, code := docker("n\n", "image", "prune")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(out, "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N]"), out)
	assert.Check(t, is.Len(e.names(), 3))

	// label-filter: only the dangling image with the label goes.
	out, code = docker("", "image", "prune", "--force", "--filter", "label=foobar")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Equal(out, "Deleted Images:\nuntagged: "+labelled.Target.Digest.String()+"\ndeleted: "+labelled.Target.Digest.String()+"\n\nTotal reclaimed space: "+units.HumanSize(float64(labelled.Size()))+"\n"))

	// force-deleted: the dangling one goes, not the named one.
	out, code = docker("", "image", "prune", "--force")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(out, "deleted: "+dangling.Target.Digest.String()+"\n"), out)
	assert.Check(t, !strings.Contains(out, "named"), out)

	// Nothing left that is dangling: only the total.
	out, code = docker("", "image", "prune", "--force")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Equal(out, "Total reclaimed space: 0B\n"))

	// all: the named one goes too; then there is nothing.
	out, code = docker("", "image", "prune", "--all", "--force")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Contains(out, "untagged: named:1\ndeleted: "+named.Target.Digest.String()+"\n"), out)
	out, code = docker("", "image", "prune", "--all", "--force")
	assert.Check(t, is.Equal(code, 0))
	assert.Check(t, is.Equal(out, "Total reclaimed space: 0B\n"))

	// wrong-args, and a filter serve refuses (the engine, deliberately
	// not: see the README).
	_, code = docker("", "image", "prune", "--force", "something")
	assert.Check(t, code != 0)
	_, code = docker("", "image", "prune", "--force", "--filter", "dangling=maybe")
	assert.Check(t, code != 0)
	assert.Check(t, is.Len(e.names(), 0))
}

// TestServeSocket: the socket is 0660, root's and --group's; a socket a
// server answers on is not taken over; bad input is refused before
// anything listens.
func TestServeSocket(t *testing.T) {
	e := newEnv(t)
	sock, _, _ := e.serveCmd(t, "--group", "4242")
	st, err := os.Stat(sock)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(st.Mode()&os.ModePerm, os.FileMode(0o660)))
	sys := st.Sys().(*syscall.Stat_t)
	assert.Check(t, is.Equal(sys.Uid, uint32(0)))
	assert.Check(t, is.Equal(sys.Gid, uint32(4242)))

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--socket", sock}, "another server answers on it"},
		{[]string{"serve"}, `required flag(s) "socket" not set`},
		{[]string{"serve", "--socket", sock + ".2", "--group", "no-such-group"}, "invalid --group"},
		{[]string{"--offline", "serve", "--socket", sock + ".2"}, "invalid --offline"},
		{[]string{"serve", "--socket", sock + ".2", "--upstream", "ftp://engine"}, "invalid --upstream"},
	} {
		_, stderr, code := e.run(t, tc.args...)
		assert.Check(t, is.Equal(code, 1), "%v", tc.args)
		assert.Check(t, is.Contains(stderr, tc.want), "%v", tc.args)
		assert.Check(t, !onDiskNow(sock+".2"), "%v", tc.args)
	}
}
