package server

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client/pkg/stringid"
	"google.golang.org/protobuf/types/known/anypb"

	imgcontainers "github.com/imgprune/imgprune/daemon/containers"
)

// Containers are records only: a containerd container record per
// container, with the reference as typed (Container.Image) and the image
// ID it resolved to (a label), which is what imgprune reads of any
// creator's records to keep their images. Nothing runs.
const (
	// nameLabel holds the container's name, without docker's leading "/".
	nameLabel = "org.imgprune.container.name"
	// configExtension holds the container's config as the API gave it.
	configExtension = "org.imgprune.container.config"
	configTypeURL   = "github.com/moby/moby/api/types/container.Config"
	// recordRuntime names the runtime of a record: none runs it.
	recordRuntime = "io.imgprune.record.v1"
	specTypeURL   = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
)

// maxConfigBody bounds the body of POST /containers/create.
const maxConfigBody = 4 << 20

var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// createContainer answers POST /containers/create: `docker create`.
func (s *Server) createContainer(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	var req container.CreateRequest
	// A container's config is a few kilobytes: a body past the bound is
	// refused, not read whole into memory.
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxConfigBody)).Decode(&req); err != nil {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid container config: %v", err))
	}
	if req.Config == nil || req.Config.Image == "" {
		return errdefs.ErrInvalidArgument.WithMessage("config cannot be empty in order to create a container")
	}
	name := r.FormValue("name")
	if name != "" && !validName.MatchString(name) {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
	}
	name = strings.TrimPrefix(name, "/")
	target, _, err := s.read.Resolve(ctx, req.Config.Image)
	if err != nil {
		return noSuchImage(req.Config.Image, err)
	}
	imageConfig, err := s.read.Config(ctx, target)
	if err != nil {
		return err
	}
	if err := mergeImageConfig(req.Config, imageConfig); err != nil {
		return err
	}
	id := stringid.GenerateRandomID()
	if name == "" {
		name = "imgprune_" + id[:12]
	}
	// A name is taken once: its check and the record's creation go
	// together.
	s.naming.Lock()
	defer s.naming.Unlock()
	if err := s.nameFree(ctx, name); err != nil {
		return err
	}
	cfg, err := json.Marshal(req.Config)
	if err != nil {
		return err
	}
	_, err = s.records.create(ctx, containers.Container{
		ID:    id,
		Image: req.Config.Image,
		Labels: map[string]string{
			nameLabel:                  name,
			imgcontainers.ImageIDLabel: target.Digest.String(),
		},
		Runtime:    containers.RuntimeInfo{Name: recordRuntime},
		Spec:       &anypb.Any{TypeUrl: specTypeURL, Value: []byte("{}")},
		Extensions: map[string]typeurl.Any{configExtension: &anypb.Any{TypeUrl: configTypeURL, Value: cfg}},
	}, target, imageConfig)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, container.CreateResponse{ID: id, Warnings: []string{}})
}

// mergeImageConfig fills what the request leaves out from the image's
// config, as the Engine does, and refuses a container with no command.
func mergeImageConfig(cfg *container.Config, raw []byte) error {
	var img dockerspec.DockerOCIImage
	if raw != nil {
		if err := json.Unmarshal(raw, &img); err != nil {
			return fmt.Errorf("decode the image's config: %w", err)
		}
	}
	if len(cfg.Entrypoint) == 0 {
		cfg.Entrypoint = img.Config.Entrypoint
		if len(cfg.Cmd) == 0 {
			cfg.Cmd = img.Config.Cmd
		}
	}
	if len(cfg.Cmd) == 0 && len(cfg.Entrypoint) == 0 {
		return errdefs.ErrInvalidArgument.WithMessage("no command specified")
	}
	if len(cfg.Env) == 0 {
		cfg.Env = img.Config.Env
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = img.Config.WorkingDir
	}
	if cfg.User == "" {
		cfg.User = img.Config.User
	}
	if len(img.Config.Labels) > 0 {
		labels := maps.Clone(img.Config.Labels)
		maps.Copy(labels, cfg.Labels)
		cfg.Labels = labels
	}
	return nil
}

// nameFree refuses a name another container has, as the Engine does.
func (s *Server) nameFree(ctx context.Context, name string) error {
	taken, err := s.listRecords(ctx, fmt.Sprintf("labels.%q==%q", nameLabel, name))
	if err != nil {
		return err
	}
	if len(taken) > 0 {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", name, taken[0].ID))
	}
	return nil
}

// listRecords lists the server's own container records that match every one
// of filters. Those of other creators (the kubelet, nerdctl, a Docker
// Engine) may belong to running containers: they are not the server's to
// show as created, nor to remove.
func (s *Server) listRecords(ctx context.Context, filters ...string) ([]containers.Container, error) {
	// containerd ORs the filter strings of a List and ANDs only the
	// comma-separated parts of one: the parts go in one string.
	all, err := s.records.stores.Containers.List(ctx, strings.Join(append([]string{fmt.Sprintf("runtime.name==%q", recordRuntime)}, filters...), ","))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	return all, nil
}

