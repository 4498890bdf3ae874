package gateway

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// table is one immutable routing snapshot. Requests read the current one through an atomic
// pointer; a reload builds a new one and swaps it in.
type table struct {
	at     time.Time
	models map[string]*model
}

type model struct {
	id, workspaceID string
	envs            map[string]*environment
	deployments     map[string]*deployment
	// development is the model's live development deployment, nil when it has none.
	development *deployment
}

// environment sends its traffic to weighted targets: normally its current deployment at 100,
// during a canary stage the previous and the candidate deployment.
type environment struct {
	name      string
	targets   []target
	promoting bool
	// sent numbers the environment's requests, for the weighted split.
	sent atomic.Uint64
	// shadow is where a share of its requests is copied, nil for none.
	shadow *shadowTarget
}

type target struct {
	dep    *deployment
	weight int // percent
}

// pick chooses a target by weight, spreading them evenly rather than at random: of any 100
// consecutive requests, the candidate at weight w takes w (request n goes to it when n×w/100
// reaches a new whole number), so even a short canary stage gets its exact share.
func (e *environment) pick() *deployment {
	if len(e.targets) == 1 {
		return e.targets[0].dep
	}
	n := e.sent.Add(1)
	last := e.targets[len(e.targets)-1]
	w := uint64(last.weight)
	if n*w/100 != (n-1)*w/100 {
		return last.dep
	}
	return e.targets[0].dep
}

// phase is the rollout_phase label of the environment's series.
func (e *environment) phase() string {
	if e.promoting {
		return "promoting"
	}
	return "stable"
}

type deployment struct {
	id, name string
	status   modelplane.DeploymentStatus
	model    *model
	deleted  bool
	replicas []*replica // READY ones
	starting int        // replicas PENDING or STARTING
	load     *load
	// concurrencyTarget is the deployment's autoscaling concurrency_target (at least 1);
	// backpressure its request backpressure policy, "" for none.
	concurrencyTarget int
	backpressure      settings.BackpressurePolicy
	// streamingReadTimeout is how long a streamed answer may stay silent before the gateway
	// ends it (the config's runtime.streaming_read_timeout); 0 leaves it to UpstreamTimeout.
	streamingReadTimeout time.Duration
}

// replica is one READY model server. It outlives the tables it appears in, so that its
// in-flight count survives reloads and a replica that left the table is still reported until
// its last request ends.
type replica struct {
	id, deploymentID, address string
	predictPath               string
	// websocketPath is where the replica takes websocket connections.
	websocketPath string
	inFlight      atomic.Int64
	// draining is set when the replica left the READY set: no new request may start there.
	draining atomic.Bool
}

// acquire counts a request on the replica, unless it started draining meanwhile. Counting
// first and checking after is what lets a drain report trust a zero count (see report).
func (r *replica) acquire() bool {
	r.inFlight.Add(1)
	if r.draining.Load() {
		r.inFlight.Add(-1)
		return false
	}
	return true
}

func (r *replica) release() { r.inFlight.Add(-1) }

// pickReplica chooses a replica by the power of two choices on in-flight count, skipping
// except, and counts the request on it. nil means none can take it.
func (d *deployment) pickReplica(except *replica) *replica {
	for range 3 { // a replica that starts draining between the pick and the count is picked again
		r := d.choose(except)
		if r == nil {
			return nil
		}
		if r.acquire() {
			return r
		}
		except = r
	}
	return nil
}

