package containers

import (
	"context"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
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
			want: plan.Container{Source: "cri", Image: "docker.io/library/app:1", ImageID: target, ConfigID: config},
		},
		{
			name: "before containerd 2.4: no target digest",
			json: `{"Version":"v1","Metadata":{"ID":"c1","ImageRef":"` + config.String() + `","ImageName":"docker.io/library/app@` + target.String() + `"}}`,
			want: plan.Container{Source: "cri", Image: "docker.io/library/app@" + target.String(), ConfigID: config},
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
		{ID: "broken", Extensions: ext(`not json`)},
	}
	got, err := CRI{}.Containers(context.Background(), records)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(got, []plan.Container{{ID: "cri", Source: "cri", Image: "docker.io/library/pod:1"}}))
}
