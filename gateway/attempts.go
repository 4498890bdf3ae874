package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
)

// Async attempts are run by gateways, not by workers: the workflow records an attempt, a
// gateway claims it, calls the model exactly as it would for a client and records the answer.
// A worker that dies meanwhile does not make the model see the request twice.

const (
	// MaxAsyncOutputBytes bounds the answer an attempt records; a larger one fails the
	// attempt with MODEL_OUTPUT_TOO_LARGE.
	MaxAsyncOutputBytes = 16 << 20
	// headerAttempt tells the model server which attempt of the async request it serves.
	headerAttempt = "X-Modelplane-Attempt"
	// attemptPoll is the safety net for lost notifications of new attempts.
	attemptPoll = time.Second
	// attemptGrace is how long a stopping gateway lets attempts already at a model finish.
	attemptGrace = 5 * time.Second
	// claimTimeout bounds one claim of attempts.
	claimTimeout = 30 * time.Second
	// recordFor bounds how long the result of an attempt is retried against the database.
	recordFor = 30 * time.Second
	// tableLag is how long an attempt waits for a routing table that has its deployment.
	tableLag = 2 * time.Second
	// maxErrorSnippet bounds how much of a model's failed answer goes into the error message.
	maxErrorSnippet = 1 << 10
)

// States of an attempt on this gateway. Only waiting moves, once, to one of the others, so
// a stopping gateway and the attempt agree on whether it reached a replica.
const (
	attemptWaiting   int32 = iota // not sent to a replica yet
	attemptForwarded              // sent (or being sent): it runs to its end
	attemptReleased               // given back for another gateway: it is not sent
)

// attemptRun is an attempt this gateway claimed.
type attemptRun struct {
	store.ClaimedAttempt
	state  atomic.Int32
	ctx    context.Context
	cancel context.CancelFunc
}

// forwarding marks the attempt as sent to a replica; false means it was given back.
func (a *attemptRun) forwarding() bool {
	return a.state.CompareAndSwap(attemptWaiting, attemptForwarded)
}

// attemptRunner keeps the attempts in flight on this gateway.
type attemptRunner struct {
	mu       sync.Mutex
	running  map[*attemptRun]struct{}
	stopping bool
	wg       sync.WaitGroup
	// freed asks for a claim now: a slot freed up (the request's end may have made room in
	// its deployment's queue too), or the routes changed.
	freed chan struct{}
}

func newAttemptRunner() *attemptRunner {
	return &attemptRunner{running: map[*attemptRun]struct{}{}, freed: make(chan struct{}, 1)}
}

// keys names the attempts this gateway runs.
func (r *attemptRunner) keys() map[store.AttemptKey]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[store.AttemptKey]bool, len(r.running))
	for a := range r.running {
		out[store.AttemptKey{RequestID: a.RequestID, Attempt: a.Attempt}] = true
	}
	return out
}

// nudge makes the claiming goroutine look at the queues now.
func (r *attemptRunner) nudge() {
	select {
	case r.freed <- struct{}{}:
	default:
	}
}

func (r *attemptRunner) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

// start runs the attempt in its own goroutine, and after it each attempt run returns: the
// next request of the deployment's queue, started in the slot the last one left. Their
// contexts outlive ctx: stop decides when they end. One returned once stop has begun is
// given back with release instead of run.
func (r *attemptRunner) start(ctx context.Context, c store.ClaimedAttempt,
	run func(context.Context, *attemptRun) *store.ClaimedAttempt, release func(store.ClaimedAttempt)) {
	a := r.add(ctx, c)
	if a == nil {
		release(c)
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for a != nil {
			next := run(a.ctx, a)
			a.cancel()
			r.mu.Lock()
			delete(r.running, a)
			r.mu.Unlock()
			a = nil
			if next != nil {
				if a = r.add(ctx, *next); a == nil {
					release(*next)
				}
			}
		}
		r.nudge()
	}()
}

// add records c as running here, or returns nil once stop has begun.
func (r *attemptRunner) add(ctx context.Context, c store.ClaimedAttempt) *attemptRun {
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &attemptRun{ClaimedAttempt: c, ctx: actx, cancel: cancel}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		cancel()
		return nil
	}
	r.running[a] = struct{}{}
	return a
}

