package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/modelplane/modelplane/workflows/contract"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// Defaults of the wake options.
const (
	DefaultColdStartTimeout = 10 * time.Minute
	DefaultMaxHeld          = 1000
	// wakeEvery is how often a deployment that is still not awake is sent Wake again, in
	// case a wake was lost; Wake is a no-op for a deployment already on its way up.
	wakeEvery = 2 * time.Second
)

// waker holds requests for deployments that are waking up and sends them Wake, once per
// deployment however many requests arrive.
type waker struct {
	tc      client.Client
	maxHeld int
	mu      sync.Mutex
	// changed is closed (and replaced) after every reload, so held requests look again.
	changed chan struct{}
	deps    map[string]*wakeState
}

type wakeState struct {
	held     int
	sentAt   time.Time
	inFlight bool
}

func newWaker(tc client.Client, maxHeld int) *waker {
	return &waker{tc: tc, maxHeld: maxHeld, changed: make(chan struct{}), deps: map[string]*wakeState{}}
}

// reloaded wakes every held request to look at the new table.
func (w *waker) reloaded() {
	w.mu.Lock()
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

// hold counts a request as held for the deployment; ok false means the queue is full.
func (w *waker) hold(id string) (changed <-chan struct{}, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.state(id)
	if st.held >= w.maxHeld {
		return nil, false
	}
	st.held++
	return w.changed, true
}

// state returns the deployment's wake state, made on first use; w.mu is held.
func (w *waker) state(id string) *wakeState {
	st := w.deps[id]
	if st == nil {
		st = &wakeState{}
		w.deps[id] = st
	}
	return st
}

func (w *waker) next() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

func (w *waker) release(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if st := w.deps[id]; st != nil {
		st.held--
		if st.held <= 0 && !st.inFlight {
			delete(w.deps, id)
		}
	}
}

// wake sends Wake to the deployment's workflow in the background, unless one was sent within
// wakeEvery or is still on its way.
func (w *waker) wake(id string, log func(msg string, args ...any)) {
	w.mu.Lock()
	st := w.state(id)
	if st.inFlight || time.Since(st.sentAt) < wakeEvery {
		w.mu.Unlock()
		return
	}
	st.inFlight, st.sentAt = true, time.Now()
	w.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.send(ctx, id); err != nil {
			log("waking deployment", "deployment_id", id, "err", err)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		st.inFlight = false
		if st.held <= 0 {
			delete(w.deps, id)
		}
	}()
}

// send asks the deployment's workflow to wake and waits until the workflow accepted it.
func (w *waker) send(ctx context.Context, id string) error {
	_, err := w.tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: contract.DeploymentWorkflowID(id), UpdateName: contract.UpdateWake,
		WaitForStage: client.WorkflowUpdateStageAccepted,
	})
	return err
}

// awaitReplica holds a request for a sleeping deployment until one of its replicas is READY,
// and returns that replica (counted) and the deployment as the current table has it. It
// answers the request itself, and returns nil, when the wait ends otherwise: the queue is
// full (429), the deployment went away (404), the cold start took too long (504) or the
// client left.
func (g *Gateway) awaitReplica(w *statusWriter, r *http.Request, dep *deployment, start time.Time) (*deployment, *replica) {
	if g.waker.tc == nil {
		writeError(w, http.StatusServiceUnavailable, "deployment %s has no ready replica (status %s) and this gateway cannot wake it (no Temporal connection)", dep.id, dep.status)
		return nil, nil
	}
	changed, ok := g.waker.hold(dep.id)
	if !ok {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "deployment %s is waking up and already holds %d requests", dep.id, g.waker.maxHeld)
		return nil, nil
	}
	defer g.waker.release(dep.id)
	logWarn := func(msg string, args ...any) { g.log.Warn(msg, args...) }
	g.waker.wake(dep.id, logWarn)
	timeout := time.NewTimer(g.opts.ColdStartTimeout)
	defer timeout.Stop()
	again := time.NewTicker(wakeEvery)
	defer again.Stop()
	modelID, id := dep.model.id, dep.id
	for {
		select {
		case <-changed:
			changed = g.waker.next()
			t := g.table.Load()
			m := t.models[modelID]
			var d *deployment
			if m != nil {
				d = m.deployments[id]
			}
			switch {
			case d == nil || d.deleted:
				writeError(w, http.StatusNotFound, "deployment %s of model %s was deleted while it was waking up", id, modelID)
				return nil, nil
			case d.status.Deactivated():
				writeError(w, http.StatusNotFound, "deployment %s of model %s was deactivated while it was waking up", id, modelID)
				return nil, nil
			}
			if rep := d.pickReplica(nil); rep != nil {
				g.metrics.coldStart(modelID, id, time.Since(start))
				return d, rep
			}
		case <-again.C:
			g.waker.wake(id, logWarn)
		case <-timeout.C:
			writeError(w, http.StatusGatewayTimeout, "deployment %s did not wake up within %s", id, g.opts.ColdStartTimeout)
			return nil, nil
		case <-r.Context().Done():
			w.WriteHeader(statusClientClosed)
			return nil, nil
		}
	}
}

// serveWake answers POST .../wake: the deployment is sent Wake and the answer is 202 once
// its workflow accepted it.
func (g *Gateway) serveWake(w *statusWriter, r *http.Request, dep *deployment) {
	if g.waker.tc == nil {
		writeError(w, http.StatusServiceUnavailable, "this gateway cannot wake deployments (no Temporal connection)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := g.waker.send(ctx, dep.id); err != nil {
		var rejected *temporal.ApplicationError
		var notFound *serviceerror.NotFound
		switch {
		case errors.As(err, &rejected):
			writeError(w, http.StatusConflict, "deployment %s cannot wake: %s", dep.id, rejected.Message())
		case errors.As(err, &notFound):
			writeError(w, http.StatusServiceUnavailable, "deployment %s has no running workflow", dep.id)
		default:
			g.log.WarnContext(r.Context(), "waking deployment", "deployment_id", dep.id, "err", err)
			writeError(w, http.StatusServiceUnavailable, "waking deployment %s: Temporal did not answer", dep.id)
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"deployment_id":"` + dep.id + `","model_id":"` + dep.model.id + `"}` + "\n"))
}
