package safefile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// TestOpenOwnRefusesPlantedFiles: what another user may plant where a lock
// or metrics file goes is refused, and the file it points at is unchanged.
func TestOpenOwnRefusesPlantedFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, path, victim string)
		want  string
	}{
		{name: "symlink", plant: func(t *testing.T, path, victim string) { assert.NilError(t, os.Symlink(victim, path)) }, want: "is a symlink"},
		{name: "hard link", plant: func(t *testing.T, path, victim string) { assert.NilError(t, os.Link(victim, path)) }, want: "has 2 links"},
		{name: "fifo", plant: func(t *testing.T, path, _ string) { assert.NilError(t, syscall.Mkfifo(path, 0o600)) }, want: "is not a regular file"},
		{name: "another user's", plant: func(t *testing.T, path, _ string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a file away")
			}
			assert.NilError(t, os.WriteFile(path, []byte("theirs"), 0o666))
			assert.NilError(t, os.Chown(path, 65534, 65534))
		}, want: "is owned by uid 65534"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			victim, path := filepath.Join(dir, "victim"), filepath.Join(dir, "imgprune.lock")
			assert.NilError(t, os.WriteFile(victim, []byte("keep me"), 0o600))
			tc.plant(t, path, victim)

			f, err := OpenOwn(path, 0o600)

			assert.Check(t, errdefs.IsFailedPrecondition(err), "%v", err)
			assert.Check(t, is.ErrorContains(err, tc.want))
			assert.Check(t, f == nil)
			data, err := os.ReadFile(victim)
			assert.NilError(t, err)
			assert.Check(t, is.Equal(string(data), "keep me"))
		})
	}
}

// TestOpenOwn creates a missing file and opens one of its own.
func TestOpenOwn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	for range 2 {
		f, err := OpenOwn(path, 0o600)
		assert.NilError(t, err)
		assert.NilError(t, f.Close())
	}
	_, err := OpenRead(path)
	assert.NilError(t, err)
	link := path + ".link"
	assert.NilError(t, os.Symlink(path, link))
	_, err = OpenRead(link)
	assert.Check(t, errdefs.IsFailedPrecondition(err), "%v", err)
}
