package gateway

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/modelplane/modelplane/store"
)

// Deployment statuses that mean the deployment will not serve until someone acts.
var deactivated = map[string]bool{"INACTIVE": true, "DEACTIVATING": true}

// route is what an inference path names.
type route struct {
	modelID string
	// kind is "environment", "development" or "deployment"; name is the environment's name
	// or the deployment's ID.
	kind, name string
	action     string
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
	return strings.HasPrefix(r.URL.Path, "/models/")
}

// parseRoute reads the target from the path (or the Host and the path); ok false means the
// path is not an inference path at all.
func parseRoute(r *http.Request) (route, bool) {
	path := strings.Trim(r.URL.Path, "/")
	var rt route
	if id, ok := hostModel(r.Host); ok && !strings.HasPrefix(path, "models/") {
		rt.modelID = id
	} else {
		rest, ok := strings.CutPrefix(path, "models/")
		if !ok {
			return rt, false
		}
		rt.modelID, path, _ = strings.Cut(rest, "/")
	}
	parts := strings.Split(path, "/")
	switch {
	case len(parts) == 2 && parts[0] == "production":
		rt.kind, rt.name, rt.action = "environment", "production", parts[1]
	case len(parts) == 3 && parts[0] == "environments":
		rt.kind, rt.name, rt.action = "environment", parts[1], parts[2]
	case len(parts) == 2 && parts[0] == store.DevelopmentName:
		rt.kind, rt.action = "development", parts[1]
	case len(parts) == 3 && parts[0] == "deployment":
		rt.kind, rt.name, rt.action = "deployment", parts[1], parts[2]
	default:
		return rt, false
	}
	return rt, rt.modelID != "" && (rt.kind == "development" || rt.name != "")
}

// Handler serves inference plus /healthz, /readyz and /metrics, for a gateway on its own
// address. gather serves /metrics; nil serves the default registry.
func (g *Gateway) Handler(metricsHandler http.Handler) http.Handler {
	if metricsHandler == nil {
		metricsHandler = promhttp.Handler()
	}
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
	start := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	id := requestID(r)
	r.Header.Set(headerRequestID, id)
	rw.Header().Set(headerRequestID, id)

	var labels requestLabels
	defer func() { g.metrics.observe(labels, w, start) }()

	rt, ok := parseRoute(r)
	if !ok {
		writeError(w, http.StatusNotFound, "no inference route %s: use /models/{model_id}/production/predict, .../environments/{env}/predict, .../development/predict or .../deployment/{deployment_id}/predict", r.URL.Path)
		return
	}
	t := g.table.Load()
	if t == nil {
		writeError(w, http.StatusServiceUnavailable, "gateway is starting: routes not loaded yet")
		return
	}
	workspace, refused, err := g.keys.authenticate(r.Context(), r.Header.Get("Authorization"))
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "%s", err.Error())
		return
	case refused != "":
		w.Header().Set("WWW-Authenticate", "Api-Key, Bearer")
		writeError(w, http.StatusUnauthorized, "%s", refused)
		return
	}
	m := t.models[rt.modelID]
	if m == nil || m.workspaceID != workspace {
		// Another workspace's model reads exactly like one that does not exist.
		writeError(w, http.StatusNotFound, "model %s not found", rt.modelID)
		return
	}
	labels.modelID = m.id
	if rt.action != "predict" && rt.action != "wake" {
		writeError(w, http.StatusNotFound, "no inference action %q: this gateway serves predict and wake", rt.action)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "%s takes POST, not %s", rt.action, r.Method)
		return
	}
	dep, status, reason := resolve(m, rt, &labels)
	if dep == nil {
		writeError(w, status, "%s", reason)
		return
	}
	labels.deploymentID = dep.id
	if dep.deleted {
		writeError(w, http.StatusNotFound, "deployment %s of model %s was deleted", dep.id, m.id)
		return
	}
	if deactivated[dep.status] {
		writeError(w, http.StatusNotFound, "deployment %s of model %s is deactivated: activate it to serve requests", dep.id, m.id)
		return
	}
	if rt.action == "wake" {
		g.serveWake(w, r, dep)
		return
	}
	// A request counts as load from its arrival, held or forwarded: the autoscaler must see
	// the requests waiting for a deployment to wake.
	l := dep.load
	l.add(start, 1)
	defer func() {
		now, status := time.Now(), w.status
		if status == 0 {
			status = statusClientClosed
		}
		l.done(now, status, now.Sub(start))
	}()
	rep := dep.pickReplica(nil)
	if rep == nil {
		if !sleeping(dep.status) {
			writeError(w, http.StatusServiceUnavailable, "deployment %s of model %s has no ready replica (status %s)", dep.id, m.id, dep.status)
			return
		}
		if dep, rep = g.awaitReplica(w, r, dep, start); rep == nil {
			return
		}
	}
	g.forward(w, r, dep, rep, start)
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