// findContainer finds one of the server's containers by ID, unique ID
// prefix or name.
func (s *Server) findContainer(ctx context.Context, ref string) (containers.Container, error) {
	all, err := s.listRecords(ctx)
	if err != nil {
		return containers.Container{}, err
	}
	name := strings.TrimPrefix(ref, "/")
	var byPrefix []containers.Container
	for _, c := range all {
		switch {
		case c.ID == ref, containerName(c) == name:
			return c, nil
		case ref != "" && strings.HasPrefix(c.ID, ref):
			byPrefix = append(byPrefix, c)
		}
	}
	switch len(byPrefix) {
	case 1:
		return byPrefix[0], nil
	case 0:
		return containers.Container{}, errdefs.ErrNotFound.WithMessage("No such container: " + ref)
	}
	return containers.Container{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("multiple IDs found with provided prefix: %s", ref))
}

// containerName is the name of a record, or its ID.
func containerName(c containers.Container) string {
	if n := c.Labels[nameLabel]; n != "" {
		return n
	}
	return c.ID
}

// containerConfig is the config a record was created with; records of
// other creators have only their image.
func containerConfig(c containers.Container) *container.Config {
	cfg := &container.Config{Image: c.Image}
	if ext, ok := c.Extensions[configExtension]; ok && ext != nil {
		json.Unmarshal(ext.GetValue(), cfg)
	}
	return cfg
}

func (s *Server) containerSummaries(ctx context.Context, withSize bool) ([]container.Summary, error) {
	all, err := s.listRecords(ctx)
	if err != nil {
		return nil, err
	}
	// A rootfs's usage walks its files: asked for only when wanted, as
	// the Engine does.
	size := func(c containers.Container) int64 {
		if !withSize {
			return 0
		}
		return s.records.size(ctx, c)
	}
	out := []container.Summary{}
	for _, c := range all {
		cfg := containerConfig(c)
		out = append(out, container.Summary{
			ID:      c.ID,
			Names:   []string{"/" + containerName(c)},
			Image:   s.shownImage(ctx, c),
			ImageID: c.Labels[imgcontainers.ImageIDLabel],
			Command: strings.Join(append(slices.Clone(cfg.Entrypoint), cfg.Cmd...), " "),
			Created: c.CreatedAt.Unix(),
			SizeRw:  size(c),
			Labels:  cfg.Labels,
			State:   container.StateCreated,
			Status:  "Created",
			Ports:   []container.PortSummary{},
			Mounts:  []container.MountPoint{},
		})
	}
	slices.SortStableFunc(out, func(a, b container.Summary) int { return int(b.Created - a.Created) })
	return out, nil
}

// shownImage is the image `docker ps` shows for c, as the Engine has it:
// the reference as typed while it still means the image the container was
// made from, its image ID once that name went or moved on.
func (s *Server) shownImage(ctx context.Context, c containers.Container) string {
	id := c.Labels[imgcontainers.ImageIDLabel]
	if id == "" || c.Image == id {
		return c.Image
	}
	if target, _, err := s.read.Resolve(ctx, c.Image); err == nil && target.Digest.String() == id {
		return c.Image
	}
	return id
}

// listContainers answers GET /containers/json: no container runs, so
// only all=1 lists any.
func (s *Server) listContainers(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	args, err := parseFilters(r)
	if err != nil {
		return err
	}
	for key := range args {
		if key != "status" && key != "id" && key != "name" {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter '%s'", key))
		}
	}
	if !boolValue(r, "all") && len(args["status"]) == 0 {
		return writeJSON(w, http.StatusOK, []container.Summary{})
	}
	sums, err := s.containerSummaries(ctx, boolValue(r, "size"))
	if err != nil {
		return err
	}
	sums = slices.DeleteFunc(sums, func(c container.Summary) bool {
		if st := args["status"]; len(st) > 0 && !slices.Contains(st, string(container.StateCreated)) {
			return true
		}
		if ids := args["id"]; len(ids) > 0 && !slices.ContainsFunc(ids, func(id string) bool { return strings.HasPrefix(c.ID, id) }) {
			return true
		}
		if names := args["name"]; len(names) > 0 && !slices.ContainsFunc(names, func(n string) bool { return strings.Contains(c.Names[0], n) }) {
			return true
		}
		return false
	})
	return writeJSON(w, http.StatusOK, sums)
}

// inspectContainer answers GET /containers/{id}/json.
func (s *Server) inspectContainer(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	c, err := s.findContainer(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	cfg := containerConfig(c)
	var path string
	args := append(slices.Clone(cfg.Entrypoint), cfg.Cmd...)
	if len(args) > 0 {
		path, args = args[0], args[1:]
	}
	return writeJSON(w, http.StatusOK, container.InspectResponse{
		ID:      c.ID,
		Created: c.CreatedAt.UTC().Format(time.RFC3339Nano),
		Path:    path,
		Args:    append([]string{}, args...),
		State: &container.State{
			Status:     container.StateCreated,
			StartedAt:  "0001-01-01T00:00:00Z",
			FinishedAt: "0001-01-01T00:00:00Z",
		},
		Image:      c.Labels[imgcontainers.ImageIDLabel],
		Name:       "/" + containerName(c),
		Driver:     c.Snapshotter,
		Platform:   "linux",
		Config:     cfg,
		HostConfig: &container.HostConfig{},
		Mounts:     []container.MountPoint{},
	})
}

// removeContainer answers DELETE /containers/{id}: `docker rm`.
func (s *Server) removeContainer(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	c, err := s.findContainer(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.records.remove(ctx, c.ID); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
