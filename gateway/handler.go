package gateway

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/internal/httpserve"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// route is what an inference path names.
type route struct {
	modelID string
	// kind is "environment", "development" or "deployment"; name is the environment's name
	// or the deployment's ID.
	kind, name string
	action     string
	// upstreamPath is the escaped path after /sync, for the sync action.
	upstreamPath string
}

// hostModel returns the model ID of a Host of the form model-{id}.<domain>.
func hostModel(host string) (string, bool) {
	rest, ok := strings.CutPrefix(host, "model-")
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, ".")
	return id, ok && id != ""
}

// IsInference reports whether r is for the gateway rather than the management API, for a
// server that serves both on one address (modelplane dev).
func IsInference(r *http.Request) bool {
	if _, ok := hostModel(r.Host); ok {
		return true
	}
	return strings.HasPrefix(r.URL.Path, "/models/") || strings.HasPrefix(r.URL.Path, "/async_request/")
}

// Actions a target serves besides the async ones.
const (
	actionPredict = "predict"
	actionWake    = "wake"
	// actionSync passes any method, the path after /sync, the query and the body through to
	// the model server.
	actionSync = "sync"
	// actionWebsocket upgrades to the model server's websocket.
	actionWebsocket = "websocket"
)

// WebsocketPath is where a replica's model server takes websocket upgrades unless it
// recorded another (a custom server with the websocket transport takes them on its
// predict_endpoint).
const WebsocketPath = "/websocket"

// parseRoute reads the target from the path (or the Host and the path); ok false means the
// path is not an inference path at all. The segments are read from the escaped path so that
// a /sync passthrough keeps the rest of the path exactly as the client sent it.
func parseRoute(r *http.Request) (route, bool) {
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	var rt route
	if id, ok := hostModel(r.Host); ok && !strings.HasPrefix(path, "models/") {
		rt.modelID = id
	} else {
		rest, ok := strings.CutPrefix(path, "models/")
		if !ok {
			return rt, false
		}
		rt.modelID, path, _ = strings.Cut(rest, "/")
		if rt.modelID, ok = unescape(rt.modelID); !ok {
			return rt, false
		}
	}
	parts := strings.Split(path, "/")
	var n int // segments naming the target
	switch {
	case len(parts) >= 2 && parts[0] == "production":
		rt.kind, rt.name, n = "environment", "production", 1
	case len(parts) >= 3 && parts[0] == "environments":
		rt.kind, rt.name, n = "environment", parts[1], 2
	case len(parts) >= 2 && parts[0] == modelplane.DevelopmentName:
		rt.kind, n = "development", 1
	case len(parts) >= 3 && parts[0] == "deployment":
		rt.kind, rt.name, n = "deployment", parts[1], 2
	default:
		return rt, false
	}
	rt.action = parts[n]
	rest := parts[n+1:]
	switch {
	case rt.action == actionSync:
		rt.upstreamPath = "/" + strings.Join(rest, "/")
	case len(rest) == 1 && rest[0] == "": // one trailing slash
	case len(rest) > 0:
		return rt, false
	}
	var ok bool
	if rt.name, ok = unescape(rt.name); !ok {
		return rt, false
	}
	return rt, rt.modelID != "" && (rt.kind == "development" || rt.name != "")
}

// unescape decodes one path segment; ok is false for a malformed escape or a decoded slash.
func unescape(s string) (string, bool) {
	u, err := url.PathUnescape(s)
	return u, err == nil && !strings.Contains(u, "/")
}

