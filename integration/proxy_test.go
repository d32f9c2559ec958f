package integration

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/moby/moby/api/types/container"
	mobyclient "github.com/moby/moby/client"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
	imgsvc "github.com/imgprune/imgprune/daemon/images"
	"github.com/imgprune/imgprune/daemon/server"
	"github.com/imgprune/imgprune/daemon/store"
)

// engine stands in for a Docker Engine on a unix socket: imgprune's own
// Engine API over a namespace of its own (so that only the engine knows its
// containers), plus an attach that upgrades the connection and echoes, and
// an event stream that writes one line and waits. It counts the prunes it
// is asked for.
type engine struct {
	sock    string
	prunes  atomic.Int32
	release chan struct{}
}

func startEngine(t *testing.T, e *env) *engine {
	t.Helper()
	dir, err := os.MkdirTemp("", "imgprune-engine")
	assert.NilError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	eng := &engine{sock: filepath.Join(dir, "docker.sock"), release: make(chan struct{})}
	stores := store.FromClient(e.client)
	stores.Containers = elsewhere{Store: stores.Containers, ns: e.ns + "-engine-containers"}
	api := server.New(imgsvc.New(stores, e.ns+"-engine", imgsvc.WithClient(e.client), imgsvc.WithSnapshotter(snapshotter)))
	mux := http.NewServeMux()
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/images/prune") {
			eng.prunes.Add(1)
		}
		w.Header().Set("X-Engine", "upstream")
		api.ServeHTTP(w, r)
	}))
	mux.HandleFunc("POST /v1.56/containers/{id}/attach", func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		rw.Flush()
		io.Copy(conn, rw) // echo
	})
	mux.HandleFunc("GET /v1.56/events", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		select {
		case <-eng.release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "second\n")
	})
	l, err := net.Listen("unix", eng.sock)
	assert.NilError(t, err)
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return eng
}

// elsewhere keeps container records in a namespace of their own: the
// engine's containers are then known to the engine alone.
type elsewhere struct {
	containers.Store
	ns string
}

func (s elsewhere) Get(ctx context.Context, id string) (containers.Container, error) {
	return s.Store.Get(namespaces.WithNamespace(ctx, s.ns), id)
}

func (s elsewhere) List(ctx context.Context, filters ...string) ([]containers.Container, error) {
	return s.Store.List(namespaces.WithNamespace(ctx, s.ns), filters...)
}

func (s elsewhere) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	return s.Store.Create(namespaces.WithNamespace(ctx, s.ns), c)
}

func (s elsewhere) Delete(ctx context.Context, id string) error {
	return s.Store.Delete(namespaces.WithNamespace(ctx, s.ns), id)
}

