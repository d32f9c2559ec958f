package plan

import (
	"os/exec"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
)

// TestPlanTouchesNoStore: the plan is a pure function of a snapshot. Its
// import graph proves it: no client of containerd or of a Docker Engine, no
// source of containers, no RPC stack.
func TestPlanTouchesNoStore(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	assert.NilError(t, err)
	for _, dep := range strings.Fields(string(out)) {
		for _, forbidden := range []string{
			"github.com/containerd/containerd/v2/client",
			"github.com/moby/moby/client",
			"github.com/imgprune/imgprune/daemon/containers",
			"github.com/imgprune/imgprune/daemon/images",
			"google.golang.org/grpc",
		} {
			assert.Check(t, dep != forbidden, "the plan imports %s", dep)
		}
	}
}
