package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/containerd/log"
)

// Proxy answers POST /images/prune with imgprune's prune and passes every
// other request through to a Docker Engine unchanged: streams, and the
// upgraded connections of attach, exec and build, included.
type Proxy struct {
	server   *Server
	upstream http.Handler
}

// NewProxy returns a proxy in front of the engine at upstream (unix:///path,
// tcp://host:port or http://host:port) that prunes through s.
func NewProxy(s *Server, upstream string) (*Proxy, error) {
	target, dial, err := upstreamDialer(upstream)
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{DialContext: dial, DisableCompression: true}
	// Logs, events and progress go out as the engine writes them.
	rp.FlushInterval = -1
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		log.G(r.Context()).WithError(err).WithField("path", r.URL.Path).Warn("the Docker Engine did not answer")
		writeJSON(w, http.StatusBadGateway, struct {
			Message string `json:"message"`
		}{fmt.Sprintf("the Docker Engine at %s: %v", upstream, err)})
	}
	return &Proxy{server: s, upstream: rp}, nil
}

// upstreamDialer parses an engine's address into the URL requests are sent
// to and the dialer that reaches it.
func upstreamDialer(upstream string) (*url.URL, func(context.Context, string, string) (net.Conn, error), error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid --upstream %q: %w", upstream, err)
	}
	var d net.Dialer
	switch u.Scheme {
	case "unix":
		path := u.Path
		if path == "" {
			return nil, nil, fmt.Errorf("invalid --upstream %q: no socket path", upstream)
		}
		return &url.URL{Scheme: "http", Host: "docker"}, func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}, nil
	case "tcp", "http":
		if u.Host == "" {
			return nil, nil, fmt.Errorf("invalid --upstream %q: no host", upstream)
		}
		return &url.URL{Scheme: "http", Host: u.Host}, d.DialContext, nil
	}
	return nil, nil, fmt.Errorf("invalid --upstream %q: use unix:///path/to/docker.sock or tcp://host:port", upstream)
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if m := versionPrefix.FindStringSubmatch(path); m != nil {
		path = m[2]
	}
	switch {
	case r.Method == http.MethodPost && strings.TrimSuffix(path, "/") == "/images/prune",
		r.Method == http.MethodGet && path == "/metrics":
		// The client speaks the engine's version, which may be newer than
		// the server's: the prune answers as the server's newest.
		r = r.Clone(r.Context())
		r.URL.Path, r.URL.RawPath = path, ""
		p.server.ServeHTTP(w, r)
		return
	}
	p.upstream.ServeHTTP(w, r)
}
