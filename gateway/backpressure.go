package gateway

import (
	"net/http"
	"time"

	"github.com/modelplane/modelplane/settings"
)

// A deployment is full when every replica that takes requests has concurrency_target requests
// in flight through this gateway. What happens to a client's request then is the deployment's
// request backpressure policy: none forwards it all the same, REJECT_ON_FULL answers 429, and
// QUEUE_ON_FULL holds it until a replica has room, at most concurrency_target requests per
// replica (then 429) and at most the cold-start timeout (then 504). Async attempts are not
// subject to it: their queue already bounds them to the replicas' concurrency target.

// acquireBelow counts a request on the replica if it has fewer than limit in flight and is
// not draining; it reports whether it did.
func (r *replica) acquireBelow(limit int64) bool {
	if n := r.inFlight.Add(1); n > limit || r.draining.Load() {
		r.inFlight.Add(-1)
		return false
	}
	return true
}

// pickWithRoom counts the request on the least loaded replica that has room below the
// deployment's concurrency target and returns it. nil with full true means every replica is
// at the target; nil with full false, that no replica takes requests at all.
func (d *deployment) pickWithRoom() (rep *replica, full bool) {
	limit := int64(max(d.concurrencyTarget, 1))
	for range 3 { // another request may take the last room between the look and the count
		var best *replica
		for _, r := range d.replicas {
			if !r.draining.Load() && (best == nil || r.inFlight.Load() < best.inFlight.Load()) {
				best = r
			}
		}
		switch {
		case best == nil:
			return nil, false
		case best.inFlight.Load() >= limit:
			return nil, true
		case best.acquireBelow(limit):
			return best, false
		}
	}
	return nil, true
}

// roomSignal returns a channel closed when the next request of the deployment ends.
func (l *load) roomSignal() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.room == nil {
		l.room = make(chan struct{})
	}
	return l.room
}

// enqueue counts a request as waiting for room, unless limit wait already; ok false means
// the queue is full.
func (l *load) enqueue(limit int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.queued >= limit {
		return false
	}
	l.queued++
	return true
}

func (l *load) dequeue() {
	l.mu.Lock()
	l.queued--
	l.mu.Unlock()
}

// admitFull applies dep's backpressure policy (which is set) to a client's request. It returns
// the deployment as the current table has it and the replica the request goes to, counted;
// a nil replica with ok true leaves the choice to the caller (the deployment has no replica
// that takes requests, or its policy was cleared while the request waited). ok false means it
// answered the request itself.
func (g *Gateway) admitFull(w *statusWriter, r *http.Request, dep *deployment) (*deployment, *replica, bool) {
	room := dep.load.roomSignal()
	rep, full := dep.pickWithRoom()
	if !full {
		return dep, rep, true
	}
	if dep.backpressure == settings.BackpressureRejectOnFull {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "deployment %s is full: each of its %d replicas has its concurrency_target of %d requests in flight (request_backpressure_settings.policy %s)",
			dep.id, len(dep.replicas), dep.concurrencyTarget, dep.backpressure)
		return nil, nil, false
	}
	limit := len(dep.replicas) * dep.concurrencyTarget
	l := dep.load
	if !l.enqueue(limit) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "deployment %s is full and already queues %d requests (its concurrency_target of %d for each of its %d replicas; request_backpressure_settings.policy %s)",
			dep.id, limit, dep.concurrencyTarget, len(dep.replicas), dep.backpressure)
		return nil, nil, false
	}
	defer l.dequeue()
	timeout := time.NewTimer(g.opts.ColdStartTimeout)
	defer timeout.Stop()
	reloaded := g.waker.next()
	modelID, id := dep.model.id, dep.id
	for {
		select {
		case <-room:
		case <-reloaded:
			reloaded = g.waker.next()
		case <-timeout.C:
			writeError(w, http.StatusGatewayTimeout, "deployment %s had no replica with room within %s", id, g.opts.ColdStartTimeout)
			return nil, nil, false
		case <-r.Context().Done():
			w.WriteHeader(statusClientClosed)
			return nil, nil, false
		}
		room = l.roomSignal()
		var d *deployment
		if m := g.table.Load().models[modelID]; m != nil {
			d = m.deployments[id]
		}
		if d == nil || d.deleted || d.status.Deactivated() {
			writeError(w, http.StatusNotFound, "deployment %s of model %s was deleted or deactivated while the request waited", id, modelID)
			return nil, nil, false
		}
		if d.backpressure == "" {
			return d, nil, true
		}
		if rep, full = d.pickWithRoom(); !full {
			return d, rep, true
		}
	}
}
