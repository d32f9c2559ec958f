package server

import (
	"context"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/client/pkg/versions"
)

func (s *Server) ping(_ context.Context, w http.ResponseWriter, r *http.Request) error {
	w.Header().Add("Cache-Control", "no-cache, no-store, must-revalidate")
	w.Header().Add("Pragma", "no-cache")
	w.Header().Set("Swarm", "inactive")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Length", "0")
		return nil
	}
	w.Write([]byte("OK")) // a client gone is nothing to answer
	return nil
}

func (s *Server) getVersion(_ context.Context, w http.ResponseWriter, _ *http.Request) error {
	return writeJSON(w, http.StatusOK, system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "imgprune"},
		Version:       s.version,
		APIVersion:    APIVersion,
		MinAPIVersion: MinAPIVersion,
		Os:            runtime.GOOS,
		Arch:          runtime.GOARCH,
		GoVersion:     runtime.Version(),
		Components:    []system.ComponentVersion{{Name: "imgprune", Version: s.version}},
	})
}

// getInfo answers the part of /info that describes images and container
// records; the rest of an engine imgprune does not have.
func (s *Server) getInfo(ctx context.Context, w http.ResponseWriter, _ *http.Request) error {
	rows, err := s.list.Images(ctx)
	if err != nil {
		return err
	}
	ids := map[string]bool{}
	for _, row := range rows {
		ids[row.ID.String()] = true
	}
	ctrs, err := s.listRecords(ctx)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	return writeJSON(w, http.StatusOK, system.Info{
		ID:                 "imgprune",
		Containers:         len(ctrs),
		ContainersStopped:  len(ctrs),
		Images:             len(ids),
		Driver:             s.driver,
		OSType:             runtime.GOOS,
		Architecture:       runtime.GOARCH,
		NCPU:               runtime.NumCPU(),
		Name:               host,
		ServerVersion:      s.version,
		SystemTime:         time.Now().Format(time.RFC3339Nano),
		OperatingSystem:    "imgprune",
		IndexServerAddress: "https://index.docker.io/v1/",
	})
}

// legacyDiskUsage is the shape of /system/df before API 1.52, still sent
// beside the new one to 1.52 clients that do not ask for verbose output.
type legacyDiskUsage struct {
	LayersSize int64               `json:"LayersSize,omitzero"`
	Images     []image.Summary     `json:"Images,omitzero"`
	Containers []container.Summary `json:"Containers,omitzero"`
	Volumes    []any               `json:"Volumes,omitzero"`
	BuildCache []any               `json:"BuildCache,omitzero"`
}

// diskUsage answers /system/df for images, and container records (which
// take no space); volumes and build cache imgprune does not have.
func (s *Server) diskUsage(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	wantImages, wantContainers := true, true
	if types, ok := r.Form["type"]; ok && !versions.LessThan(apiVersion(ctx), "1.42") {
		wantImages, wantContainers = false, false
		for _, t := range types {
			switch system.DiskUsageObject(t) {
			case system.ImageObject:
				wantImages = true
			case system.ContainerObject:
				wantContainers = true
			case system.VolumeObject, system.BuildCacheObject:
			default:
				return errdefs.ErrInvalidArgument.WithMessage("unknown object type: " + t)
			}
		}
	}
	var du system.DiskUsage
	if wantImages {
		sums, total, err := s.imageSummaries(ctx, listOptions{sharedSize: true})
		if err != nil {
			return err
		}
		reclaimable, err := s.list.Reclaimable(ctx, pruneAll)
		if err != nil {
			return err
		}
		iu := &image.DiskUsage{TotalCount: int64(len(sums)), TotalSize: total, Reclaimable: reclaimable, Items: sums}
		for _, sum := range sums {
			if sum.Containers > 0 {
				iu.ActiveCount++
			}
		}
		du.ImageUsage = iu
	}
	if wantContainers {
		sums, err := s.containerSummaries(ctx, true)
		if err != nil {
			return err
		}
		cu := &container.DiskUsage{TotalCount: int64(len(sums)), Items: sums}
		for _, c := range sums {
			// Nothing runs: every container's layer is reclaimable.
			cu.TotalSize += c.SizeRw
			cu.Reclaimable += c.SizeRw
		}
		du.ContainerUsage = cu
	}
	version := apiVersion(ctx)
	verbose := !versions.LessThan(version, "1.52") && boolValue(r, "verbose")
	var legacy legacyDiskUsage
	if !verbose {
		legacy.Volumes, legacy.BuildCache = []any{}, []any{}
		legacy.Images, legacy.Containers = []image.Summary{}, []container.Summary{}
		if du.ImageUsage != nil {
			legacy.LayersSize = du.ImageUsage.TotalSize
			legacy.Images = append(legacy.Images, du.ImageUsage.Items...)
		}
		if du.ContainerUsage != nil {
			legacy.Containers = append(legacy.Containers, du.ContainerUsage.Items...)
		}
	}
	switch {
	case versions.LessThan(version, "1.52"):
		return writeJSON(w, http.StatusOK, legacy)
	case verbose:
		return writeJSON(w, http.StatusOK, du)
	}
	return writeJSON(w, http.StatusOK, struct {
		legacyDiskUsage
		system.DiskUsage
	}{legacy, du})
}
