package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/containerd/containerd/v2/client"

	"github.com/imgprune/imgprune/internal/testcmd"
	"github.com/imgprune/imgprune/internal/testengine"
	"github.com/imgprune/imgprune/internal/testimage"
	"github.com/imgprune/imgprune/internal/testnode"
)

// Contenders on a Docker Engine's store.
const (
	cDocker      = "docker image prune -a -f"
	cDockerPrune = "imgprune prune -a --docker-host"
	cDockerDry   = "imgprune prune -a --dry-run --docker-host"
	// dockerMax is the largest Engine store measured: seeding one takes
	// the Engine minutes per thousand images, and its prune as long.
	dockerMax = 3000
	// startedEvery is how many of the containers are started and stopped
	// again, of all those created: one in ten.
	startedEvery = 10
)

// engineStore is an Engine's store at rest, its containerd's and its
// dockerd's, and what the bench checks after each prune.
type engineStore struct {
	seeded
	// at is where the Engine ran, and where each contender's copy runs:
	// dockerd writes absolute paths under its data root into each
	// container's configuration.
	at string
	// containers are the names of the containers.
	containers []string
	docker     string
}

// seedDocker seeds an Engine's store under dir: w.names images built by
// testimage, loaded with docker load (which unpacks them), every fourth
// with a second name; a container created on one image in ten, by name,
// full ID, short ID or repo@digest in turn, one in ten of those started and
// stopped again. The Engine is stopped, its store kept in dir/seed.
func seedDocker(ctx context.Context, dir string, w workload) (engineStore, error) {
	start := time.Now()
	es := engineStore{at: filepath.Join(dir, "e")}
	var err error
	if es.docker, err = testcmd.DockerCLI(); err != nil {
		return es, err
	}
	set, err := engineImages(w.names)
	if err != nil {
		return es, err
	}
	archive := filepath.Join(dir, "images.tar")
	if err := writeArchive(archive, set); err != nil {
		return es, err
	}
	for _, img := range set {
		es.names = append(es.names, img.Names...)
	}
	e, err := testengine.Start(es.at)
	if err != nil {
		return es, err
	}
	err = es.fill(ctx, e, archive, set)
	if serr := e.StopKeepingStore(); err == nil {
		err = serr
	}
	if err != nil {
		return es, err
	}
	es.dir = filepath.Join(dir, "seed")
	if err := os.Rename(es.at, es.dir); err != nil {
		return es, fmt.Errorf("keep the seeded store: %w", err)
	}
	es.took = time.Since(start)
	return es, os.Remove(archive)
}

// engineImages are n distinct images that run the pause binary, its layer
// shared by all, with 3 layers more, 2 of them from a shared pool; every
// fourth has a second name.
func engineImages(n int) ([]testimage.Image, error) {
	pause, err := testnode.Pause()
	if err != nil {
		return nil, err
	}
	base := testimage.FileLayer("pause", pause)
	set := testimage.NewSet(testimage.SetOptions{Count: n, LayersPerImage: 3, LayerSize: 512, SharedRate: 0.5, Seed: "bench-docker", NamePrefix: "example.com/bench/app"})
	for i, img := range set {
		names := img.Names
		if i%4 == 0 {
			names = append(names, fmt.Sprintf("example.com/bench/app%d:v2", i))
		}
		set[i] = testimage.New(testimage.WithNames(names...), testimage.WithCreated(img.Created),
			testimage.WithLayers(append([]testimage.Layer{base}, img.Layers...)...), testimage.WithEntrypoint("/pause"))
	}
	return set, nil
}

// writeArchive writes imgs to one archive at path, as docker save does.
func writeArchive(path string, imgs []testimage.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := testimage.WriteArchive(f, imgs...); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// fill loads the archive into e and creates the containers, four at once.
func (es *engineStore) fill(ctx context.Context, e *testengine.Engine, archive string, set []testimage.Image) error {
	if _, err := es.cli(ctx, e, "load", "-q", "-i", archive); err != nil {
		return err
	}
	var g errgroup.Group
	g.SetLimit(4)
	for i := 5; i < len(set); i += 10 {
		name := fmt.Sprintf("ctr-%d", i)
		es.containers = append(es.containers, name)
		started := len(es.containers)%startedEvery == 1
		g.Go(func() error { return es.container(ctx, e, name, containerRef(set[i], i), started) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	es.ctrs = len(es.containers)
	var err error
	es.blobs, es.snaps, err = countIn(ctx, e.Ctrd.Address, testengine.Namespace)
	return err
}

// containerRef names img by name, full ID, short ID or repo@digest in turn.
func containerRef(img testimage.Image, i int) string {
	id := img.Target.Digest
	return []string{img.Names[0], id.String(), id.Encoded()[:12], fmt.Sprintf("example.com/bench/app%d@%s", i, id)}[(i/10)%4]
}

// container creates a container of ref, and starts it and stops it again
// when started.
func (es *engineStore) container(ctx context.Context, e *testengine.Engine, name, ref string, started bool) error {
	if _, err := es.cli(ctx, e, "create", "--name", name, ref); err != nil {
		return err
	}
	if !started {
		return nil
	}
	if _, err := es.cli(ctx, e, "start", name); err != nil {
		return err
	}
	_, err := es.cli(ctx, e, "stop", name)
	return err
}

// cli runs the docker CLI against e and returns its standard output.
func (es *engineStore) cli(ctx context.Context, e *testengine.Engine, args ...string) (string, error) {
	cmd := es.command(ctx, e, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args[:min(len(args), 3)], " "), err, stderr.String())
	}
	return string(out), nil
}

// command is the docker CLI against e, in a configuration of its own.
func (es *engineStore) command(ctx context.Context, e *testengine.Engine, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, es.docker, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.Host(), "DOCKER_CONFIG="+filepath.Join(filepath.Dir(es.at), "docker-config"), "DOCKER_CLI_HINTS=false")
	return cmd
}

// onEngine copies the seeded store to where the Engine ran, starts an
// Engine on it, waits until its containerd's startup collection is over,
// runs f, and removes the copy.
func (es *engineStore) onEngine(ctx context.Context, f func(e *testengine.Engine) error) error {
	if out, err := exec.Command("cp", "-a", es.dir, es.at).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the Engine's store: %v: %s", err, out)
	}
	defer os.RemoveAll(es.at)
	// The copy's writeback must not land in the timed run.
	unix.Sync()
	e, err := testengine.Start(es.at)
	if err != nil {
		return err
	}
	defer e.Stop()
	c, err := client.New(e.Ctrd.Address)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := startupCollected(ctx, c, testengine.Namespace); err != nil {
		return err
	}
	return f(e)
}

