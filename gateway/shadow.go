package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// DefaultMaxShadowCopies bounds the shadow copies one gateway has in flight.
const DefaultMaxShadowCopies = 32

// shadowCaptureLimit bounds the answers, the caller's and the copy's, kept for comparing; a
// pair with a longer answer is compared by status alone.
const shadowCaptureLimit = 1 << 20

// The outcomes of a request chosen for a shadow copy, as the metrics label them.
const (
	shadowEqual     = "equal"
	shadowDifferent = "different"
	shadowError     = "error"
	shadowDropped   = "dropped"
)

// shadowTarget is where an environment copies a share of its requests.
type shadowTarget struct {
	dep       *deployment
	percent   int
	compare   settings.ShadowCompare
	tolerance float64
	stats     *shadowStats
	// seen numbers the environment's requests, for the share.
	seen atomic.Uint64
}

// take reports whether the next request is copied. Like environment.pick it spreads the
// copies evenly: of any 100 consecutive requests, percent are copied.
func (s *shadowTarget) take() bool {
	n := s.seen.Add(1)
	p := uint64(s.percent)
	return n*p/100 != (n-1)*p/100
}

// shadowKey names an environment's figures under one version of its shadow settings.
type shadowKey struct {
	modelID, env string
	changedAt    int64 // Unix nanoseconds
}

// shadowStats are an environment's running totals since this gateway started, under one
// version of its shadow settings. They outlive the tables they appear in.
type shadowStats struct {
	key                                       shadowKey
	changedAt                                 time.Time
	mu                                        sync.Mutex
	copied, equal, different, errors, dropped int64
	primary, shadow                           []int64 // by store.LatencyBounds
	// version counts changes; written is the version last written to the database.
	version, written int64
}

func newShadowStats(k shadowKey, changedAt time.Time) *shadowStats {
	return &shadowStats{key: k, changedAt: changedAt,
		primary: make([]int64, len(store.LatencyBounds)+1), shadow: make([]int64, len(store.LatencyBounds)+1)}
}

// count adds one outcome; the latencies are kept for compared pairs only.
func (s *shadowStats) count(outcome string, primary, shadow time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	switch outcome {
	case shadowDropped:
		s.dropped++
		return
	case shadowEqual:
		s.equal++
	case shadowDifferent:
		s.different++
	case shadowError:
		s.errors++
	}
	s.primary[store.LatencyBucket(primary)]++
	s.shadow[store.LatencyBucket(shadow)]++
}

func (s *shadowStats) sent() {
	s.mu.Lock()
	s.copied++
	s.version++
	s.mu.Unlock()
}

// unwritten returns the totals when they changed since they were last written.
func (s *shadowStats) unwritten(run string) (store.ShadowStats, int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version == s.written {
		return store.ShadowStats{}, 0, false
	}
	return store.ShadowStats{ModelID: s.key.modelID, Environment: s.key.env, ChangedAt: s.changedAt,
		GatewayRun: run, Copied: s.copied, Equal: s.equal, Different: s.different, Errors: s.errors,
		Dropped: s.dropped, PrimaryLatency: append([]int64(nil), s.primary...),
		ShadowLatency: append([]int64(nil), s.shadow...)}, s.version, true
}

func (s *shadowStats) wrote(version int64) {
	s.mu.Lock()
	s.written = max(s.written, version)
	s.mu.Unlock()
}

func (s *shadowStats) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version != s.written
}

// shadowCopy is a request chosen for a shadow copy while its caller is answered: the body
// forward read, and the caller's answer as it was sent.
type shadowCopy struct {
	target *shadowTarget
	// body is the request body once forward has read it whole; read is false when it could
	// not be kept (longer than replayLimit, or of unknown length) or was never read.
	body []byte
	read bool
	path string
	// answer is the caller's answer, up to shadowCaptureLimit; over is set past it.
	answer bytes.Buffer
	over   bool
}

// keep records the request body forward read, for the copy.
func (c *shadowCopy) keep(b []byte) {
	if c != nil {
		c.body, c.read = b, true
	}
}

// teeWriter passes the caller's answer through and keeps its first shadowCaptureLimit bytes.
type teeWriter struct {
	http.ResponseWriter
	c *shadowCopy
}

func (t *teeWriter) Write(p []byte) (int, error) {
	if c := t.c; !c.over {
		if c.answer.Len()+len(p) > shadowCaptureLimit {
			c.over = true
			c.answer = bytes.Buffer{}
		} else {
			c.answer.Write(p)
		}
	}
	return t.ResponseWriter.Write(p)
}

