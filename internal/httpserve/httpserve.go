// Package httpserve builds the HTTP servers modelplane listens with: bounded header reads,
// idle keep-alive connections and request bodies, and /metrics behind a token.
package httpserve

import (
	"bufio"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelplane/modelplane/internal/httperr"
)

// Defaults for Timeouts.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyReadTimeout   = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	// DefaultReadTimeout bounds a whole request on servers that take only small bodies (the
	// node agent, the worker's metrics).
	DefaultReadTimeout = 60 * time.Second
)

// Timeouts bound how long a client may hold a connection without sending. Zero fields take
// the defaults, except Read, where zero means no bound on the whole request.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers.
	ReadHeader time.Duration
	// BodyRead is the longest a request body may go without a byte. It is an idle bound,
	// renewed as the body arrives, so that a large upload over a slow link still finishes;
	// what the server writes back (a streamed answer) is not bounded.
	BodyRead time.Duration
	// Idle is how long a keep-alive connection waits for its next request.
	Idle time.Duration
	// Read, when set, bounds the whole request, body included (http.Server.ReadTimeout);
	// only for servers that never take long uploads or websockets.
	Read time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	if t.ReadHeader <= 0 {
		t.ReadHeader = DefaultReadHeaderTimeout
	}
	if t.BodyRead <= 0 {
		t.BodyRead = DefaultBodyReadTimeout
	}
	if t.Idle <= 0 {
		t.Idle = DefaultIdleTimeout
	}
	return t
}

// Server returns a server for h with t's bounds; the caller sets Addr if it needs one.
func Server(h http.Handler, t Timeouts) *http.Server {
	t = t.withDefaults()
	return &http.Server{
		Handler:           BoundBody(t.BodyRead, h),
		ReadHeaderTimeout: t.ReadHeader,
		IdleTimeout:       t.Idle,
		ReadTimeout:       t.Read,
	}
}

// BoundBody wraps h so that a request body that goes d without a byte fails the read (and
// the connection closes), and so that a response refusing a request whose body was never
// read (401, 413, ...) goes out at once and closes the connection: otherwise net/http would
// first wait to discard a body the client may never send.
func BoundBody(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		b := &idleBody{body: r.Body, rc: rc, d: d}
		r.Body = b
		h.ServeHTTP(&refusingWriter{ResponseWriter: w, rc: rc, body: b}, r)
		if !b.done.Load() {
			// The handler left the body unread: net/http discards it next, for no longer
			// than a body may go without a byte.
			_ = rc.SetReadDeadline(time.Now().Add(d))
		}
	})
}

// idleBody renews the connection's read deadline before every read of the body, and lifts
// it at the end of the body: net/http then reads the connection in the background to notice
// a client going away, and a deadline left behind would cancel a long streamed answer.
type idleBody struct {
	body    io.ReadCloser
	rc      *http.ResponseController
	d       time.Duration
	started atomic.Bool
	done    atomic.Bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.started.Store(true)
	if !b.done.Load() {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.d))
	}
	n, err := b.body.Read(p)
	if err != nil && !b.done.Swap(true) {
		if !isTimeout(err) {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}

func (b *idleBody) Close() error { return b.body.Close() }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// refusingWriter notices a refusal written before any of the body was read.
type refusingWriter struct {
	http.ResponseWriter
	rc     *http.ResponseController
	body   *idleBody
	header bool
}

func (w *refusingWriter) WriteHeader(code int) {
	if !w.header && code >= http.StatusOK { // 1xx answers are not the answer
		w.header = true
		if code >= 400 && !w.body.started.Load() {
			// Connection: close keeps net/http from discarding the unread body before the
			// answer; the past deadline makes its discard after the handler fail at once.
			w.Header().Set("Connection", "close")
			w.body.done.Store(true)
			_ = w.rc.SetReadDeadline(time.Now().Add(-time.Second))
		} else if !w.body.done.Load() {
			// net/http discards what is left of the body before the answer goes out: that
			// wait is bounded too (and reads of the body renew it).
			_ = w.rc.SetReadDeadline(time.Now().Add(w.body.d))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *refusingWriter) Write(p []byte) (int, error) {
	if !w.header {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *refusingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush and Hijack are for handlers that type-assert rather than use ResponseController.
func (w *refusingWriter) Flush() {
	if !w.header {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.rc.Flush()
}

func (w *refusingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.rc.Hijack() }

// MetricsToken guards a /metrics handler: the request must carry Authorization: Bearer
// <token>. An empty token refuses every request, so that metrics naming every workspace's
// models and deployments are never served to anyone by default.
func MetricsToken(token string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token == "" {
			refuse(w, "metrics are off: start the server with --metrics-token (MODELPLANE_METRICS_TOKEN)")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) != 1 {
			refuse(w, "metrics need the metrics token: send Authorization: Bearer <token>")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func refuse(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
	httperr.Write(w, http.StatusUnauthorized, msg)
}