// TestServeInFrontOfAnEngine: through the proxy, image prune is imgprune's
// and keeps the images of the engine's containers; everything else is the
// engine's, streams and upgraded connections included.
func TestServeInFrontOfAnEngine(t *testing.T) {
	e := newEnv(t)
	eng := startEngine(t, e)
	ec, err := mobyclient.New(mobyclient.WithHost("unix://" + eng.sock))
	assert.NilError(t, err)
	defer ec.Close()
	// The engine's image store is the proxy's namespace; its containers
	// only it knows, as a Docker Engine knows its created and stopped ones.
	svc := imgsvc.NewFromClient(e.client, e.ns+"-engine", imgsvc.WithSnapshotter(snapshotter), imgsvc.WithContainerSource(imgcontainers.Docker{Client: ec}))
	proxy, err := server.NewProxy(server.New(svc), "unix://"+eng.sock)
	assert.NilError(t, err)
	dir := t.TempDir()
	sock := filepath.Join(dir, "proxy.sock")
	l, err := net.Listen("unix", sock)
	assert.NilError(t, err)
	ctx, stop := context.WithCancel(e.ctx)
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, l, proxy, 10*time.Second) }()
	defer func() {
		stop()
		assert.Check(t, <-served)
	}()
	c, err := mobyclient.New(mobyclient.WithHost("unix://" + sock))
	assert.NilError(t, err)
	defer c.Close()

	// An engine that does not answer is a bad gateway, with the Engine's
	// error body.
	gone, err := server.NewProxy(server.New(svc), "unix://"+filepath.Join(dir, "gone.sock"))
	assert.NilError(t, err)
	rec := httptest.NewRecorder()
	gone.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/_ping", nil))
	assert.Check(t, is.Equal(rec.Code, http.StatusBadGateway))
	assert.Check(t, is.Contains(rec.Body.String(), `"message":"the Docker Engine at unix://`))

	// The engine answers the ping, loads, lists and creates.
	resp, err := unixHTTP(sock).Get("http://proxy/_ping")
	assert.NilError(t, err)
	resp.Body.Close()
	assert.Check(t, is.Equal(resp.Header.Get("X-Engine"), "upstream"))
	used := newImage(t, "used", "docker.io/library/used:1")
	unused := newImage(t, "unused", "docker.io/library/unused:1")
	apiLoad(t, e.ctx, c, used, unused)
	list, err := c.ImageList(e.ctx, mobyclient.ImageListOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Len(list.Items, 2))
	_, err = c.ContainerCreate(e.ctx, mobyclient.ContainerCreateOptions{Config: &container.Config{Image: used.Target.Digest.Encoded()[:12], Cmd: []string{"run"}}})
	assert.NilError(t, err)
	_, err = c.ImageTag(e.ctx, mobyclient.ImageTagOptions{Source: "used:1", Target: "used:2"})
	assert.NilError(t, err)

	// The prune is imgprune's: the engine is not asked, and the image its
	// container was made from by ID keeps one name and its content.
	pruned, err := c.ImagePrune(e.ctx, mobyclient.ImagePruneOptions{Filters: make(mobyclient.Filters).Add("dangling", "false")})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(eng.prunes.Load(), int32(0)))
	var untagged []string
	for _, d := range pruned.Report.ImagesDeleted {
		untagged = append(untagged, d.Untagged)
	}
	assert.Check(t, is.Contains(untagged, "unused:1"))
	assert.Check(t, is.Contains(untagged, "used:1"))
	inspect, err := c.ImageInspect(e.ctx, used.Target.Digest.String())
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(inspect.RepoTags, []string{"used:2"}))

	// The prune's metrics are imgprune's, also through the proxy.
	code, body := apiGet(t, sock, "/metrics")
	assert.Check(t, is.Equal(code, http.StatusOK))
	assert.Check(t, is.Contains(body, "imgprune_prunes_total"))

	// An upgraded connection passes through both ways.
	conn, err := net.Dial("unix", sock)
	assert.NilError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /v1.56/containers/x/attach?stream=1 HTTP/1.1\r\nHost: proxy\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	assert.NilError(t, err)
	br := bufio.NewReader(conn)
	upgraded, err := http.ReadResponse(br, nil)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(upgraded.StatusCode, http.StatusSwitchingProtocols))
	_, err = io.WriteString(conn, "hello\n")
	assert.NilError(t, err)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := br.ReadString('\n')
	assert.NilError(t, err)
	assert.Check(t, is.Equal(line, "hello\n"))

	// A stream reaches the client as the engine writes it.
	resp, err = unixHTTP(sock).Get("http://proxy/v1.56/events")
	assert.NilError(t, err)
	defer resp.Body.Close()
	// A stream that did not flush would hang the reads: the deadline
	// fails them instead.
	timer := time.AfterFunc(10*time.Second, func() { resp.Body.Close() })
	defer timer.Stop()
	events := bufio.NewReader(resp.Body)
	line, err = events.ReadString('\n')
	assert.NilError(t, err)
	assert.Check(t, is.Equal(line, "first\n"))
	close(eng.release)
	line, err = events.ReadString('\n')
	assert.NilError(t, err)
	assert.Check(t, is.Equal(line, "second\n"))
}
