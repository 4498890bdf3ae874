package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/webhook"
	"github.com/modelplane/modelplane/workflows/contract"
)

// Limits of an async request, from API.md.
const (
	// MaxAsyncBodyBytes bounds an async_predict body.
	MaxAsyncBodyBytes = 256 << 10
	// openLimitRetryAfter is what a 429 for too many open requests tells clients to wait:
	// open requests end at the pace of the model, not of a token bucket.
	openLimitRetryAfter = 10 * time.Second
	// temporalTimeout bounds a workflow start or signal made while answering a request.
	temporalTimeout = 5 * time.Second
	// asyncDBTimeout bounds the database work of one async request.
	asyncDBTimeout = 10 * time.Second
)

// Actions and paths of async inference.
const (
	actionAsyncPredict     = "async_predict"
	actionAsyncQueueStatus = "async_queue_status"
	// kindAsyncRequest is the route kind of /async_request/{id}; name is the request ID.
	kindAsyncRequest = "async_request"
)

// isAsync reports whether the route is served by serveAsync.
func (rt route) isAsync() bool {
	return rt.kind == kindAsyncRequest || rt.action == actionAsyncPredict || rt.action == actionAsyncQueueStatus
}

// parseAsyncRequestPath reads /async_request/{id}, /models/{m}/async_request/{id} or, under
// Host model-{m}.…, /async_request/{id}; modelID is empty when the path names no model.
func parseAsyncRequestPath(r *http.Request) (route, bool) {
	path := strings.Trim(r.URL.Path, "/")
	rt := route{kind: kindAsyncRequest}
	if rest, ok := strings.CutPrefix(path, "models/"); ok {
		rt.modelID, path, _ = strings.Cut(rest, "/")
		if rt.modelID == "" {
			return rt, false
		}
	} else if id, ok := hostModel(r.Host); ok {
		rt.modelID = id
	}
	id, ok := strings.CutPrefix(path, "async_request/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return rt, false
	}
	rt.name = id
	return rt, true
}

// serveAsync serves the async routes: accepting a request, its status and cancellation, and a
// deployment's queue counts. These are not inference requests themselves and are not counted
// as such; the attempts that carry requests out are. labels gets the model and deployment the
// route names, for the request's span.
func (g *Gateway) serveAsync(w http.ResponseWriter, r *http.Request, rt route, labels *requestLabels) {
	w.Header().Set(headerRequestID, requestID(r))
	t, workspace, ok := g.admit(w, r)
	if !ok {
		return
	}
	if rt.kind == kindAsyncRequest {
		switch r.Method {
		case http.MethodGet:
			g.serveAsyncStatus(w, r, workspace, rt)
		case http.MethodDelete:
			g.cancelAsync(w, r, workspace, rt)
		default:
			w.Header().Set("Allow", "GET, DELETE")
			writeError(w, http.StatusMethodNotAllowed, "async_request takes GET or DELETE, not %s", r.Method)
		}
		return
	}
	m := ownModel(w, t, workspace, rt.modelID)
	if m == nil {
		return
	}
	labels.modelID = m.id
	method := http.MethodPost
	if rt.action == actionAsyncQueueStatus {
		method = http.MethodGet
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "%s takes %s, not %s", rt.action, method, r.Method)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), asyncDBTimeout)
	defer cancel()
	dep, env, status, reason := g.asyncTarget(ctx, m, rt, labels)
	if dep == nil {
		writeError(w, status, "%s", reason)
		return
	}
	labels.deploymentID = dep.id
	if rt.action == actionAsyncQueueStatus {
		g.serveQueueStatus(ctx, w, dep)
		return
	}
	g.acceptAsync(ctx, w, r, workspace, dep, env)
}