// Handler serves inference plus /healthz, /readyz and /metrics, for a gateway on its own
// address. metricsHandler serves /metrics, behind Options.MetricsToken; nil serves the
// default registry.
func (g *Gateway) Handler(metricsHandler http.Handler) http.Handler {
	if metricsHandler == nil {
		metricsHandler = promhttp.Handler()
	}
	metricsHandler = httpserve.MetricsToken(g.opts.MetricsToken, metricsHandler)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !g.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"not ready","checks":{"routes":"not loaded yet"}}` + "\n"))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready","checks":{"routes":"ok"}}` + "\n"))
	})
	mux.Handle("GET /metrics", metricsHandler)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if IsInference(r) {
			g.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// ServeHTTP serves one inference request.
func (g *Gateway) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	rt, ok := parseRoute(r)
	if !ok {
		rt, ok = parseAsyncRequestPath(r)
	}
	r, span := traceRequest(r)
	w := &statusWriter{ResponseWriter: rw}
	var labels requestLabels
	if ok && rt.isAsync() {
		// Not an inference request itself (no metrics), but traced like one: the span says
		// which model and deployment a request was queued for.
		defer func() { endSpan(span, labels, w) }()
		g.serveAsync(w, r, rt, &labels)
		return
	}
	start := time.Now()
	id := requestID(r)
	r.Header.Set(headerRequestID, id)
	rw.Header().Set(headerRequestID, id)

	defer func() {
		g.metrics.observe(labels, w, start)
		endSpan(span, labels, w)
	}()

	if !ok {
		writeError(w, http.StatusNotFound, "no inference route %s: use /models/{model_id}/production/predict, .../environments/{env}/predict, .../development/predict or .../deployment/{deployment_id}/predict (sync/{path}, websocket, async_predict and async_queue_status likewise), or /async_request/{request_id}", r.URL.Path)
		return
	}
	t, workspace, admitted := g.admit(w, r)
	if !admitted {
		return
	}
	m := ownModel(w, t, workspace, rt.modelID)
	if m == nil {
		return
	}
	labels.modelID = m.id
	var up upstream
	switch rt.action {
	case actionPredict, actionWake:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "%s takes POST, not %s", rt.action, r.Method)
			return
		}
	case actionSync:
		up.path = rt.upstreamPath
	case actionWebsocket:
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			writeError(w, http.StatusMethodNotAllowed, "websocket takes a GET upgrade, not %s", r.Method)
			return
		}
		if !isWebsocketUpgrade(r) {
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "websocket")
			writeError(w, http.StatusUpgradeRequired, "websocket needs a websocket upgrade request (Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Key, Sec-WebSocket-Version: 13)")
			return
		}
		up.websocket = true
	default:
		writeError(w, http.StatusNotFound, "no inference action %q: this gateway serves predict, wake, sync/..., websocket, async_predict and async_queue_status", rt.action)
		return
	}
	dep, status, reason := resolve(m, rt, &labels)
	if dep == nil {
		writeError(w, status, "%s", reason)
		return
	}
	labels.deploymentID = dep.id
	if refuseUnserving(w, dep) {
		return
	}
	if rt.action == actionWake {
		g.serveWake(w, r, dep)
		return
	}
	if rt.kind == "environment" && !up.websocket {
		w.shadow = chooseShadow(w, m.envs[rt.name], dep, up)
	}
	g.predict(w, r, dep, start, nil, up)
	if w.shadow != nil {
		g.sendShadow(w.shadow, w, r, start)
	}
}

// admit answers the request itself, and returns ok false, before the first routing table is
// loaded (503) and when its API key is refused (401, or 429 once the client's address failed
// too often); otherwise it returns the table and the
// key's workspace.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request) (t *table, workspace string, ok bool) {
	t = g.table.Load()
	if t == nil {
		writeError(w, http.StatusServiceUnavailable, "gateway is starting: routes not loaded yet")
		return nil, "", false
	}
	workspace, refused, err := g.keys.authenticate(r.Context(), r.Header.Get("Authorization"))
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "%s", err.Error())
		return nil, "", false
	case refused != "":
		if wait, ok := g.failures.Take(clientAddress(r), time.Now()); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
			writeError(w, http.StatusTooManyRequests, "too many failed authentications from this address (more than %g per second): slow down", g.opts.FailedAuthRateLimit)
			return nil, "", false
		}
		w.Header().Set("WWW-Authenticate", "Api-Key, Bearer")
		writeError(w, http.StatusUnauthorized, "%s", refused)
		return nil, "", false
	}
	return t, workspace, true
}

