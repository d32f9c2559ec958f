package store_test

import (
	"go/ast"
	"go/parser"
	"go/token"
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
	// What the image service stands on.
	service := slices.Concat(below, []string{"daemon/store", "daemon/reach", "daemon/images/plan", "daemon/containers", "pkg/progress"})
	// The prune and the check, beside the image service: neither imports
	// it, nor the other.
	beside := []string{"daemon/images/check", "daemon/images/prune"}
	for _, tc := range []struct {
		pkg   string
		below []string
	}{
		{pkg: "pkg/leases", below: []string{"internal/safefile"}},
		{pkg: "daemon/images/plan"},
		{pkg: "daemon/store", below: slices.Concat(below, []string{"daemon/images/plan"})},
		{pkg: "daemon/store/embedded", below: slices.Concat(below, []string{"daemon/images/plan", "daemon/store"})},
		{pkg: "daemon/reach", below: slices.Concat(below, []string{"daemon/images/plan", "daemon/store"})},
		{pkg: "daemon/containers", below: slices.Concat(below, []string{"daemon/store", "daemon/reach", "daemon/images/plan"})},
		{pkg: "pkg/progress"},
		{pkg: "pkg/metrics", below: []string{"internal/safefile", "pkg/progress"}},
		{pkg: "daemon/images/check", below: service},
		{pkg: "daemon/images/prune", below: service},
		{pkg: "daemon/images", below: slices.Concat(service, beside)},
		{pkg: "daemon/watch", below: slices.Concat(service, beside, []string{"daemon/images"})},
		{pkg: "daemon/server", below: slices.Concat(service, beside, []string{"daemon/images", "pkg/metrics"})},
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

// TestSizes keeps every file and function of the project small enough to
// read at once: no non-test file over 400 lines, no function over 80.
func TestSizes(t *testing.T) {
	const maxFile, maxFunc = 400, 80
	out, err := exec.Command("go", "list", "-tags", "e2e", "-f", `{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}} {{end}}`, "github.com/imgprune/imgprune/...").Output()
	assert.NilError(t, err)
	files := strings.Fields(string(out))
	assert.Assert(t, len(files) > 50, "go list found %d files", len(files))
	fset := token.NewFileSet()
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, 0)
		assert.NilError(t, err)
		lines := fset.File(f.Pos()).LineCount()
		assert.Check(t, lines <= maxFile, "%s has %d lines", path, lines)
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok {
				n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1
				assert.Check(t, n <= maxFunc, "%s: %s has %d lines", path, fn.Name.Name, n)
			}
		}
	}
}
