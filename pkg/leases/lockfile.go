package leases

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imgprune/imgprune/internal/safefile"
)

// fileLock is a held flock on a lock file. The kernel releases it when its
// process dies, whatever PID namespace the process ran in.
type fileLock struct {
	f *os.File
	// id names the file and this boot: "<boot>:<device>:<inode>". A lease
	// holder that recorded the same id used the same file.
	id string
}

// lockFile takes the file lock on path without waiting. When another
// process holds it, the error is the conflict, saying who holds it as the
// holder wrote it into the file.
func lockFile(path string, me Holder) (*fileLock, error) {
	f, err := safefile.OpenOwn(path, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the prune lock file %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		// Read from the file held open: path may point elsewhere by now.
		buf := make([]byte, 512)
		n, _ := f.ReadAt(buf, 0)
		who := buf[:n]
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (by %s)", ErrPruneRunning, describeFile(string(who)))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Say who holds it, for the conflict message of the next one.
	who := fmt.Sprintf("%s since %s", me.Describe(), time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(who), 0)
	}
	return &fileLock{f: f, id: fmt.Sprintf("%s:%d:%d", me.Boot, st.Dev, st.Ino)}, nil
}

func describeFile(who string) string {
	if who = strings.TrimSpace(who); who == "" {
		return "another process on this host"
	}
	return who
}

// unlock releases the file lock; the file stays, since removing it would
// race with the next holder opening it.
func (l *fileLock) unlock() {
	if l == nil {
		return
	}
	l.f.Truncate(0)
	l.f.Close()
}