// asyncTarget finds the deployment an async route names. An environment's is its current
// deployment, read from the database: queued requests follow the environment (see
// async_requests_follow_environment), so a canary's weighted split does not apply to them.
// labels gets the environment, as resolve sets it for a sync request.
func (g *Gateway) asyncTarget(ctx context.Context, m *model, rt route, labels *requestLabels) (dep *deployment, env string, status int, reason string) {
	if rt.kind != "environment" {
		dep, status, reason = resolve(m, rt, labels)
		return dep, "", status, reason
	}
	e, err := store.EnvironmentByName(ctx, g.opts.DB, m.id, rt.name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, "", http.StatusNotFound, "model " + m.id + " has no environment " + rt.name
	case err != nil:
		g.log.WarnContext(ctx, "reading environment", "model_id", m.id, "environment", rt.name, "err", err)
		return nil, "", http.StatusServiceUnavailable, "cannot read environment " + rt.name + ": database unavailable"
	case e.CurrentDeploymentID == nil:
		return nil, "", http.StatusNotFound, "environment " + rt.name + " of model " + m.id + " has no deployment: promote one to it"
	}
	labels.environment = e.Name
	dep = m.deployments[*e.CurrentDeploymentID]
	if dep == nil {
		// Promoted a moment ago: this gateway's routes do not have it yet.
		return nil, "", http.StatusServiceUnavailable, "deployment " + *e.CurrentDeploymentID + " of environment " + rt.name + " is not in this gateway's routes yet"
	}
	return dep, e.Name, 0, ""
}

// asyncInput is an async_predict body. Pointers tell an absent field from a zero.
type asyncInput struct {
	ModelInput            json.RawMessage `json:"model_input"`
	WebhookEndpoint       *string         `json:"webhook_endpoint"`
	Priority              *int            `json:"priority"`
	MaxTimeInQueueSeconds *int            `json:"max_time_in_queue_seconds"`
	RetryConfig           *struct {
		MaxAttempts    *int `json:"max_attempts"`
		InitialDelayMs *int `json:"initial_delay_ms"`
		MaxDelayMs     *int `json:"max_delay_ms"`
	} `json:"inference_retry_config"`
}

// inputError is a refused async_predict body: the status and what to tell the client.
type inputError struct {
	status  int
	message string
}

func badInput(format string, args ...any) *inputError {
	return &inputError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// readAsyncInput reads and checks an async_predict body and returns the request it asks for,
// with defaults filled in (webhook URL not checked yet).
func readAsyncInput(w http.ResponseWriter, r *http.Request) (store.NewAsyncRequest, *inputError) {
	var n store.NewAsyncRequest
	tooLarge := &inputError{http.StatusRequestEntityTooLarge,
		fmt.Sprintf("the body is larger than the limit of %d bytes (256 KiB)", MaxAsyncBodyBytes)}
	if r.ContentLength > MaxAsyncBodyBytes {
		return n, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxAsyncBodyBytes))
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return n, tooLarge
	case err != nil:
		return n, badInput("reading the body: %v", err)
	}
	var in asyncInput
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return n, decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return n, badInput("the body must be one JSON object, with nothing after it")
	}
	if len(in.ModelInput) == 0 || string(in.ModelInput) == "null" {
		return n, badInput("model_input is required: the JSON the model is sent")
	}
	n.ModelInput = in.ModelInput
	n.Priority = 1
	n.MaxTimeInQueueSeconds = 600
	n.RetryConfig = modelplane.DefaultRetryConfig()
	fields := []rangedField{
		{"priority", in.Priority, 0, 2, &n.Priority},
		{"max_time_in_queue_seconds", in.MaxTimeInQueueSeconds, 10, 259200, &n.MaxTimeInQueueSeconds},
	}
	if rc := in.RetryConfig; rc != nil {
		fields = append(fields, []rangedField{
			{"inference_retry_config.max_attempts", rc.MaxAttempts, 1, 10, &n.RetryConfig.MaxAttempts},
			{"inference_retry_config.initial_delay_ms", rc.InitialDelayMs, 0, 10000, &n.RetryConfig.InitialDelayMs},
			{"inference_retry_config.max_delay_ms", rc.MaxDelayMs, 0, 60000, &n.RetryConfig.MaxDelayMs},
		}...)
	}
	for _, f := range fields {
		if f.value == nil {
			continue
		}
		if *f.value < f.min || *f.value > f.max {
			return n, badInput("%s must be %d to %d, got %d", f.name, f.min, f.max, *f.value)
		}
		*f.dest = *f.value
	}
	if in.WebhookEndpoint != nil {
		n.WebhookEndpoint = *in.WebhookEndpoint
	}
	return n, nil
}