func (d *deployment) choose(except *replica) *replica {
	n := len(d.replicas)
	switch n {
	case 0:
		return nil
	case 1:
		if r := d.replicas[0]; r != except && !r.draining.Load() {
			return r
		}
		return nil
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := d.replicas[i], d.replicas[j]
	if !usable(a, except) {
		a, b = b, a
	}
	if !usable(a, except) {
		// Both draws are out: take the first usable one in order.
		for _, r := range d.replicas {
			if usable(r, except) {
				return r
			}
		}
		return nil
	}
	if usable(b, except) && b.inFlight.Load() < a.inFlight.Load() {
		return b
	}
	return a
}

func usable(r, except *replica) bool { return r != except && !r.draining.Load() }

// load is a deployment's in-flight count and its time-weighted average, kept across reloads
// for the load samples the autoscaler reads, and what the requests that ended came to, for
// canary analysis.
type load struct {
	mu       sync.Mutex
	inFlight int
	requests int
	area     float64 // request-nanoseconds since the last sample
	last     time.Time
	// sampled is when the current sampling period began.
	sampled time.Time
	// Since the last sample: requests that ended, those of them that answered 5xx, and their
	// end-to-end latencies counted by store.LatencyBounds (nil until one ends).
	completed, errors int
	latency           []int64
	// queued counts requests waiting for a replica with room (backpressure QUEUE_ON_FULL);
	// room, when not nil, is closed when the next request ends, for them to look again.
	queued int
	room   chan struct{}
}

func newLoad() *load { return &load{sampled: time.Now()} }

func (l *load) add(now time.Time, delta int) {
	l.mu.Lock()
	l.advance(now)
	l.inFlight += delta
	if delta > 0 {
		l.requests++
	}
	l.mu.Unlock()
}

func (l *load) advance(now time.Time) {
	if !l.last.IsZero() {
		l.area += float64(l.inFlight) * float64(now.Sub(l.last))
	}
	l.last = now
}

// done ends a request counted by add(now, 1): it leaves the in-flight count and is counted
// as completed with its status (499 when the client left first) and latency.
func (l *load) done(now time.Time, status int, latency time.Duration) {
	b := store.LatencyBucket(latency)
	l.mu.Lock()
	l.advance(now)
	l.inFlight--
	l.completed++
	if status >= 500 {
		l.errors++
	}
	if l.latency == nil {
		l.latency = make([]int64, len(store.LatencyBounds)+1)
	}
	l.latency[b]++
	if l.room != nil {
		close(l.room)
		l.room = nil
	}
	l.mu.Unlock()
}

// period is what a load sample says of one sampling period.
type period struct {
	avg                                   float64 // average concurrency
	requests, inFlight, completed, errors int
	latency                               []int64 // nil when no request ended
}

// sample returns the average concurrency since the previous sample, the requests started
// and those ended meanwhile, and starts a new period.
func (l *load) sample(now time.Time) (p period) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advance(now)
	if d := now.Sub(l.sampled); d > 0 {
		p.avg = l.area / float64(d)
	}
	p.requests, p.inFlight = l.requests, l.inFlight
	p.completed, p.errors, p.latency = l.completed, l.errors, l.latency
	l.area, l.requests, l.sampled = 0, 0, now
	l.completed, l.errors, l.latency = 0, 0, nil
	return p
}

// builder makes tables from database snapshots, keeping replicas and loads across them. Only
// the reload goroutine calls build; the reporter reads the maps under mu.
type builder struct {
	mu       sync.Mutex
	replicas map[string]*replica
	loads    map[string]*load
	shadows  map[shadowKey]*shadowStats
}

func newBuilder() *builder {
	return &builder{replicas: map[string]*replica{}, loads: map[string]*load{}, shadows: map[shadowKey]*shadowStats{}}
}

