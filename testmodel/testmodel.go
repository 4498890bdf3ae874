// Package testmodel is a model server with no model: it takes as long to load and to
// answer, fails as often and answers as much as it is told. Tests and benchmarks run it as
// the `process` runtime's command (cmd/testmodel) to exercise the agent, gateway,
// autoscaler and promotions without GPUs or Python.
//
// Endpoints, matching the process runtime's defaults:
//
//	GET  /health   503 until LoadTime has passed since start, then 200
//	POST /predict  after Latency: 500 {"error":"injected failure"} with probability
//	               FailureRate, else 200 {"output": <request JSON or null>, "pad": "xx…", "pid": n};
//	               with "Accept: text/event-stream", 5 events "data: <n>" spread over Latency
//	GET  /stats    {"requests": n, "in_flight": n} of /predict
//	GET  /calls    {"<X-Request-Id>": n}: how many /predict requests each request ID made
//
// With FailFirst n, the first n predictions of each X-Request-Id answer 500, so retries of
// one request can be made to fail a set number of times before it succeeds.
package testmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// StreamEvents is how many events a streamed prediction sends.
const StreamEvents = 5

// Options shape the test model's behaviour. The zero value loads at once and answers at once,
// never failing.
type Options struct {
	// LoadTime is how long /health answers 503 after the server starts.
	LoadTime time.Duration
	// Latency is how long each prediction takes.
	Latency time.Duration
	// FailureRate is the probability (0 to 1) that a prediction answers 500.
	FailureRate float64
	// ResponseBytes is the length of the "pad" field of each answer, to load the network.
	ResponseBytes int
	// FailFirst makes the first FailFirst predictions of each X-Request-Id answer 500.
	FailFirst int
	// Port is where ListenAndServe listens; Serve uses the listener it is given.
	Port int
}

// Validate reports options that make no sense.
func (o Options) Validate() error {
	switch {
	case o.LoadTime < 0:
		return fmt.Errorf("load time must not be negative, got %s", o.LoadTime)
	case o.Latency < 0:
		return fmt.Errorf("latency must not be negative, got %s", o.Latency)
	case o.FailureRate < 0 || o.FailureRate > 1 || o.FailureRate != o.FailureRate:
		return fmt.Errorf("failure rate must be between 0 and 1, got %v", o.FailureRate)
	case o.ResponseBytes < 0:
		return fmt.Errorf("response bytes must not be negative, got %d", o.ResponseBytes)
	case o.FailFirst < 0:
		return fmt.Errorf("fail first must not be negative, got %d", o.FailFirst)
	case o.Port < 0 || o.Port > 65535:
		return fmt.Errorf("port must be between 0 and 65535, got %d", o.Port)
	}
	return nil
}

// Stats counts predictions.
type Stats struct {
	// Requests is the number of /predict requests received, streamed ones included.
	Requests int64 `json:"requests"`
	// InFlight is the number of /predict requests being answered now.
	InFlight int64 `json:"in_flight"`
}

// Handler serves the test model's endpoints.
type Handler struct {
	opts     Options
	ready    time.Time
	pad      string
	pid      int
	log      *slog.Logger
	mux      *http.ServeMux
	requests atomic.Int64
	inFlight atomic.Int64
	callsMu  sync.Mutex
	calls    map[string]int
}

// NewHandler returns the test model's handler; its load time counts from now. A nil log
// discards the request log.
func NewHandler(opts Options, log io.Writer) *Handler {
	if log == nil {
		log = io.Discard
	}
	h := &Handler{
		opts:  opts,
		ready: time.Now().Add(opts.LoadTime),
		pad:   strings.Repeat("x", opts.ResponseBytes),
		pid:   os.Getpid(),
		log:   slog.New(slog.NewTextHandler(log, nil)),
		mux:   http.NewServeMux(),
		calls: map[string]int{},
	}
	h.mux.HandleFunc("GET /health", h.health)
	h.mux.HandleFunc("POST /predict", h.predict)
	h.mux.HandleFunc("GET /stats", h.stats)
	h.mux.HandleFunc("GET /calls", h.callCounts)
	return h
}

// Calls returns how many predictions each X-Request-Id made (those without one are not kept).
func (h *Handler) Calls() map[string]int {
	h.callsMu.Lock()
	defer h.callsMu.Unlock()
	out := make(map[string]int, len(h.calls))
	for id, n := range h.calls {
		out[id] = n
	}
	return out
}

func (h *Handler) callCounts(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.Calls())
}

// call counts a prediction of the request ID and returns which one of its calls this is.
func (h *Handler) call(id string) int {
	if id == "" {
		return 0
	}
	h.callsMu.Lock()
	defer h.callsMu.Unlock()
	h.calls[id]++
	return h.calls[id]
}

// Stats returns the prediction counters.
func (h *Handler) Stats() Stats {
	return Stats{Requests: h.requests.Load(), InFlight: h.inFlight.Load()}
}

// ServeHTTP serves one request and writes its log line.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	h.mux.ServeHTTP(rec, r)
	h.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
		"bytes", rec.bytes, "duration", time.Since(start), "remote", r.RemoteAddr)
}

func (h *Handler) health(w http.ResponseWriter, _ *http.Request) {
	if time.Now().Before(h.ready) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
}

func (h *Handler) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.Stats())
}

func (h *Handler) predict(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	nth := h.call(r.Header.Get("X-Request-Id"))

	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading body: " + err.Error()})
		return
	}
	var output json.RawMessage // nil encodes as null
	if len(strings.TrimSpace(string(body))) > 0 {
		if !json.Valid(body) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid JSON body"})
			return
		}
		output = body
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		h.stream(w, r)
		return
	}
	if !sleep(r.Context(), h.opts.Latency) {
		return // the client left; nobody reads an answer
	}
	if h.fail() || nth > 0 && nth <= h.opts.FailFirst {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "injected failure"})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Output json.RawMessage `json:"output"`
		Pad    string          `json:"pad"`
		PID    int             `json:"pid"`
	}{output, h.pad, h.pid})
}

// stream sends StreamEvents events, each after a fifth of the latency, so that time to
// first byte and total time differ as they do for a token stream.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request) {
	// A failure is decided before the first byte, while a status can still say so.
	if h.fail() {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "injected failure"})
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	for i := 1; i <= StreamEvents; i++ {
		if !sleep(r.Context(), h.opts.Latency/StreamEvents) {
			return
		}
		if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func (h *Handler) fail() bool {
	return h.opts.FailureRate > 0 && rand.Float64() < h.opts.FailureRate
}

// sleep waits d, or less if ctx ends first; it reports whether the whole wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// recorder notes the status and size of a response for the log line.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(p []byte) (int, error) {
	n, err := r.ResponseWriter.Write(p)
	r.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer to flush streamed events.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Serve serves the test model on ln until ctx ends, then stops accepting connections, lets
// in-flight requests finish and returns nil. It returns an error if opts are invalid or the
// server fails; ln is closed either way.
func Serve(ctx context.Context, ln net.Listener, opts Options, log io.Writer) error {
	if err := opts.Validate(); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           NewHandler(opts, log),
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// No deadline: a test model's requests end by themselves after Latency, and whoever
	// stops it (the agent) kills it after its own grace period.
	err := srv.Shutdown(context.WithoutCancel(ctx))
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	return err
}

// ListenAndServe listens on host:opts.Port and serves like Serve.
func ListenAndServe(ctx context.Context, host string, opts Options, log io.Writer) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(opts.Port)))
	if err != nil {
		return err
	}
	return Serve(ctx, ln, opts, log)
}