// rangedField is an optional integer field of an async_predict body, its range, and where
// its value goes.
type rangedField struct {
	name     string
	value    *int
	min, max int
	dest     *int
}

// decodeError says which field of a body that does not decode is wrong.
func decodeError(err error) *inputError {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badInput("the body is not valid JSON: %v", err)
	case errors.As(err, &typ) && typ.Field == "":
		return badInput("the body must be a JSON object, not %s", typ.Value)
	case errors.As(err, &typ):
		return badInput("%s must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badInput("%s: async_predict takes model_input, webhook_endpoint, priority, max_time_in_queue_seconds and inference_retry_config", strings.TrimPrefix(err.Error(), "json: "))
	}
	return badInput("the body is not valid: %v", err)
}

// jsonKind names a Go kind the way a JSON user would.
func jsonKind(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"):
		return "an integer"
	case kind == "string":
		return "a string"
	case kind == "struct":
		return "an object"
	}
	return kind
}

// acceptAsync checks and records an async request for dep (of environment env, "" when the
// route named no environment) and starts its workflow.
func (g *Gateway) acceptAsync(ctx context.Context, w http.ResponseWriter, r *http.Request, workspace string, dep *deployment, env string) {
	if refuseUnserving(w, dep) {
		return
	}
	if wait, ok := g.limiter.Take(workspace, time.Now()); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
		writeError(w, http.StatusTooManyRequests, "workspace submits async requests faster than %g per second to this gateway", g.opts.AsyncRateLimit)
		return
	}
	n, bad := readAsyncInput(w, r)
	if bad == nil && int64(len(n.ModelInput)) > g.opts.MaxBodyBytes {
		bad = &inputError{http.StatusRequestEntityTooLarge, fmt.Sprintf("model_input is larger than the limit of %d bytes", g.opts.MaxBodyBytes)}
	}
	if bad == nil && n.WebhookEndpoint != "" {
		if err := webhook.CheckURL(n.WebhookEndpoint, g.opts.WebhookAllowPrivate); err != nil {
			bad = badInput("webhook_endpoint: %v", err)
		}
	}
	if bad != nil {
		writeError(w, bad.status, "%s", bad.message)
		return
	}
	if n.WebhookEndpoint != "" {
		_, err := store.GetWebhookSecret(ctx, g.opts.DB, workspace)
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusUnprocessableEntity, "webhook_endpoint is given but the workspace has no webhook secret to sign deliveries with: make one with `modelplane webhook-secret --rotate` or POST /v1/webhook_secret")
			return
		case err != nil:
			g.log.WarnContext(ctx, "reading webhook secret", "err", err)
			writeError(w, http.StatusServiceUnavailable, "cannot read the workspace's webhook secret: database unavailable")
			return
		}
	}
	n.WorkspaceID, n.ModelID, n.DeploymentID, n.Environment = workspace, dep.model.id, dep.id, env
	// The workspace's async_requests quota bounds its open requests, and --async-max-open
	// bounds every workspace's on this gateway: the lower applies.
	got, err := g.accepts.record(ctx, n)
	switch {
	case err != nil:
		g.log.WarnContext(ctx, "recording async request", "model_id", dep.model.id, "deployment_id", dep.id, "err", err)
		writeError(w, http.StatusServiceUnavailable, "cannot record the async request: database unavailable")
		return
	case got.ID == "":
		limitName := "this gateway's limit (--async-max-open)"
		if got.ByQuota {
			limitName = "the workspace's async_requests quota"
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(openLimitRetryAfter/time.Second)))
		writeError(w, http.StatusTooManyRequests, "workspace already has %d async requests queued or in progress, as many as %s (%d) allows: wait for some to finish", got.MaxOpen, limitName, got.MaxOpen)
		return
	}
	// The row is the request: a gateway with room starts it, on this notification or its
	// next look at the queues, with no workflow of its own until it needs one.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(`{"request_id":"` + got.ID + `"}` + "\n"))
}