// build turns a snapshot into a table. Replicas that were in the previous table and are not
// READY now are marked draining before the new table is published, so no request starts on
// them once the caller has swapped the table in.
func (b *builder) build(r store.Routes) *table {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := &table{at: r.At, models: make(map[string]*model, len(r.Models))}
	for _, m := range r.Models {
		t.models[m.ID] = &model{id: m.ID, workspaceID: m.WorkspaceID,
			envs: map[string]*environment{}, deployments: map[string]*deployment{}}
	}
	deps := make(map[string]*deployment, len(r.Deployments))
	liveLoads := make(map[string]*load, len(r.Deployments))
	for _, rd := range r.Deployments {
		m := t.models[rd.ModelID]
		if m == nil {
			continue
		}
		l := b.loads[rd.ID]
		if l == nil {
			l = newLoad()
		}
		liveLoads[rd.ID] = l
		d := &deployment{id: rd.ID, name: rd.Name, status: rd.Status, model: m, deleted: rd.Deleted,
			starting: rd.ReplicasStarting, load: l, concurrencyTarget: max(rd.ConcurrencyTarget, 1),
			streamingReadTimeout: time.Duration(rd.StreamingReadTimeout) * time.Second}
		if rd.Backpressure != nil && rd.Backpressure.Valid() {
			d.backpressure = *rd.Backpressure
		}
		deps[rd.ID] = d
		m.deployments[rd.ID] = d
		if rd.IsDevelopment && !rd.Deleted {
			m.development = d
		}
	}
	// Loads of deployments that are gone are dropped once nothing is in flight there.
	for id, l := range b.loads {
		if _, ok := liveLoads[id]; !ok {
			l.mu.Lock()
			// Kept until its last request ended and its figures were written.
			busy := l.inFlight > 0 || l.requests > 0 || l.completed > 0
			l.mu.Unlock()
			if busy {
				liveLoads[id] = l
			}
		}
	}
	b.loads = liveLoads

	ready := make(map[string]*replica, len(r.Replicas))
	for _, rr := range r.Replicas {
		d := deps[rr.DeploymentID]
		if d == nil {
			continue
		}
		rep := b.replicas[rr.ID]
		path := rr.PredictPath
		if path == "" {
			path = DefaultPredictPath
		}
		wsPath := rr.WebsocketPath
		if wsPath == "" {
			wsPath = WebsocketPath
		}
		if rep == nil || rep.address != rr.Address || rep.predictPath != path || rep.websocketPath != wsPath {
			rep = &replica{id: rr.ID, deploymentID: rr.DeploymentID, address: rr.Address, predictPath: path, websocketPath: wsPath}
		}
		rep.draining.Store(false)
		ready[rr.ID] = rep
		d.replicas = append(d.replicas, rep)
	}
	for id, rep := range b.replicas {
		if ready[id] == rep {
			continue
		}
		rep.draining.Store(true)
		if rep.inFlight.Load() > 0 {
			// Still reported until its last request ends.
			ready[id+"/"+rep.address] = rep
		}
	}
	b.replicas = ready

	liveShadows := make(map[shadowKey]*shadowStats, len(b.shadows))
	for _, re := range r.Environments {
		m := t.models[re.ModelID]
		if m == nil {
			continue
		}
		e := &environment{name: re.Name}
		if re.CurrentDeploymentID != nil && deps[*re.CurrentDeploymentID] != nil {
			cur := deps[*re.CurrentDeploymentID]
			p := re.CandidatePercent
			if re.CandidateID != nil && deps[*re.CandidateID] != nil && p > 0 {
				e.promoting = true
				if p >= 100 {
					e.targets = []target{{deps[*re.CandidateID], 100}}
				} else {
					e.targets = []target{{cur, 100 - p}, {deps[*re.CandidateID], p}}
				}
			} else {
				e.targets = []target{{cur, 100}}
			}
		}
		e.shadow = b.shadowTarget(m, re, e, deps, liveShadows)
		m.envs[re.Name] = e
	}
	// Figures of settings that changed are dropped once they were written.
	for k, s := range b.shadows {
		if _, ok := liveShadows[k]; !ok && s.pending() {
			liveShadows[k] = s
		}
	}
	b.shadows = liveShadows
	return t
}

// shadowTarget is where the environment copies requests to, nil when it names no shadow,
// copies none, or names a deployment that is gone or that serves it (as after the shadow
// was promoted into it). Its figures carry over from the previous table while the settings
// are the same.
func (b *builder) shadowTarget(m *model, re store.RouteEnvironment, e *environment, deps map[string]*deployment,
	live map[shadowKey]*shadowStats) *shadowTarget {
	sh := re.Shadow
	if sh.DeploymentID == nil || sh.Percent <= 0 {
		return nil
	}
	d := deps[*sh.DeploymentID]
	if d == nil || d.deleted || d.model != m {
		return nil
	}
	for _, tg := range e.targets {
		if tg.dep == d {
			return nil
		}
	}
	k := shadowKey{modelID: m.id, env: re.Name, changedAt: re.ShadowChangedAt.UnixNano()}
	s := b.shadows[k]
	if s == nil {
		s = newShadowStats(k, re.ShadowChangedAt)
	}
	live[k] = s
	return &shadowTarget{dep: d, percent: sh.Percent, compare: sh.Compare, tolerance: sh.NumericTolerance, stats: s}
}

// shadowSnapshot returns the shadow figures the builder keeps, for the reporter.
func (b *builder) shadowSnapshot() []*shadowStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*shadowStats, 0, len(b.shadows))
	for _, s := range b.shadows {
		out = append(out, s)
	}
	return out
}

// snapshot returns the in-flight count of every replica that has requests in flight, and the
// loads by deployment, for the reporter.
func (b *builder) snapshot() (inFlight map[string]int, loads map[string]*load) {
	b.mu.Lock()
	defer b.mu.Unlock()
	inFlight = map[string]int{}
	for _, rep := range b.replicas {
		if n := rep.inFlight.Load(); n > 0 {
			inFlight[rep.id] += int(n)
		}
	}
	loads = make(map[string]*load, len(b.loads))
	for id, l := range b.loads {
		loads[id] = l
	}
	return inFlight, loads
}
