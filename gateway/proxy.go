package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelplane/modelplane/internal/httperr"
)

// DefaultPredictPath is where a replica takes predictions when it recorded no path.
const DefaultPredictPath = "/predict"

// statusClientClosed is recorded (never sent) when the client went away first.
const statusClientClosed = 499

// replayLimit is the largest request body read whole before it is sent, so that it can be
// sent again when a pooled connection turns out to have been closed by the model server.
const replayLimit = 64 << 10

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// forward sends the request to a replica of dep (rep, already counted) and copies the answer
// back. path is where it goes on the model server; empty means the replica's predict path. A replica that refuses the connection is replaced by another once; a pooled
// connection that the model server closed meanwhile is replaced by a new one. Nothing else is
// retried.
func (g *Gateway) forward(w *statusWriter, r *http.Request, dep *deployment, rep *replica, start time.Time, path string) {
	defer func() { rep.release() }()
	if r.ContentLength > g.opts.MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "request body is larger than the limit of %d bytes", g.opts.MaxBodyBytes)
		return
	}
	ctx, cancel := context.WithTimeoutCause(r.Context(), g.opts.UpstreamTimeout, errUpstreamTimeout)
	defer cancel()
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp

	var body io.Reader
	length := r.ContentLength
	if r.Body == nil || r.Body == http.NoBody || length == 0 {
		w.shadow.keep(nil)
	} else {
		limited := http.MaxBytesReader(w, r.Body, g.opts.MaxBodyBytes)
		if length > 0 && length <= replayLimit {
			b := make([]byte, length)
			if _, err := io.ReadFull(limited, b); err != nil {
				g.upstreamError(w, ctx, dep, rep, fmt.Errorf("reading the request body: %w", err))
				return
			}
			body = bytes.NewReader(b)
			w.shadow.keep(b)
		} else {
			body = limited
		}
	}
	res, conn, err := g.roundTrip(ctx, r, dep, &rep, path, body, length, buf)
	if err != nil {
		g.upstreamError(w, ctx, dep, rep, err)
		return
	}
	w.ttfb = time.Since(start)
	copyResponseHeader(w.Header(), res.Header)
	w.WriteHeader(res.StatusCode)
	stop := context.AfterFunc(ctx, func() { _ = conn.nc.SetDeadline(aLongTimeAgo) })
	// A streamed answer that stays silent for the deployment's streaming_read_timeout is
	// ended: the timer interrupts the read it waits in, and every read that brings something
	// starts it again.
	var silent atomic.Bool
	var onRead func()
	if timeout := dep.streamingReadTimeout; timeout > 0 && streaming(res) {
		idle := time.AfterFunc(timeout, func() {
			silent.Store(true)
			_ = conn.nc.SetDeadline(aLongTimeAgo)
		})
		defer idle.Stop()
		onRead = func() { idle.Reset(timeout) }
	}
	complete, err := copyBody(w, res, streaming(res), buf, onRead)
	interrupted := !stop() || silent.Load()
	if err != nil && silent.Load() {
		err = fmt.Errorf("the model server sent nothing for %s (runtime.streaming_read_timeout): %w", dep.streamingReadTimeout, err)
	}
	if complete && !res.Close && !interrupted {
		g.pool.put(conn)
	} else {
		conn.nc.Close()
	}
	if err != nil {
		g.cutShort(w, r, ctx, dep, rep, err)
	}
}

// cutShort handles an answer that broke off after its status was sent: a client is told by
// the connection's abort, an async attempt's capture records why.
func (g *Gateway) cutShort(w *statusWriter, r *http.Request, ctx context.Context, dep *deployment, rep *replica, err error) {
	timedOut := errors.Is(context.Cause(ctx), errUpstreamTimeout)
	if c, ok := w.ResponseWriter.(*capture); ok {
		c.cut, c.timedOut = err, timedOut
		return
	}
	if r.Context().Err() != nil {
		return // the client left: nobody reads the rest
	}
	// The status is out: all that is left is to tell the client the answer is cut short.
	g.log.WarnContext(r.Context(), "answer cut short", "deployment_id", dep.id, "replica_id", rep.id,
		"request_id", r.Header.Get(headerRequestID), "err", err, "timed_out", timedOut)
	panic(http.ErrAbortHandler)
}