// wantWorkflows hands the requests that want their workflow (a retry, a webhook) to
// retryStarts, which starts them at once and, while Temporal refuses, again later. One the
// backlog has no room for is the autoscaler's sweep's to start.
func (g *Gateway) wantWorkflows(ids ...string) {
	if g.opts.Temporal == nil {
		return
	}
	for _, id := range ids {
		select {
		case g.unstarted <- id:
		default:
		}
	}
}

// startAsyncWorkflow starts the workflow of request id; one already running is no error.
func (g *Gateway) startAsyncWorkflow(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, temporalTimeout)
	defer cancel()
	_, err := contract.StartAsyncRequest(ctx, g.opts.Temporal, id)
	return err
}

// unstartedBacklog is how many unstarted workflows a gateway keeps retrying at once, and
// startRetryFor how long it retries each (from one second apart to startRetryMaxDelay):
// a Temporal restart is over well within it. The autoscaler's sweep starts what is left.
const (
	unstartedBacklog   = 1024
	startRetryFor      = 2 * time.Minute
	startRetryMaxDelay = 10 * time.Second
)

// retryStarts starts the workflows that requests want, and again, backing off, those Temporal
// refused, until ctx ends. While some wait for another try, new ones join them rather than
// each waiting out its own timeout.
func (g *Gateway) retryStarts(ctx context.Context) {
	type retry struct {
		first, next time.Time
		delay       time.Duration
	}
	pending := map[string]*retry{}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-g.unstarted:
			if _, waiting := pending[id]; waiting || len(pending) >= unstartedBacklog {
				continue // more is the sweep's
			}
			now := time.Now()
			if len(pending) == 0 && g.startAsyncWorkflow(ctx, id) == nil {
				continue
			}
			pending[id] = &retry{first: now, next: now.Add(time.Second), delay: time.Second}
			continue
		case <-tick.C:
		}
		now := time.Now()
		for id, r := range pending {
			if now.Before(r.next) {
				continue
			}
			err := g.startAsyncWorkflow(ctx, id)
			switch {
			case err == nil:
				g.log.Info("started async request workflow", "request_id", id, "after", now.Sub(r.first).Round(time.Millisecond))
				delete(pending, id)
			case ctx.Err() != nil:
				return
			case now.Sub(r.first) >= startRetryFor:
				g.log.Warn("async request workflow still not started; the sweep will start it", "request_id", id, "err", err)
				delete(pending, id)
			default:
				r.delay = min(2*r.delay, startRetryMaxDelay)
				r.next = now.Add(r.delay)
			}
			if err != nil {
				// Temporal still refuses: the others wait for the next round rather than each
				// waiting out its own timeout now.
				break
			}
		}
	}
}

// retryAfterSeconds rounds a wait up to whole seconds, at least one.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// asyncRequestOf returns the workspace's request the route names, or answers 404: another
// workspace's request, or one of another model than the path names, reads like none.
func (g *Gateway) asyncRequestOf(ctx context.Context, w http.ResponseWriter, workspace string, rt route) (store.AsyncRequest, bool) {
	req, err := store.GetAsyncRequest(ctx, g.opts.DB, workspace, rt.name)
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && rt.modelID != "" && req.ModelID != rt.modelID:
		writeError(w, http.StatusNotFound, "async request %s not found", rt.name)
		return req, false
	case err != nil:
		g.log.WarnContext(ctx, "reading async request", "request_id", rt.name, "err", err)
		writeError(w, http.StatusServiceUnavailable, "cannot read async request %s: database unavailable", rt.name)
		return req, false
	}
	return req, true
}

// asyncStatus is GET /async_request/{id}'s answer.
type asyncStatus struct {
	RequestID     string                   `json:"request_id"`
	ModelID       string                   `json:"model_id"`
	DeploymentID  string                   `json:"deployment_id"`
	Environment   *string                  `json:"environment"`
	Status        modelplane.AsyncStatus   `json:"status"`
	WebhookStatus modelplane.WebhookStatus `json:"webhook_status"`
	CreatedAt     time.Time                `json:"created_at"`
	StatusAt      time.Time                `json:"status_at"`
	Errors        []webhook.ErrorEntry     `json:"errors"`
	Attempts      int                      `json:"attempts"`
	Output        json.RawMessage          `json:"output,omitempty"`
}

