package process

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Streams are the log files a replica writes.
var Streams = []string{"stdout", "stderr"}

// TailLog returns the last n lines of a replica's stdout or stderr log.
func TailLog(dir, stream string, n int) ([]string, error) {
	if stream != "stdout" && stream != "stderr" {
		return nil, fmt.Errorf("unknown log stream %q: use stdout or stderr", stream)
	}
	f, err := os.Open(filepath.Join(dir, stream+".log"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Read at most the last 1 MiB: enough for any sane n, bounded for huge files.
	const window = 1 << 20
	if st, err := f.Stat(); err == nil && st.Size() > window {
		if _, err := f.Seek(-window, io.SeekEnd); err != nil {
			return nil, err
		}
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines, sc.Err()
}

// logTail is what a dead replica's report carries: the end of stderr, else of stdout.
func logTail(dir string, n int) []string {
	if dir == "" {
		return nil
	}
	for _, s := range []string{"stderr", "stdout"} {
		if lines, err := TailLog(dir, s, n); err == nil && len(lines) > 0 {
			return lines
		}
	}
	return nil
}

// RotateLogs rotates each log file in dir larger than limit (RotateLog).
func RotateLogs(dir string, limit int64, keep int) error {
	for _, s := range Streams {
		p := filepath.Join(dir, s+".log")
		st, err := os.Stat(p)
		if err != nil || st.Size() <= limit {
			continue
		}
		if err := RotateLog(p, keep); err != nil {
			return err
		}
	}
	return nil
}

// RotateLog moves the log file's content to .1 (older ones to .2 ... .keep) and truncates the
// file in place. The replica keeps its descriptor, opened in append mode, and goes on writing
// at the new end.
func RotateLog(p string, keep int) error {
	for i := keep - 1; i >= 1; i-- {
		_ = os.Rename(fmt.Sprintf("%s.%d", p, i), fmt.Sprintf("%s.%d", p, i+1))
	}
	if err := copyFile(p, p+".1"); err != nil {
		return err
	}
	return os.Truncate(p, 0)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
