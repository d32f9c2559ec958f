package containers

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/types/known/anypb"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/imgprune/imgprune/daemon/images/plan"
)

func TestDecodeCRI(t *testing.T) {
	target, config := digest.FromString("target"), digest.FromString("config")
	tests := []struct {
		name    string
		json    string
		want    plan.Container
		wantErr string
	}{
		{
			name: "containerd 2.4: name, config and target",
			json: `{"Version":"v1","Metadata":{"ID":"c1","SandboxID":"s1","ImageRef":"` + config.String() + `","ImageDigest":"` + target.String() + `","ImageName":"docker.io/library/app:1","LogPath":""}}`,
			want: plan.Container{Source: "cri", Image: "docker.io/library/app:1", ImageID: target, ConfigID: config, RunsRecorded: true},
		},
		{
			name: "before containerd 2.4: no target digest",
			json: `{"Version":"v1","Metadata":{"ID":"c1","ImageRef":"` + config.String() + `","ImageName":"docker.io/library/app@` + target.String() + `"}}`,
			want: plan.Container{Source: "cri", Image: "docker.io/library/app@" + target.String(), ConfigID: config, RunsRecorded: true},
		},
		{name: "unknown version", json: `{"Version":"v2","Metadata":{"ImageRef":"` + config.String() + `"}}`, wantErr: `unsupported version "v2"`},
		{name: "no image", json: `{"Version":"v1","Metadata":{"ID":"c1"}}`, wantErr: "names no image"},
		{name: "not JSON", json: `{"Version":`, wantErr: "decode CRI container metadata"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeCRI([]byte(tc.json))
			if tc.wantErr != "" {
				assert.Check(t, is.ErrorContains(err, tc.wantErr))
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(got, tc.want))
		})
	}
}

func TestCRISkipsOtherRecords(t *testing.T) {
	ext := func(json string) map[string]typeurl.Any {
		return map[string]typeurl.Any{CRIMetadataExtension: &anypb.Any{TypeUrl: "github.com/containerd/cri/pkg/store/container/Metadata", Value: []byte(json)}}
	}
	records := []containers.Container{
		{ID: "docker", Image: "docker.io/library/app:1"},
		{ID: "cri", Extensions: ext(`{"Version":"v1","Metadata":{"ImageName":"docker.io/library/pod:1"}}`)},
	}
	got, err := CRI{}.Containers(context.Background(), records)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(got, []plan.Container{{ID: "cri", Source: "cri", Image: "docker.io/library/pod:1", RunsRecorded: true}}))
}

// TestCRIFailsOnMetadataItCannotRead: a container whose CRI metadata does
// not decode fails the listing, with its ID: a prune that cannot tell which
// image it runs changes nothing.
func TestCRIFailsOnMetadataItCannotRead(t *testing.T) {
	for _, data := range []string{`not json`, `{"Version":"v9"}`, `{"Version":"v1","Metadata":{}}`} {
		records := []containers.Container{
			{ID: "docker", Image: "docker.io/library/app:1"},
			{ID: "broken", Extensions: map[string]typeurl.Any{CRIMetadataExtension: &anypb.Any{Value: []byte(data)}}},
		}
		_, err := CRI{}.Containers(context.Background(), records)
		assert.Check(t, is.ErrorContains(err, "container broken: cannot tell which image it runs"), data)
		assert.Check(t, errdefs.IsDataLoss(err), data)
	}
}

// TestRecordsLeaveCRIContainersToCRI: containerd 2.4's CRI writes the name
// as typed in Container.Image too; the Records source leaves such a
// container to the CRI source, which knows the image it runs. A sandbox
// carries no container metadata and is read as any record.
func TestRecordsLeaveCRIContainersToCRI(t *testing.T) {
	ext := map[string]typeurl.Any{CRIMetadataExtension: &anypb.Any{TypeUrl: "github.com/containerd/cri/pkg/store/container/Metadata", Value: []byte(`{"Version":"v1","Metadata":{"ImageName":"docker.io/library/pod:1"}}`)}}
	records := []containers.Container{
		{ID: "docker", Image: "docker.io/library/app:1", Labels: map[string]string{ImageIDLabel: "sha256:" + strings.Repeat("a", 64)}},
		{ID: "cri", Image: "docker.io/library/pod:1", Labels: map[string]string{CRIKindLabel: "container"}, Extensions: ext},
		{ID: "sandbox", Image: "registry.k8s.io/pause:3.10", Labels: map[string]string{CRIKindLabel: "sandbox"}},
		{ID: "unreadable", Image: "docker.io/library/next:1", Extensions: map[string]typeurl.Any{CRIMetadataExtension: &anypb.Any{Value: []byte(`{"Version":"v9"}`)}}},
		{ID: "no image"},
	}
	got, err := Records{}.Containers(context.Background(), records)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(got, []plan.Container{
		{ID: "docker", Source: "containerd", Image: "docker.io/library/app:1", ImageID: digest.Digest("sha256:" + strings.Repeat("a", 64))},
		{ID: "sandbox", Source: "containerd", Image: "registry.k8s.io/pause:3.10"},
		// CRI's source cannot read it (and fails the listing); its
		// record's name is read here all the same.
		{ID: "unreadable", Source: "containerd", Image: "docker.io/library/next:1"},
	}))
}