// stop gives back the attempts that have not reached a replica, lets the others run for up
// to attemptGrace, and waits until every attempt has been recorded or given back.
func (r *attemptRunner) stop() {
	r.mu.Lock()
	r.stopping = true
	for a := range r.running {
		if a.state.CompareAndSwap(attemptWaiting, attemptReleased) {
			a.cancel()
		}
	}
	r.mu.Unlock()
	grace := time.AfterFunc(attemptGrace, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for a := range r.running {
			a.cancel()
		}
	})
	defer grace.Stop()
	r.wg.Wait()
}

// runAttempts claims and runs async attempts until ctx ends: at each notification of new ones,
// every attemptPoll, and when a slot frees up while more may be waiting.
func (g *Gateway) runAttempts(ctx context.Context, notified <-chan string) {
	if g.opts.MaxAsyncAttempts <= 0 {
		return
	}
	poll := time.NewTicker(attemptPoll)
	defer poll.Stop()
	reconcile := time.NewTicker(reconcileEvery)
	defer reconcile.Stop()
	// full names the deployments the last look found without room for their queued requests:
	// news of requests queued for them alone needs no look until something frees room.
	var full map[string]bool
	for {
		select {
		case <-ctx.Done():
			g.attempts.stop()
			return
		case payload, ok := <-notified:
			if !ok {
				notified = nil // the listener closed: polling goes on
				continue
			}
			var news bool
			if notified, news = drainNews(notified, payload, full); !news {
				continue
			}
		case <-poll.C:
		case <-g.attempts.freed:
		case <-reconcile.C:
			g.reconcileAttempts(ctx)
		}
		full = g.claimAttempts(ctx)
	}
}

// reconcileEvery is how often a gateway looks for attempts the database has RUNNING on it
// that it is not running.
const reconcileEvery = 30 * time.Second

// reconcileAttempts gives back the attempts the database has RUNNING on this gateway that it
// does not run: a claim whose answer was lost after it committed, or a previous process that
// reported under the same ID. They never reached a model from here. It runs on the claiming
// goroutine, so no claim is between its commit and its start meanwhile, and a finished
// attempt is recorded DONE before it leaves the running set.
func (g *Gateway) reconcileAttempts(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	inDB, err := store.RunningAsyncAttempts(rctx, g.opts.DB, g.opts.ID)
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("listing this gateway's async attempts", "err", err)
		}
		return
	}
	mine := g.attempts.keys()
	var stray []store.ClaimedAttempt
	for _, k := range inDB {
		if !mine[k] {
			stray = append(stray, store.ClaimedAttempt{RequestID: k.RequestID, Attempt: k.Attempt})
		}
	}
	if len(stray) == 0 {
		return
	}
	g.log.Warn("giving back async attempts recorded as running here that this gateway does not run", "count", len(stray))
	if err := store.ReleaseAsyncAttempts(rctx, g.opts.DB, g.opts.ID, stray); err != nil {
		g.log.Warn("giving back stray async attempts", "err", err)
	}
}

// drainNews takes the notification payload and those already queued, so a burst costs one
// look at the queues, and reports whether any of them is news: anything but requests queued
// for deployments in full. It returns nil for the channel when it closed.
func drainNews(c <-chan string, payload string, full map[string]bool) (<-chan string, bool) {
	news := false
	for {
		if !news {
			deps, queued := strings.CutPrefix(payload, store.AsyncQueuedPrefix)
			news = !queued || full == nil
			for _, d := range strings.Split(deps, ",") {
				news = news || !full[d]
			}
		}
		select {
		case p, ok := <-c:
			if !ok {
				return nil, news
			}
			payload = p
		default:
			return c, news
		}
	}
}

// claimAttempts claims as many pending attempts as this gateway has free slots and starts
// them. It returns the deployments it found with queued requests and no room for them, when
// it looked at every queue.
func (g *Gateway) claimAttempts(ctx context.Context) (full map[string]bool) {
	if ctx.Err() != nil || g.table.Load() == nil || !g.reported.Load() {
		return nil // nothing can be routed before the first table, nor vouched for before the first report
	}
	free := g.opts.MaxAsyncAttempts - g.attempts.count()
	if free <= 0 {
		return nil // a slot that frees up asks for the next look
	}
	// Not cut short by ctx: a claim that committed must be read, or its attempts would stay
	// RUNNING here with nobody to run them.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	// Attempts already pending (retries, requests the sweep started) go first; then queued
	// requests that their deployments have room for are started here, as many as this
	// gateway has slots left.
	claimed, err := store.ClaimAsyncAttempts(cctx, g.opts.DB, g.opts.ID, free)
	if err != nil {
		g.log.Warn("claiming async attempts", "err", err)
		return nil
	}
	if left := free - len(claimed); left > 0 {
		starts, err := store.StartAsyncHeads(cctx, g.opts.DB, "", left, g.opts.ID)
		if err != nil {
			g.log.Warn("starting queued async requests", "err", err)
		} else if starts.Started < left {
			full = starts.Full
		}
		g.wantWorkflows(starts.Wanted...)
		claimed = append(claimed, starts.Claimed...)
	}
	for _, c := range claimed {
		g.observeStart(c)
		g.attempts.start(ctx, c, g.runAttempt, g.releaseAttempt)
	}
	return full
}

