// Package agent is the node agent: it runs model servers on one GPU host for the control
// plane. It never gives one GPU to two replicas, never loses track of a process it started
// (its state file lets it re-adopt them after its own restart), and reports GPU health.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/agent/pyenv"
	"github.com/modelplane/modelplane/agent/runtime"
	"github.com/modelplane/modelplane/internal/httpserve"
	"github.com/modelplane/modelplane/internal/tlsfiles"
	"github.com/modelplane/modelplane/nvml"
)

// Config is the agent's configuration.
type Config struct {
	// Name identifies the node to the control plane (default: the host name).
	Name string
	// AdvertiseURL is where the control plane reaches this agent.
	AdvertiseURL string
	// APIURL is the control plane's API, for registration and heartbeats; empty runs the
	// agent stand-alone.
	APIURL string
	// Token is the node token: callers must present it, and the agent presents it to the API.
	Token string
	// StateDir holds the state file and one directory per replica.
	StateDir string
	// StartTimeout bounds how long a replica may take to pass its first health check.
	StartTimeout time.Duration
	// StopGrace is how long a stopping replica gets between SIGTERM and SIGKILL by default.
	StopGrace time.Duration
	// HeartbeatInterval is how often the agent reports to the API.
	HeartbeatInterval time.Duration
	// SuperviseInterval is how often each replica's process and health are checked.
	SuperviseInterval time.Duration
	// PythonIndexURL and PythonFindLinks are pip's --index-url and --find-links for the
	// packages' requirements; empty leaves pip's own configuration to decide.
	PythonIndexURL  string
	PythonFindLinks string
	// PythonPrewarm starts a Truss model's replica from a warm interpreter of its Python
	// environment with the model's modules imported, when one is ready (runtime.Prewarm):
	// forked from the environment's fork server, or, for a replica of a replica user, the
	// environment's warm spare, which already runs as a user of its own.
	PythonPrewarm bool
	// ReplicaUIDs is the range "FIRST-LAST" of user IDs a root agent runs process replicas
	// as, one per replica (DefaultReplicaUIDs when empty); ReplicaUIDsOff runs them as the
	// agent's own user.
	ReplicaUIDs string
	// RequireIsolation refuses to start an agent that cannot run process replicas as users of
	// their own.
	RequireIsolation bool
	// HTTPTimeouts bound how long a client may hold a connection to the agent API without
	// sending; the agent takes small bodies only, so the whole request is bounded too
	// (httpserve.DefaultReadTimeout unless Read is set).
	HTTPTimeouts httpserve.Timeouts
	// ReplicaHost is the address this host's model servers listen on and are recorded at,
	// which gateways connect to: the host's address on the cluster network, for gateways on
	// other hosts to reach them. An IP address or host name without a port, which must be
	// this host's (see ResolveReplicaHost); runtime.DefaultHost (the loopback) when empty.
	ReplicaHost string
	// APITLS is what the agent trusts when APIURL is https:// (heartbeats, archive
	// downloads); nil means the system's certificate authorities.
	APITLS *tls.Config
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name, _ = os.Hostname()
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 30 * time.Minute
	}
	if c.StopGrace == 0 {
		c.StopGrace = 30 * time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 5 * time.Second
	}
	if c.SuperviseInterval == 0 {
		c.SuperviseInterval = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Runtimes are the runtimes an agent can use, by package runtime: "process" runs python and
// process packages; "docker" (optional) runs image packages.
type Runtimes struct {
	Process runtime.Runtime
	Docker  runtime.Runtime
}

// Agent runs replicas.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	gpus     *nvml.Manager
	runtimes Runtimes
	agentID  string
	http     *http.Client
	download *http.Client
	envs     *pyenv.Builder
	// isolation says whether process replicas run as users of their own; nextUID is where
	// the next one's ID is looked for.
	isolation isolation
	nextUID   int
	// spareUIDs are the replica user IDs the process runtime's warm spares run as, held as
	// a replica's are until a replica takes one or the spare ends.
	spareUIDs map[int]bool

	mu       sync.Mutex
	replicas map[string]*record
	workers  map[string]*work // each live replica's start/supervise goroutine
	// patchLocks make the patches of one replica wait for each other, so that a retry finds
	// the first one done.
	patchLocks map[string]*sync.Mutex
	wg         sync.WaitGroup
	ctx        context.Context // lives as long as the agent; set by Run
}