// after lists the images left on e and the images of its containers that
// are gone.
func (es *engineStore) after(ctx context.Context, e *testengine.Engine, r *run) error {
	out, err := es.cli(ctx, e, "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	if err != nil {
		return err
	}
	r.left = lines(out)
	slices.Sort(r.left)
	r.lost, err = es.lostImages(ctx, e)
	return err
}

// lostImages are the IDs of the containers' images that the Engine no
// longer has.
func (es *engineStore) lostImages(ctx context.Context, e *testengine.Engine) ([]string, error) {
	out, err := es.cli(ctx, e, append([]string{"inspect", "--format", "{{.Image}}"}, es.containers...)...)
	if err != nil {
		return nil, err
	}
	ids := strings.Fields(out)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	// docker image inspect prints the images it has, and fails for the
	// rest.
	found, err := es.command(ctx, e, append([]string{"image", "inspect", "--format", "{{.Id}}"}, ids...)...).Output()
	if _, exited := errors.AsType[*exec.ExitError](err); err != nil && !exited {
		return nil, fmt.Errorf("docker image inspect: %w", err)
	}
	have := strings.Fields(string(found))
	return slices.DeleteFunc(ids, func(id string) bool { return slices.Contains(have, id) }), nil
}

// dockerPrune times the docker CLI's prune, as a whole process, on a copy
// of the store.
func (es *engineStore) dockerPrune(ctx context.Context) (run, error) {
	var r run
	err := es.onEngine(ctx, func(e *testengine.Engine) error {
		start := time.Now()
		if _, err := es.cli(ctx, e, "image", "prune", "-a", "-f"); err != nil {
			return err
		}
		r.wall = time.Since(start)
		return es.after(ctx, e, &r)
	})
	return r, err
}

// imgprunePrune times imgprune's prune (more adds flags), asking the
// Engine about its containers, on a copy of the store.
func (es *engineStore) imgprunePrune(ctx context.Context, bin string, more ...string) (run, error) {
	var r run
	err := es.onEngine(ctx, func(e *testengine.Engine) error {
		var err error
		args := append([]string{"--address", e.Ctrd.Address, "--namespace", testengine.Namespace, "--root", filepath.Join(e.Ctrd.Dir, "root"),
			"--docker-host", e.Host(), "prune", "-a", "--force", "--format", "json"}, more...)
		if r, err = exeIn(ctx, bin, args); err != nil {
			return err
		}
		return es.after(ctx, e, &r)
	})
	return r, err
}

// measureDocker seeds an Engine's store and times imgprune against the
// Engine's own prune, each on its own copy.
func measureDocker(ctx context.Context, bin string, w workload, step func(string, func() (run, error)) error, dir string) (engineStore, error) {
	es, err := seedDocker(ctx, dir, w)
	if err != nil {
		return es, err
	}
	fmt.Fprintf(os.Stderr, "%v: seeded %d names, %d blobs, %d snapshots, %d containers in %v\n", w, len(es.names), es.blobs, es.snaps, es.ctrs, es.took.Round(time.Second))
	if err := step(cDockerDry, func() (run, error) { return es.imgprunePrune(ctx, bin, "--dry-run") }); err != nil {
		return es, err
	}
	if err := step(cDockerPrune, func() (run, error) { return es.imgprunePrune(ctx, bin) }); err != nil {
		return es, err
	}
	return es, step(cDocker, func() (run, error) { return es.dockerPrune(ctx) })
}

// lines are the lines of out, none for none.
func lines(out string) []string {
	if out = strings.TrimSpace(out); out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// sameLeft compares what the Engine's prune left with what imgprune's did,
// and tells whether every container's image survived both.
func sameLeft(docker, imgprune run) string {
	same := slices.Equal(docker.left, imgprune.left)
	kept := len(docker.lost)+len(imgprune.lost) == 0
	var b strings.Builder
	b.WriteString(yes(same && kept) + ": ")
	if same {
		fmt.Fprintf(&b, "the same %d images", len(docker.left))
	} else {
		fmt.Fprintf(&b, "docker leaves %d images, imgprune %d, %d in one list only", len(docker.left), len(imgprune.left), symmetricDiff(docker.left, imgprune.left))
	}
	if kept {
		b.WriteString(", every container's image among them")
	} else {
		fmt.Fprintf(&b, "; containers' images lost: docker %d, imgprune %d", len(docker.lost), len(imgprune.lost))
	}
	return b.String()
}

// symmetricDiff counts the entries in one sorted list and not the other.
func symmetricDiff(a, b []string) int {
	n := 0
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			n++
		}
	}
	for _, x := range b {
		if _, ok := slices.BinarySearch(a, x); !ok {
			n++
		}
	}
	return n
}
