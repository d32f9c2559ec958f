// Package safefile opens the files imgprune keeps beside others' (a lock
// beside containerd's socket, a metrics file in a node exporter's folder)
// so that a file another user planted there cannot turn its writes onto
// a file it points at.
package safefile

import (
	"errors"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// OpenOwn opens path for reading and writing, creating it with perm when
// it is not there. It refuses, without following or changing anything, a
// symlink, a file that is not a regular one, a file with more than one
// link (a hard link to another file), and a file another user owns: each
// may be planted to have the caller truncate or write what it points at.
func OpenOwn(path string, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if errors.Is(err, unix.ELOOP) {
		return nil, errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("%s is a symlink: refusing to follow it; remove it", path))
	}
	if err != nil {
		return nil, err
	}
	if err := own(f); err != nil {
		f.Close()
		return nil, errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("%s %v: refusing to use it; remove it", path, err))
	}
	return f, nil
}

// OpenRead opens path for reading without following a symlink.
func OpenRead(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("%s is a symlink: refusing to follow it; remove it", path))
	}
	return f, err
}

// own tells why f is not a plain file of this process's user, or nil.
func own(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return errors.New("is not a regular file")
	case st.Nlink > 1:
		return fmt.Errorf("has %d links (a hard link to another file)", st.Nlink)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("is owned by uid %d, not by this user", st.Uid)
	}
	return nil
}
