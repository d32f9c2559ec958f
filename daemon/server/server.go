// Package server serves the Docker Engine API over the image service: the
// images part of it, and containers as records only (nothing runs), so that
// the docker CLI and moby's Go client work against imgprune unchanged.
//
// A test suite serves a private containerd so and, between its tests,
// removes every container and prunes every image with moby's client
// (ImagePrune with the filter dangling=false): Example (TestHarness) is the
// harness to copy.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errhttp"
	"github.com/containerd/log"
	"github.com/moby/moby/client/pkg/versions"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imgprune/imgprune/pkg/metrics"
)

// The API versions served: from the oldest the docker CLI still speaks to
// that of the moby API module imgprune is built with.
const (
	MinAPIVersion = "1.24"
	APIVersion    = "1.56"
)

// Server answers the Engine API for one namespace of a containerd store.
type Server struct {
	// naming makes a container name's check and its record one step.
	naming    sync.Mutex
	namespace string
	driver    string
	list      imageLister
	read      imageReader
	write     imageWriter
	prune     pruner
	records   records
	metrics   *metrics.Set
	version   string
	handler   http.Handler
}

// Opt configures a Server.
type Opt func(*Server)

// WithVersion sets the version /version and the Server header report.
func WithVersion(v string) Opt { return func(s *Server) { s.version = v } }

// WithMetrics sets the metrics each prune adds to and /metrics serves.
func WithMetrics(m *metrics.Set) Opt { return func(s *Server) { s.metrics = m } }

// New returns a server over the image service svc (an *images.Service),
// and its container records.
func New(svc Backend, opts ...Opt) *Server {
	s := &Server{
		namespace: svc.Namespace(),
		driver:    svc.Snapshotter(),
		list:      svc,
		read:      svc,
		write:     svc,
		prune:     svc,
		records:   records{stores: svc.Stores(), snapshotter: svc.Snapshotter()},
		metrics:   metrics.NewSet(),
		version:   "dev",
	}
	for _, opt := range opts {
		opt(s)
	}
	mux := http.NewServeMux()
	route := func(pattern string, h handlerFunc) { mux.Handle(pattern, s.wrap(h)) }
	route("GET /_ping", s.ping)
	route("HEAD /_ping", s.ping)
	route("GET /version", s.getVersion)
	route("GET /info", s.getInfo)
	route("GET /system/df", s.diskUsage)
	route("GET /images/json", s.listImages)
	route("POST /images/load", s.loadImages)
	route("POST /images/prune", s.pruneImages)
	route("GET /images/{ref...}", s.imageGet)
	route("POST /images/{ref...}", s.imagePost)
	route("DELETE /images/{ref...}", s.removeImage)
	route("POST /containers/create", s.createContainer)
	route("GET /containers/json", s.listContainers)
	route("GET /containers/{id}/json", s.inspectContainer)
	route("DELETE /containers/{id}", s.removeContainer)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Gatherer(), promhttp.HandlerOpts{}))
	route("/", func(context.Context, http.ResponseWriter, *http.Request) error {
		return errdefs.ErrNotFound.WithMessage("page not found")
	})
	s.handler = versioned(mux)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

type handlerFunc func(ctx context.Context, w http.ResponseWriter, r *http.Request) error

type versionKey struct{}

// apiVersion is the version a request asked for.
func apiVersion(ctx context.Context) string {
	if v, ok := ctx.Value(versionKey{}).(string); ok {
		return v
	}
	return APIVersion
}

var versionPrefix = regexp.MustCompile(`^/v([0-9]+\.[0-9]+)(/.*)$`)

// versioned strips the /v1.NN prefix a request's path may start with, and
// refuses a version outside those served, as the Engine does.
func versioned(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", APIVersion)
		w.Header().Set("Ostype", runtime.GOOS)
		w.Header().Set("Docker-Experimental", "false")
		version := APIVersion
		if m := versionPrefix.FindStringSubmatch(r.URL.Path); m != nil {
			version = m[1]
			r = r.Clone(r.Context())
			r.URL.Path = m[2]
			r.URL.RawPath = ""
			if raw := versionPrefix.FindStringSubmatch(r.URL.EscapedPath()); raw != nil {
				r.URL.RawPath = raw[2]
			}
		}
		switch {
		case versions.LessThan(version, MinAPIVersion):
			writeError(w, r, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", version, MinAPIVersion)))
			return
		case versions.LessThan(APIVersion, version):
			writeError(w, r, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("client version %s is too new. Maximum supported API version is %s", version, APIVersion)))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), versionKey{}, version)))
	})
}

// wrap runs h in the namespace of the service and writes the error it
// returns as the Engine does.
func (s *Server) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "imgprune/"+s.version+" ("+runtime.GOOS+")")
		ctx := namespaces.WithNamespace(r.Context(), s.namespace)
		if err := h(ctx, w, r); err != nil {
			writeError(w, r, err)
		}
	})
}

// writeError writes err as the Engine does: {"message": …}, with the
// status its errdefs class maps to.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := errhttp.ToHTTP(err)
	if errdefs.IsAlreadyExists(err) {
		status = http.StatusConflict
	}
	if status >= http.StatusInternalServerError {
		log.G(r.Context()).WithError(err).WithField("path", r.URL.Path).Warn("request failed")
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, struct {
		Message string `json:"message"`
	}{err.Error()})
}

// writeJSON writes v with status. Once the header is out there is nothing
// left to answer: a client gone is logged, not returned.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.L.WithError(err).Debug("write the answer")
	}
	return nil
}

// boolValue reads a boolean query parameter as the Engine does: anything
// but "", "0", "no", "false" and "none" is true.
func boolValue(r *http.Request, key string) bool {
	switch strings.ToLower(strings.TrimSpace(r.FormValue(key))) {
	case "", "0", "no", "false", "none":
		return false
	}
	return true
}

// Serve answers on l until ctx ends. Then it stops accepting, cancels what
// runs (a prune stops between deletions, still collects once and answers
// with its partial report) and waits for the answers to go out, at most
// grace; it returns nil when all did.
func (s *Server) Serve(ctx context.Context, l net.Listener, grace time.Duration) error {
	return Serve(ctx, l, s, grace)
}

// Serve answers on l with h until ctx ends, as Server.Serve does.
func Serve(ctx context.Context, l net.Listener, h http.Handler, grace time.Duration) error {
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	srv := &http.Server{
		Handler:     h,
		BaseContext: func(net.Listener) context.Context { return base },
		// A client that sends its headers slowly, or too many, or holds
		// an idle connection, is dropped; the others are answered all
		// the while (each connection is served on its own).
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    256 << 10,
		IdleTimeout:       2 * time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	stop, cancelStop := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancelStop()
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(stop) }()
	cancel()
	err := <-shutdown
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
