package docker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/modelplane/modelplane/agent/runtime"
)

// maxLinesRead bounds what one Lines call reads of a container's log.
const maxLinesRead = 64 << 20

var _ runtime.LineReader = (*Runtime)(nil)

// Lines implements runtime.LineReader: the container's output stamped in [since, until), with
// the engine's timestamps. A container that is gone (removed when its replica stopped) has
// none.
func (r *Runtime) Lines(ctx context.Context, h runtime.Handle, since, until time.Time) ([]runtime.Line, error) {
	c, err := r.inspect(ctx, containerRef(h))
	if statusCode(err) == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}, "timestamps": {"1"}}
	if !since.IsZero() {
		q.Set("since", unixSeconds(since))
	}
	if !until.IsZero() {
		// The engine's until is inclusive and its lines are filtered again below.
		q.Set("until", unixSeconds(until))
	}
	resp, err := r.engine.open(ctx, http.MethodGet, "/containers/"+url.PathEscape(c.ID)+"/logs", q, nil, true)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []runtime.Line
	add := func(stream, text string) {
		stamp, msg, _ := strings.Cut(text, " ")
		t, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil || t.Before(since) || (!until.IsZero() && !t.Before(until)) {
			return
		}
		out = append(out, runtime.Line{Time: t.UTC(), Stream: stream, Message: strings.TrimSuffix(msg, "\r")})
	}
	body := io.LimitReader(resp.Body, maxLinesRead)
	if c.Config.Tty {
		err = splitLines(body, func(p []byte) { add("stdout", string(p)) })
	} else {
		err = demuxLines(body, add)
	}
	return out, err
}

func unixSeconds(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

// splitLines calls fn with each line of r.
func splitLines(r io.Reader, fn func([]byte)) error {
	data, err := io.ReadAll(r)
	for _, l := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(l) > 0 {
			fn(l)
		}
	}
	return err
}

// demuxLines reads the engine's multiplexed log stream (see demuxTail) and calls fn with each
// line and its stream. With timestamps on, the engine starts every line it writes with one.
func demuxLines(r io.Reader, fn func(stream, line string)) error {
	partial := map[byte][]byte{}
	var hdr [8]byte
	flush := func() {
		for s, p := range partial {
			fn(streamName(s), string(p))
		}
	}
	for {
		if _, err := io.ReadFull(r, hdr[:]); errors.Is(err, io.EOF) {
			flush()
			return nil
		} else if err != nil {
			flush()
			return fmt.Errorf("read log frame header: %w", err)
		}
		size := binary.BigEndian.Uint32(hdr[4:])
		if size > maxLogFrame {
			return fmt.Errorf("log frame of %d bytes exceeds %d: not a multiplexed stream", size, maxLogFrame)
		}
		payload := make([]byte, size)
		if _, err := io.ReadFull(r, payload); err != nil {
			flush()
			return fmt.Errorf("read log frame: %w", err)
		}
		p := append(partial[hdr[0]], payload...)
		delete(partial, hdr[0])
		for {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				if len(p) > 0 {
					partial[hdr[0]] = p
				}
				break
			}
			fn(streamName(hdr[0]), string(p[:i]))
			p = p[i+1:]
		}
	}
}

func streamName(b byte) string {
	if b == 2 {
		return "stderr"
	}
	return "stdout"
}