func (g *Gateway) serveAsyncStatus(w http.ResponseWriter, r *http.Request, workspace string, rt route) {
	ctx, cancel := context.WithTimeout(r.Context(), asyncDBTimeout)
	defer cancel()
	req, ok := g.asyncRequestOf(ctx, w, workspace, rt)
	if !ok {
		return
	}
	out := asyncStatus{RequestID: req.ID, ModelID: req.ModelID, DeploymentID: req.DeploymentID,
		Status: req.Status, WebhookStatus: req.WebhookStatus, CreatedAt: req.CreatedAt.UTC(),
		StatusAt: req.StatusAt.UTC(), Errors: make([]webhook.ErrorEntry, 0, len(req.Errors)), Attempts: req.Attempts}
	if req.Environment != "" {
		out.Environment = &req.Environment
	}
	for _, e := range req.Errors {
		out.Errors = append(out.Errors, webhook.ErrorEntry(e)) // the same entries the webhook carries
	}
	if req.Output != nil {
		out.Output = webhook.DataJSON(req.Output, req.OutputContentType)
	}
	writeJSON(w, http.StatusOK, out)
}

// cancelAsync cancels a queued request. Its workflow is signalled so that it ends at once
// rather than at its next look at the queue; it finds the request CANCELED either way.
func (g *Gateway) cancelAsync(w http.ResponseWriter, r *http.Request, workspace string, rt route) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), asyncDBTimeout)
	defer cancel()
	if rt.modelID != "" {
		if _, ok := g.asyncRequestOf(ctx, w, workspace, rt); !ok {
			return
		}
	}
	req, canceled, err := store.CancelAsyncRequest(ctx, g.opts.DB, workspace, rt.name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "async request %s not found", rt.name)
		return
	case err != nil:
		g.log.WarnContext(r.Context(), "canceling async request", "request_id", rt.name, "err", err)
		writeError(w, http.StatusServiceUnavailable, "cannot cancel async request %s: database unavailable", rt.name)
		return
	}
	message := "the request was canceled"
	if canceled {
		g.signalAsync(ctx, req.ID)
	} else {
		message = fmt.Sprintf("the request is %s, not QUEUED: only a queued request can be canceled", req.Status)
	}
	writeJSON(w, http.StatusOK, struct {
		RequestID string `json:"request_id"`
		Canceled  bool   `json:"canceled"`
		Message   string `json:"message"`
	}{req.ID, canceled, message})
}

// signalAsync nudges the request's workflow to look at its row now. A workflow that does not
// exist yet finds the row as it is when it starts.
func (g *Gateway) signalAsync(ctx context.Context, id string) {
	if g.opts.Temporal == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, temporalTimeout)
	defer cancel()
	err := g.opts.Temporal.SignalWorkflow(ctx, contract.AsyncWorkflowID(id), "", contract.SignalAsyncDispatch, nil)
	var notFound *serviceerror.NotFound
	if err != nil && !errors.As(err, &notFound) {
		g.log.WarnContext(ctx, "signalling async request workflow", "request_id", id, "err", err)
	}
}

// serveQueueStatus answers a deployment's queued and running async request counts.
func (g *Gateway) serveQueueStatus(ctx context.Context, w http.ResponseWriter, dep *deployment) {
	c, err := store.CountAsyncQueue(ctx, g.opts.DB, dep.id)
	if err != nil {
		g.log.WarnContext(ctx, "counting async queue", "deployment_id", dep.id, "err", err)
		writeError(w, http.StatusServiceUnavailable, "cannot count the async queue: database unavailable")
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ModelID      string `json:"model_id"`
		DeploymentID string `json:"deployment_id"`
		Queued       int    `json:"num_queued_requests"`
		InProgress   int    `json:"num_in_progress_requests"`
	}{dep.model.id, dep.id, c.Queued, c.InProgress})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the answer: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