// roundTrip writes the request to a replica and reads the answer's head. *rep is the replica
// it went to, which a retry after a refused connection changes.
func (g *Gateway) roundTrip(ctx context.Context, r *http.Request, dep *deployment, rep **replica, path string,
	body io.Reader, length int64, buf []byte) (*http.Response, *upConn, error) {
	switched := false
	for attempt := 0; ; attempt++ {
		to := *rep
		conn := g.pool.get(to.address)
		reused := conn != nil
		if conn == nil {
			var err error
			if conn, err = g.pool.dial(ctx, to.address); err != nil {
				if !switched && isConnectFailure(err) && ctx.Err() == nil {
					if next := dep.pickReplica(to); next != nil {
						to.release()
						*rep, switched = next, true
						continue
					}
				}
				return nil, nil, err
			}
		}
		if br, ok := body.(*bytes.Reader); ok {
			_, _ = br.Seek(0, io.SeekStart)
		}
		stop := context.AfterFunc(ctx, func() { _ = conn.nc.SetDeadline(aLongTimeAgo) })
		p := path
		if p == "" {
			p = to.predictPath
		}
		err := writeRequest(conn, r, p, body, length, buf)
		var res *http.Response
		for err == nil {
			if res, err = http.ReadResponse(conn.br, r); err == nil && res.StatusCode >= 100 && res.StatusCode < 200 {
				continue // an interim answer (100 Continue): the real one follows
			}
			break
		}
		if err == nil {
			err = checkStatus(res)
		}
		if stop() && err == nil {
			return res, conn, nil
		}
		conn.nc.Close()
		if err == nil {
			err = context.Cause(ctx)
		}
		// A pooled connection the server closed while it sat idle fails before any answer:
		// the request never reached the model, so it is sent again on a new connection,
		// if its body was kept.
		if _, replayable := body.(*bytes.Reader); reused && (body == nil || replayable) && attempt < 3 &&
			ctx.Err() == nil && closedByPeer(err) {
			continue
		}
		return nil, nil, err
	}
}

// closedByPeer reports whether err is the other end closing or resetting the connection.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// isConnectFailure reports whether err is a failure to open a connection, before any byte
// of the request was written.
func isConnectFailure(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// upstreamError answers a request that could not be forwarded; nothing was written yet.
func (g *Gateway) upstreamError(w http.ResponseWriter, ctx context.Context, dep *deployment, rep *replica, err error) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "request body is larger than the limit of %d bytes", g.opts.MaxBodyBytes)
	case errors.Is(context.Cause(ctx), errUpstreamTimeout):
		writeError(w, http.StatusGatewayTimeout, "deployment %s did not answer within %s", dep.id, g.opts.UpstreamTimeout)
	case ctx.Err() != nil:
		// The client left; nobody reads an answer.
		w.WriteHeader(statusClientClosed)
	default:
		g.log.WarnContext(ctx, "forwarding failed", "deployment_id", dep.id, "replica_id", rep.id, "err", err)
		writeError(w, http.StatusBadGateway, "deployment %s: model server unreachable or closed the connection", dep.id)
	}
}

var errUpstreamTimeout = errors.New("upstream timeout")

const headerRequestID = "X-Request-Id"

// requestID keeps the client's X-Request-Id or makes one (random, not secret).
func requestID(r *http.Request) string {
	if id := r.Header.Get(headerRequestID); id != "" && len(id) <= 200 {
		return id
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// statusWriter remembers the status written, for metrics, and passes flushes through so
// streamed answers are not buffered.
type statusWriter struct {
	http.ResponseWriter
	status int
	ttfb   time.Duration
	// shadow is the request's shadow copy, nil when it is not copied.
	shadow *shadowCopy
}

// latency is how long the request took: for a websocket its handshake, since how long a
// websocket stays open says nothing of how fast the model answers (the canary analysis reads
// latencies).
func (w *statusWriter) latency(now, start time.Time) time.Duration {
	if w.status == http.StatusSwitchingProtocols {
		return w.ttfb
	}
	return now.Sub(start)
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	if code == statusClientClosed {
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writeError answers in API.md's error shape; a 503 also says when to try again.
func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(RetryAfter/time.Second)))
	}
	httperr.Write(w, status, fmt.Sprintf(format, args...))
}