// New restores the agent from its state directory. It does not start anything yet: Run
// re-adopts replicas and serves.
func New(cfg Config, gpus *nvml.Manager, rts Runtimes) (*Agent, error) {
	cfg.defaults()
	if cfg.StateDir == "" {
		return nil, errors.New("agent: no state directory")
	}
	// Replicas run in their own directories, so every path handed to them must be absolute.
	abs, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	cfg.StateDir = abs
	if cfg.ReplicaHost, err = ResolveReplicaHost(cfg.ReplicaHost); err != nil {
		return nil, fmt.Errorf("agent: replica host: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "replicas"), 0o755); err != nil {
		return nil, err
	}
	st, err := loadState(statePath(cfg.StateDir))
	if err != nil {
		return nil, err
	}
	envs, err := pyenv.New(pyenv.Config{
		Dir: filepath.Join(cfg.StateDir, "envs"), IndexURL: cfg.PythonIndexURL, FindLinks: cfg.PythonFindLinks,
		Node: cfg.Name, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	iso, err := setupIsolation(cfg.StateDir, cfg.ReplicaUIDs, os.Geteuid())
	if err != nil {
		return nil, err
	}
	if !iso.on() {
		if cfg.RequireIsolation {
			return nil, fmt.Errorf("agent: isolation is required but impossible: %s", iso.report.Warning)
		}
		cfg.Logger.Error("MODEL SERVERS ON THIS NODE ARE NOT ISOLATED: " + iso.report.Warning)
	} else if closed := closedGPUDevices("/dev"); len(closed) > 0 {
		cfg.Logger.Error("replica users cannot open the GPU device files; their model servers will see no GPU: "+
			"give them mode 0666 (the NVIDIA driver's NVreg_DeviceFileMode=0666, its default)", "files", strings.Join(closed, ", "))
	}
	a := &Agent{
		cfg: cfg, log: cfg.Logger, gpus: gpus, runtimes: rts,
		agentID:    st.AgentID,
		replicas:   map[string]*record{},
		workers:    map[string]*work{},
		patchLocks: map[string]*sync.Mutex{},
		http:       &http.Client{Timeout: 10 * time.Second, Transport: tlsfiles.Transport(cfg.APITLS)},
		// Archives can be large: no overall timeout, the context cancels.
		download:  &http.Client{Transport: tlsfiles.Transport(cfg.APITLS)},
		envs:      envs,
		ctx:       context.Background(),
		isolation: iso,
		nextUID:   st.NextUID,
		spareUIDs: map[int]bool{},
	}
	if a.agentID == "" {
		a.agentID = modelplane.NewID(12)
	}
	for _, r := range st.Replicas {
		a.replicas[r.ID] = r
	}
	return a, a.persistLocked()
}

// ID is the agent's identity, stable across restarts of the same state directory. Processes
// it starts carry it, which is how it recognises them later.
func (a *Agent) ID() string { return a.agentID }

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

// persistLocked writes the state file; a.mu must be held (or the agent not yet shared).
func (a *Agent) persistLocked() error {
	st := stateFile{AgentID: a.agentID, NextUID: a.nextUID}
	for _, r := range a.replicas {
		st.Replicas = append(st.Replicas, r)
	}
	sort.Slice(st.Replicas, func(i, j int) bool { return st.Replicas[i].ID < st.Replicas[j].ID })
	return saveState(statePath(a.cfg.StateDir), st)
}

func (a *Agent) persist() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.persistLocked(); err != nil {
		a.log.Error("writing the state file", "err", err)
	}
}

// Run re-adopts replicas from the state file, stops processes it started that belong to no
// replica, serves the agent API on ln, heartbeats to the control plane, and watches GPU
// health, until ctx is done. Replicas keep running when the agent stops.
func (a *Agent) Run(ctx context.Context, ln net.Listener) error {
	a.ctx = ctx
	a.restore(ctx)
	t := a.cfg.HTTPTimeouts
	if t.Read <= 0 {
		t.Read = httpserve.DefaultReadTimeout
	}
	srv := httpserve.Server(a.Handler(), t)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	go func() {
		if err := a.gpus.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("GPU health loop stopped", "err", err)
		}
	}()
	if a.cfg.APIURL != "" {
		go a.heartbeatLoop(ctx)
	}
	go a.rotateLoop(ctx)
	go a.followLoop(ctx)
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	a.mu.Lock()
	for _, w := range a.workers {
		w.cancel()
	}
	a.mu.Unlock()
	a.wg.Wait()
	if s, ok := a.runtimes.Process.(interface{ StopSpares() }); ok {
		s.StopSpares()
	}
	a.persist()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// restore brings the replicas of the state file back under supervision.
func (a *Agent) restore(ctx context.Context) {
	a.mu.Lock()
	var adopt []*record
	known := map[string]bool{}
	for _, r := range a.replicas {
		if r.live() {
			adopt = append(adopt, r)
		}
	}
	a.mu.Unlock()

	for _, r := range adopt {
		rt := a.runtimeFor(r.Runtime)
		log := a.log.With("replica_id", r.ID, "deployment_id", r.DeploymentID)
		if r.Handle == nil || rt == nil {
			a.fail(r, "the agent restarted before the replica's server was started", nil)
			continue
		}
		ok, err := rt.Adopt(ctx, *r.Handle)
		if err != nil || !ok {
			st, _ := rt.Status(ctx, *r.Handle)
			reason := "the replica's server exited while the agent was down"
			if err != nil {
				reason = fmt.Sprintf("cannot re-adopt the replica: %v", err)
			}
			a.fail(r, reason, &st)
			log.Warn("replica lost during agent restart", "reason", reason)
			continue
		}
		known[r.ID] = true
		if r.State == modelplane.ReplicaStopping {
			a.goStop(r, a.cfg.StopGrace)
			continue
		}
		log.Info("replica re-adopted", "address", r.Handle.Address)
		a.goSupervise(r, r.State == modelplane.ReplicaReady)
	}
	for _, rt := range []runtime.Runtime{a.runtimes.Process, a.runtimes.Docker} {
		if rt == nil {
			continue
		}
		orphans, err := rt.Orphans(ctx, known)
		if err != nil {
			a.log.Warn("listing orphans", "runtime", rt.Name(), "err", err)
			continue
		}
		for _, h := range orphans {
			a.log.Warn("stopping a replica that no longer belongs here", "replica_id", h.ReplicaID, "runtime", rt.Name())
			if err := rt.Stop(ctx, h, a.cfg.StopGrace); err != nil {
				a.log.Error("stopping orphan", "replica_id", h.ReplicaID, "err", err)
			}
		}
	}
	a.persist()
}

// work is a goroutine that starts or supervises one replica.
type work struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// spawn runs fn for replica id in the background; a replica has at most one such goroutine.
func (a *Agent) spawn(id string, fn func(ctx context.Context)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.spawnLocked(id, fn)
}

// spawnLocked is spawn with a.mu held, so that the replica and its goroutine appear together
// to a concurrent Stop.
func (a *Agent) spawnLocked(id string, fn func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(a.ctx)
	w := &work{cancel: cancel, done: make(chan struct{})}
	a.workers[id] = w
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(w.done)
		fn(ctx)
	}()
}

// halt stops replica id's goroutine and waits for it, so that nothing else touches the
// replica's process while it is being stopped.
func (a *Agent) halt(id string) {
	a.mu.Lock()
	w := a.workers[id]
	delete(a.workers, id)
	a.mu.Unlock()
	if w != nil {
		w.cancel()
		<-w.done
	}
}

func (a *Agent) runtimeFor(name string) runtime.Runtime {
	switch name {
	case "process":
		return a.runtimes.Process
	case "docker":
		return a.runtimes.Docker
	}
	return nil
}

// assignedLocked maps every GPU held by a live replica to that replica.
func (a *Agent) assignedLocked() map[string]string {
	out := map[string]string{}
	for _, r := range a.replicas {
		if r.live() {
			for _, u := range r.GPUUUIDs {
				out[u] = r.ID
			}
		}
	}
	return out
}

// fail marks the replica FAILED, which frees its GPUs.
func (a *Agent) fail(r *record, reason string, st *runtime.Status) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.State == modelplane.ReplicaStopping || r.State == modelplane.ReplicaStopped {
		return // a stop in progress decides the end
	}
	r.State, r.Error = modelplane.ReplicaFailed, reason
	if st != nil {
		r.ExitCode, r.LogTail = st.ExitCode, st.LogTail
		if st.Error != "" && reason == "" {
			r.Error = st.Error
		}
	}
	now := time.Now().UTC()
	r.StoppedAt = &now
	if err := a.persistLocked(); err != nil {
		a.log.Error("writing the state file", "err", err)
	}
}