// runAttempt runs one claimed attempt and records its result, or gives it back when the
// gateway stopped before it reached a replica. It returns the deployment's next queued request
// when the recording started it in the slot this one left.
func (g *Gateway) runAttempt(ctx context.Context, a *attemptRun) *store.ClaimedAttempt {
	log := g.log.With("request_id", a.RequestID, "attempt", a.Attempt, "model_id", a.ModelID, "deployment_id", a.DeploymentID)
	res, released := g.attempt(ctx, a)
	if a.Committed != nil {
		// The attempt was sent while the transaction that started it committed: until it
		// has, the attempt is nobody's to record or give back.
		if err := <-a.Committed; err != nil {
			log.Warn("the start of this async attempt was not recorded; the request stays queued and runs again", "err", err)
			return nil
		}
	}
	if released {
		g.releaseAttempt(a.ClaimedAttempt)
		return nil
	}
	deadline := time.Now().Add(recordFor)
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := store.FinishAsyncAttempt(rctx, g.opts.DB, a.RequestID, a.Attempt, g.opts.ID, res, g.opts.AsyncOutputRetention, true)
		cancel()
		switch {
		case err == nil && !c.Recorded:
			log.Warn("async attempt was given up on while it ran here; its result is dropped")
			return nil
		case err == nil:
			if c.WantsWorkflow {
				g.wantWorkflows(a.RequestID)
			}
			g.wantWorkflows(c.Wanted...)
			if c.Next != nil {
				g.observeStart(*c.Next)
			}
			return c.Next
		case time.Now().Add(backoff).After(deadline):
			log.Error("recording async attempt failed; the attempt stays running", "err", err)
			return nil
		}
		log.Warn("recording async attempt", "err", err, "retry_in", backoff)
		time.Sleep(backoff)
	}
}

// releaseAttempt gives an attempt that never reached a model back for another gateway.
func (g *Gateway) releaseAttempt(c store.ClaimedAttempt) {
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := store.ReleaseAsyncAttempts(rctx, g.opts.DB, g.opts.ID, []store.ClaimedAttempt{c}); err != nil {
		g.log.Warn("giving back async attempt", "request_id", c.RequestID, "attempt", c.Attempt, "err", err)
	}
}

// observeStart records how long a request waited in its queue, at its first attempt.
func (g *Gateway) observeStart(c store.ClaimedAttempt) {
	if c.Attempt == 1 && c.StartedAt != nil {
		g.metrics.queueTime.WithLabelValues(c.ModelID, c.DeploymentID).Observe(c.StartedAt.Sub(c.CreatedAt).Seconds())
	}
}

// attempt sends the attempt's input to its deployment the way a client's predict goes, and
// returns what came of it; released says it was given back before it reached a replica.
func (g *Gateway) attempt(ctx context.Context, a *attemptRun) (res store.AttemptResult, released bool) {
	start := time.Now()
	c := &capture{header: http.Header{}}
	w := &statusWriter{ResponseWriter: c}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, DefaultPredictPath, bytes.NewReader(a.ModelInput))
	if err != nil {
		return store.AttemptResult{ErrorCode: modelplane.CodeModelUnavailable, Error: err.Error()}, false
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(headerRequestID, a.RequestID)
	r.Header.Set(headerAttempt, strconv.Itoa(a.Attempt))

	labels := requestLabels{modelID: a.ModelID, async: true}
	r, span := traceAttempt(r, a.RequestID, a.Attempt)
	defer func() { endSpan(span, labels, w) }()
	dep := g.attemptDeployment(ctx, a)
	if dep == nil {
		writeError(w, http.StatusNotFound, "model %s has no deployment %s", a.ModelID, a.DeploymentID)
	} else {
		labels.deploymentID = dep.id
		if !refuseUnserving(w, dep) {
			g.predict(w, r, dep, start, a, upstream{})
		}
	}
	if a.state.Load() == attemptReleased {
		return res, true
	}
	g.metrics.observe(labels, w, start)
	return g.attemptResult(w, c, ctx.Err() != nil), false
}

