package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
)

// TestRunRefusesWhatCannotRunAlone: the image holds the binary alone, so a
// binary that needs a dynamic loader, or no binary at all, is refused and
// no archive is written; a static one makes an archive.
func TestRunRefusesWhatCannotRunAlone(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "not-elf")
	assert.NilError(t, os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755))
	static := filepath.Join(dir, "static")
	build := exec.Command("go", "build", "-o", static, "../pause")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	assert.NilError(t, err, string(out))
	dynamic, err := exec.LookPath("ls")
	assert.NilError(t, err)
	for _, tc := range []struct {
		name, binary, ref, wantErr string
	}{
		{name: "dynamic", binary: dynamic, ref: "example.com/imgprune:1", wantErr: "linked dynamically"},
		{name: "not a binary", binary: text, ref: "example.com/imgprune:1", wantErr: "no Linux binary"},
		{name: "bad name", binary: static, ref: "Not A Ref", wantErr: "-name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			archive := filepath.Join(dir, tc.name+".tar")
			assert.ErrorContains(t, run(tc.binary, tc.ref, archive, ""), tc.wantErr)
			_, err := os.Stat(archive)
			assert.Assert(t, os.IsNotExist(err), "an archive was written")
		})
	}
	archive := filepath.Join(dir, "ok.tar")
	assert.NilError(t, run(static, "example.com/imgprune:1", archive, "v1"))
	fi, err := os.Stat(archive)
	assert.NilError(t, err)
	assert.Assert(t, fi.Size() > 0)
}