func (t *teeWriter) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (t *teeWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// chooseShadow decides whether a request to e, served by dep, is copied; when it is, the
// caller's answer is kept as it is written to w.
func chooseShadow(w *statusWriter, e *environment, dep *deployment, up upstream) *shadowCopy {
	t := e.shadow
	if t == nil || t.dep == dep || !t.take() {
		return nil
	}
	c := &shadowCopy{target: t, path: up.path}
	w.ResponseWriter = &teeWriter{ResponseWriter: w.ResponseWriter, c: c}
	return c
}

// sendShadow sends the copy once the caller's answer is complete, without waiting for it.
// It is dropped when the caller's request did not reach a model server or was left by the
// client, when its body could not be kept, when the gateway has MaxShadowCopies in flight,
// and when the shadow deployment has no READY replica (it is not woken for a copy).
func (g *Gateway) sendShadow(c *shadowCopy, w *statusWriter, r *http.Request, start time.Time) {
	t := c.target
	now := time.Now()
	primaryStatus, primaryLatency := w.status, w.latency(now, start)
	if !c.read || primaryStatus == 0 || primaryStatus == statusClientClosed {
		g.shadowOutcome(t, shadowDropped, 0, 0)
		return
	}
	select {
	case g.shadowSlots <- struct{}{}:
	default:
		g.shadowOutcome(t, shadowDropped, 0, 0)
		return
	}
	rep := t.dep.pickReplica(nil)
	if rep == nil {
		<-g.shadowSlots
		g.shadowOutcome(t, shadowDropped, 0, 0)
		return
	}
	// The copy outlives the caller's request: it keeps the request's values (its trace) but
	// not its cancellation.
	req := r.Clone(context.WithoutCancel(r.Context()))
	req.Body, req.ContentLength = http.NoBody, int64(len(c.body))
	if len(c.body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(c.body))
	}
	w.Flush()
	t.stats.sent()
	go func() {
		defer func() { <-g.shadowSlots }()
		answer := &capture{header: http.Header{}, limit: shadowCaptureLimit}
		sw := &statusWriter{ResponseWriter: answer}
		l := t.dep.load
		begin := time.Now()
		l.add(begin, 1)
		g.forward(sw, req, t.dep, rep, begin, c.path)
		end := time.Now()
		status := sw.status
		if status == 0 {
			status = http.StatusBadGateway
		}
		l.done(end, status, end.Sub(begin))
		outcome := judgeShadow(t, primaryStatus, c, answer)
		g.shadowOutcome(t, outcome, primaryLatency, end.Sub(begin))
	}()
}

// judgeShadow compares the copy's answer with the caller's. A copy that got no answer, or
// one that broke off, or a 5xx where the caller's was not, is an error; otherwise different
// statuses differ, and equal statuses are equal with compare "none", with an answer past
// shadowCaptureLimit, or with two 5xx; with compare "json" the bodies must be equal JSON
// (numbers within the tolerance), or equal bytes when either is not JSON.
func judgeShadow(t *shadowTarget, primaryStatus int, c *shadowCopy, answer *capture) string {
	status := answer.status
	switch {
	case status == 0, answer.cut != nil && !answer.tooLarge:
		return shadowError
	case status >= 500 && primaryStatus < 500:
		return shadowError
	case status != primaryStatus:
		return shadowDifferent
	case t.compare == settings.ShadowCompareNone, c.over, answer.tooLarge, status >= 500:
		return shadowEqual
	case jsonEqual(c.answer.Bytes(), answer.body.Bytes(), t.tolerance):
		return shadowEqual
	}
	return shadowDifferent
}

// shadowOutcome counts an outcome in the environment's figures and the metrics.
func (g *Gateway) shadowOutcome(t *shadowTarget, outcome string, primary, shadow time.Duration) {
	t.stats.count(outcome, primary, shadow)
	g.metrics.shadow.WithLabelValues(t.stats.key.modelID, t.stats.key.env, t.dep.id, outcome).Inc()
}

// jsonEqual reports whether a and b hold equal JSON values, numbers equal within tolerance
// (an absolute difference); when either is not one JSON value, whether they are equal bytes.
func jsonEqual(a, b []byte, tolerance float64) bool {
	va, errA := decodeJSON(a)
	vb, errB := decodeJSON(b)
	if errA != nil || errB != nil {
		return bytes.Equal(a, b)
	}
	return valuesEqual(va, vb, tolerance)
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailingJSON
	}
	return v, nil
}

var errTrailingJSON = errors.New("more than one JSON value")

func valuesEqual(a, b any, tolerance float64) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			vb, ok := b[k]
			if !ok || !valuesEqual(va, vb, tolerance) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !valuesEqual(a[i], b[i], tolerance) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		if a == b {
			return true
		}
		fa, errA := a.Float64()
		fb, errB := b.Float64()
		return errA == nil && errB == nil && math.Abs(fa-fb) <= tolerance
	default: // string, bool, nil
		return a == b
	}
}

// writeShadowStats writes the totals that changed since they were last written.
func (g *Gateway) writeShadowStats(ctx context.Context) error {
	all := g.builder.shadowSnapshot()
	rows := make([]store.ShadowStats, 0, len(all))
	versions := make([]int64, 0, len(all))
	written := make([]*shadowStats, 0, len(all))
	for _, s := range all {
		if row, v, ok := s.unwritten(g.run); ok {
			rows, versions, written = append(rows, row), append(versions, v), append(written, s)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	if err := store.WriteShadowStats(ctx, g.opts.DB, rows); err != nil {
		return err
	}
	for i, s := range written {
		s.wrote(versions[i])
	}
	return nil
}
