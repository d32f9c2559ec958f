package store_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
)

// TestLayers checks the import graph from the bottom up: each package
// imports of the project only the packages below it, never one above.
func TestLayers(t *testing.T) {
	const mod = "github.com/imgprune/imgprune/"
	below := []string{"internal/safefile", "pkg/leases"}
	for _, tc := range []struct {
		pkg   string
		below []string
	}{
		{pkg: "pkg/leases", below: []string{"internal/safefile"}},
		{pkg: "daemon/store", below: below},
		{pkg: "daemon/store/embedded", below: slices.Concat(below, []string{"daemon/store"})},
		{pkg: "daemon/reach", below: slices.Concat(below, []string{"daemon/store"})},
		{pkg: "daemon/images/plan"},
		{pkg: "daemon/containers", below: []string{"daemon/images/plan"}},
	} {
		t.Run(tc.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", mod+tc.pkg).Output()
			assert.NilError(t, err)
			for _, dep := range strings.Fields(string(out)) {
				own, ok := strings.CutPrefix(dep, mod)
				if !ok || own == tc.pkg {
					continue
				}
				assert.Check(t, slices.Contains(tc.below, own), "%s imports %s, which is not below it", tc.pkg, own)
			}
		})
	}
}
