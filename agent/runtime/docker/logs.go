package docker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// logTailLines is how many of a dead container's last log lines Status reports.
const logTailLines = 20

// maxLogFrame bounds one frame of the log stream; the engine splits long lines well below it,
// so a larger size means the stream is not what we think it is.
const maxLogFrame = 1 << 20

// tailLines keeps the last max complete lines written to it, stream by stream: a line that a
// frame leaves unfinished on stdout is continued by the next stdout frame, not by stderr.
type tailLines struct {
	max     int
	lines   []string
	partial map[byte][]byte
	order   []byte // streams with a partial line, in the order they began it
}

func newTailLines(max int) *tailLines {
	return &tailLines{max: max, partial: map[byte][]byte{}}
}

func (t *tailLines) write(stream byte, p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if _, ok := t.partial[stream]; !ok {
				t.order = append(t.order, stream)
			}
			t.partial[stream] = append(t.partial[stream], p...)
			return
		}
		line := p[:i]
		if pending, ok := t.partial[stream]; ok {
			line = append(pending, line...)
			delete(t.partial, stream)
			t.order = removeByte(t.order, stream)
		}
		t.add(string(bytes.TrimSuffix(line, []byte("\r"))))
		p = p[i+1:]
	}
}

func (t *tailLines) add(line string) {
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

// finish flushes unfinished lines and returns the tail.
func (t *tailLines) finish() []string {
	for _, s := range t.order {
		t.add(string(t.partial[s]))
	}
	t.partial, t.order = map[byte][]byte{}, nil
	return t.lines
}

func removeByte(s []byte, b byte) []byte {
	out := s[:0]
	for _, x := range s {
		if x != b {
			out = append(out, x)
		}
	}
	return out
}

// demuxTail reads the engine's multiplexed log stream (the format of a container without a
// TTY) and returns its last max lines. Each frame is an 8-byte header, [stream, 0, 0, 0,
// size as big-endian uint32], then size bytes of payload; stream 1 is stdout, 2 stderr.
func demuxTail(r io.Reader, max int) ([]string, error) {
	t := newTailLines(max)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); errors.Is(err, io.EOF) {
			return t.finish(), nil
		} else if err != nil {
			return t.finish(), fmt.Errorf("read log frame header: %w", err)
		}
		size := binary.BigEndian.Uint32(hdr[4:])
		if size > maxLogFrame {
			return t.finish(), fmt.Errorf("log frame of %d bytes exceeds %d: not a multiplexed stream", size, maxLogFrame)
		}
		payload := make([]byte, size)
		if n, err := io.ReadFull(r, payload); err != nil {
			t.write(hdr[0], payload[:n])
			return t.finish(), fmt.Errorf("read log frame: %w", err)
		}
		t.write(hdr[0], payload)
	}
}

// rawTail reads a log stream that is not multiplexed (a container with a TTY).
func rawTail(r io.Reader, max int) ([]string, error) {
	t := newTailLines(max)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		t.write(0, buf[:n])
		if errors.Is(err, io.EOF) {
			return t.finish(), nil
		}
		if err != nil {
			return t.finish(), err
		}
	}
}