// attemptDeployment finds the attempt's deployment in the routing table. One this gateway
// does not know may be newer than its table, so it is looked for again after the next reload
// (within tableLag) before it counts as gone.
func (g *Gateway) attemptDeployment(ctx context.Context, a *attemptRun) *deployment {
	lookup := func() *deployment {
		if m := g.table.Load().models[a.ModelID]; m != nil {
			return m.deployments[a.DeploymentID]
		}
		return nil
	}
	reloaded := g.waker.next()
	if d := lookup(); d != nil {
		return d
	}
	timeout := time.NewTimer(tableLag)
	defer timeout.Stop()
	select {
	case <-reloaded:
	case <-timeout.C:
	case <-ctx.Done():
	}
	return lookup()
}

// attemptResult turns what the attempt's request came to into its result: the model's answer
// when it gave a whole one, else the status the gateway gave and the error code that says why.
func (g *Gateway) attemptResult(w *statusWriter, c *capture, stopped bool) store.AttemptResult {
	status := w.status
	answered := w.ttfb > 0 // the status is the model's, not one the gateway made up
	switch {
	case c.tooLarge:
		return store.AttemptResult{StatusCode: http.StatusBadGateway, ErrorCode: modelplane.CodeModelOutputTooLarge,
			Error: fmt.Sprintf("the model's answer is larger than the limit of %d bytes (16 MiB)", MaxAsyncOutputBytes)}
	case c.cut != nil && c.timedOut:
		return store.AttemptResult{StatusCode: http.StatusGatewayTimeout, ErrorCode: modelplane.CodeModelPredictTimeout,
			Error: fmt.Sprintf("the model's answer did not end within %s", g.opts.UpstreamTimeout)}
	case status == statusClientClosed || status == 0 || c.cut != nil && stopped:
		return store.AttemptResult{ErrorCode: modelplane.CodeGatewayLost,
			Error: fmt.Sprintf("gateway %s stopped before the model answered", g.opts.ID)}
	case c.cut != nil:
		return store.AttemptResult{StatusCode: http.StatusBadGateway, ErrorCode: modelplane.CodeModelUnavailable,
			Error: fmt.Sprintf("the model server's answer broke off: %v", c.cut)}
	case answered && status >= 200 && status < 300:
		out := c.body.Bytes()
		if out == nil {
			out = []byte{}
		}
		return store.AttemptResult{StatusCode: status, Output: out, ContentType: c.header.Get("Content-Type")}
	case answered:
		code := modelplane.CodeModelPredictError
		if status >= 400 && status < 500 {
			code = modelplane.CodeModelInvalidInput
		}
		msg := fmt.Sprintf("the model answered %d", status)
		if s := snippet(c.body.Bytes()); s != "" {
			msg += ": " + s
		}
		return store.AttemptResult{StatusCode: status, ContentType: c.header.Get("Content-Type"), ErrorCode: code, Error: msg}
	}
	code := modelplane.CodeModelUnavailable
	switch status {
	case http.StatusGatewayTimeout:
		code = modelplane.CodeModelPredictTimeout
	case http.StatusRequestEntityTooLarge:
		code = modelplane.CodeModelInvalidInput
	}
	var e apiv1.ErrorV1
	msg := http.StatusText(status)
	if json.Unmarshal(c.body.Bytes(), &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
	}
	return store.AttemptResult{StatusCode: status, ErrorCode: code, Error: msg}
}

// snippet is the start of a model's failed answer, for an error message.
func snippet(b []byte) string {
	if len(b) > maxErrorSnippet {
		b = b[:maxErrorSnippet] // a character cut in two reads as "?"
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
}

// errOutputTooLarge stops copying an attempt's answer past MaxAsyncOutputBytes.
var errOutputTooLarge = errors.New("the model's answer is larger than the async output limit")

// capture is the response writer of an attempt: it keeps the answer to be recorded instead of
// sending it anywhere.
type capture struct {
	header http.Header
	status int
	body   bytes.Buffer
	// limit bounds the answer kept; 0 is MaxAsyncOutputBytes.
	limit int
	// tooLarge: the answer passed the limit. cut: the answer broke off after its
	// status (timedOut: at the upstream timeout).
	tooLarge bool
	cut      error
	timedOut bool
}

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	limit := c.limit
	if limit == 0 {
		limit = MaxAsyncOutputBytes
	}
	if c.body.Len()+len(p) > limit {
		c.tooLarge = true
		return 0, errOutputTooLarge
	}
	return c.body.Write(p)
}