func (a *Agent) setState(r *record, state modelplane.ReplicaState, errText string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if (r.State == state && r.Error == errText) || !r.live() || r.State == modelplane.ReplicaStopping {
		return
	}
	r.State, r.Error = state, errText
	if state == modelplane.ReplicaReady && r.ReadyAt == nil {
		now := time.Now().UTC()
		r.ReadyAt = &now
	}
	if err := a.persistLocked(); err != nil {
		a.log.Error("writing the state file", "err", err)
	}
}

// views returns the replicas as the API tells them, newest first, with GPU health folded in.
func (a *Agent) views() []agentproto.Replica {
	unhealthy := map[string]bool{}
	if inv, err := a.gpus.Inventory(); err == nil {
		for _, g := range inv.GPUs {
			if !g.Healthy {
				unhealthy[g.UUID] = true
				for _, m := range g.MIGInstances {
					unhealthy[m.UUID] = true
				}
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]agentproto.Replica, 0, len(a.replicas))
	for _, r := range a.replicas {
		out = append(out, r.wire(slices.ContainsFunc(r.GPUUUIDs, func(u string) bool { return unhealthy[u] })))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out
}

// view returns one replica as the API tells it.
func (a *Agent) view(id string) (agentproto.Replica, bool) {
	for _, r := range a.views() {
		if r.ID == id {
			return r, true
		}
	}
	return agentproto.Replica{}, false
}

// SetRuntimes sets the runtimes; the process runtime needs the agent's ID, known only once
// the state is loaded. It must be called before Run.
func (a *Agent) SetRuntimes(rts Runtimes) { a.runtimes = rts }