// clientAddress is the IP address of the request's peer. X-Forwarded-For is not read: the
// gateway has no notion of a trusted proxy, and a client could name any address there.
func clientAddress(r *http.Request) string {
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return ip
	}
	return r.RemoteAddr
}

// ownModel returns the workspace's model of that ID, or answers 404 and returns nil.
func ownModel(w http.ResponseWriter, t *table, workspace, modelID string) *model {
	m := t.models[modelID]
	if m == nil || m.workspaceID != workspace {
		// Another workspace's model reads exactly like one that does not exist.
		writeError(w, http.StatusNotFound, "model %s not found", modelID)
		return nil
	}
	return m
}

// refuseUnserving answers 404 for a deployment that was deleted or deactivated, and reports
// whether it did.
func refuseUnserving(w http.ResponseWriter, dep *deployment) bool {
	switch {
	case dep.deleted:
		writeError(w, http.StatusNotFound, "deployment %s of model %s was deleted", dep.id, dep.model.id)
	case dep.status.Deactivated():
		writeError(w, http.StatusNotFound, "deployment %s of model %s is deactivated: activate it to serve requests", dep.id, dep.model.id)
	default:
		return false
	}
	return true
}

// upstream says what a request is forwarded as: a prediction (the zero value), a /sync
// passthrough to path, or a websocket.
type upstream struct {
	path      string
	websocket bool
}

// predict forwards a request to a READY replica of dep, waking the deployment and waiting for
// it when it has none, and answers w. It serves clients' predictions, /sync passthroughs,
// websockets and async attempts alike; a is the attempt, nil for a client's request. A
// websocket counts as one request in flight for as long as it is open.
func (g *Gateway) predict(w *statusWriter, r *http.Request, dep *deployment, start time.Time, a *attemptRun, up upstream) {
	// A request counts as load from its arrival, held or forwarded: the autoscaler must see
	// the requests waiting for a deployment to wake.
	l := dep.load
	l.add(start, 1)
	defer func() {
		now, status := time.Now(), w.status
		if status == 0 {
			status = statusClientClosed
		}
		l.done(now, status, w.latency(now, start))
	}()
	var rep *replica
	if a == nil && dep.backpressure != "" {
		var ok bool
		if dep, rep, ok = g.admitFull(w, r, dep); !ok {
			return
		}
	}
	if rep == nil {
		rep = dep.pickReplica(nil)
	}
	if rep == nil {
		if !dep.status.Wakes() {
			writeError(w, http.StatusServiceUnavailable, "deployment %s of model %s has no ready replica (status %s)", dep.id, dep.model.id, dep.status)
			return
		}
		if dep, rep = g.awaitReplica(w, r, dep, start); rep == nil {
			return
		}
	}
	if a != nil && !a.forwarding() {
		// The gateway is stopping and has given the attempt back for another to run.
		rep.release()
		w.WriteHeader(statusClientClosed)
		return
	}
	if up.websocket {
		g.websocket(w, r, dep, rep, start)
		return
	}
	g.forward(w, r, dep, rep, start, up.path)
}

// resolve finds the deployment a route names, or the 404 that says why there is none.
func resolve(m *model, rt route, labels *requestLabels) (*deployment, int, string) {
	switch rt.kind {
	case "environment":
		e := m.envs[rt.name]
		if e == nil {
			return nil, http.StatusNotFound, "model " + m.id + " has no environment " + rt.name
		}
		labels.environment, labels.phase = e.name, e.phase()
		if len(e.targets) == 0 {
			return nil, http.StatusNotFound, "environment " + rt.name + " of model " + m.id + " has no deployment: promote one to it"
		}
		return e.pick(), 0, ""
	case "development":
		if m.development == nil {
			return nil, http.StatusNotFound, "model " + m.id + " has no development deployment"
		}
		return m.development, 0, ""
	default:
		d := m.deployments[rt.name]
		if d == nil {
			return nil, http.StatusNotFound, "model " + m.id + " has no deployment " + rt.name
		}
		return d, 0, ""
	}
}
