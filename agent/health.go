package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/modelpkg"
)

// DefaultRestartThreshold is how long a ready replica's liveness check may fail before the
// agent restarts it, when runtime.health_checks.restart_threshold_seconds leaves it to the
// platform (Truss does).
const DefaultRestartThreshold = 30 * time.Minute

// pythonLivenessPath is the python runtime's liveness route: 200 while its process serves,
// loading or not.
const pythonLivenessPath = "/healthz"

// checks are a replica's health-check timings, from Truss's runtime.health_checks. They are
// kept in the state file, so that a replica re-adopted after an agent restart is checked as
// it was.
type checks struct {
	// Startup bounds the first readiness; 0 is the agent's StartTimeout.
	Startup time.Duration `json:"startup,omitempty"`
	// RestartDelay is how long after its server starts a replica's liveness failures begin to
	// count.
	RestartDelay time.Duration `json:"restart_delay,omitempty"`
	// RestartThreshold is how long a ready replica's liveness check may fail continuously
	// before the replica is restarted in place; 0 is DefaultRestartThreshold.
	RestartThreshold time.Duration `json:"restart_threshold,omitempty"`
	// StopTraffic is how long a ready replica's readiness check may fail continuously before
	// it is taken out of rotation; 0 takes it out after three misses in a row.
	StopTraffic time.Duration `json:"stop_traffic,omitempty"`
}

// healthChecks reads runtime.health_checks; unset values stay 0, the agent's defaults.
func healthChecks(cfg modelpkg.Config) checks {
	hc := cfg.RuntimeSettings.HealthChecks
	sec := func(v *int) time.Duration {
		if v == nil {
			return 0
		}
		return time.Duration(*v) * time.Second
	}
	return checks{
		Startup:          sec(hc.StartupThresholdSeconds),
		RestartDelay:     sec(hc.RestartCheckDelaySeconds),
		RestartThreshold: sec(hc.RestartThresholdSeconds),
		StopTraffic:      sec(hc.StopTrafficThresholdSeconds),
	}
}

// livenessPath is where the replica's liveness is probed: a custom server's
// liveness_endpoint, the python server's /healthz, or else the readiness path.
func livenessPath(cfg modelpkg.Config) string {
	switch {
	case cfg.DockerServer != nil && cfg.DockerServer.LivenessEndpoint != "":
		return cfg.DockerServer.LivenessEndpoint
	case cfg.Runtime == modelpkg.RuntimePython:
		return pythonLivenessPath
	}
	return cfg.HealthPath
}

// websocketPath is where the replica takes websocket connections: Baseten's convention makes
// a custom server with the websocket transport take them on its predict_endpoint; every
// other server on /websocket.
func websocketPath(cfg modelpkg.Config) string {
	if cfg.DockerServer != nil && cfg.RuntimeSettings.Transport.Kind == modelpkg.TransportWebsocket && cfg.DockerServer.PredictEndpoint != "" {
		return cfg.DockerServer.PredictEndpoint
	}
	return DefaultWebsocketPath
}

// TrussAppDir is where a custom server's container finds its package's files and starts in,
// as in the image Truss builds.
const TrussAppDir = "/app"

// DefaultWebsocketPath is where a model server takes websocket connections unless its
// config says otherwise.
const DefaultWebsocketPath = "/websocket"

// goSupervise supervises an adopted replica in the background.
func (a *Agent) goSupervise(r *record, ready bool) {
	a.spawn(r.ID, func(ctx context.Context) {
		if !a.supervise(ctx, r, ready) {
			return
		}
		a.mu.Lock()
		address := r.Address
		a.mu.Unlock()
		port, err := portOf(address)
		if err != nil {
			a.fail(r, err.Error(), nil)
			return
		}
		if a.restartUnhealthy(ctx, r) {
			a.serve(ctx, r, port)
		}
	})
}

// portOf is the port of a host:port address.
func portOf(address string) (int, error) {
	_, text, err := net.SplitHostPort(address)
	if err != nil {
		return 0, fmt.Errorf("address %q: %w", address, err)
	}
	port, err := strconv.Atoi(text)
	if err != nil {
		return 0, fmt.Errorf("address %q: %w", address, err)
	}
	return port, nil
}

// supervise probes the replica until it is ready, then keeps checking that its server runs
// and answers. A server that exits is reported FAILED with its exit code and last log lines;
// one not ready within the startup threshold is stopped and FAILED. A ready replica whose
// readiness fails for the stop-traffic threshold goes back to STARTING, out of rotation, until
// it answers again. It returns true when the replica must be restarted: it was ready, and
// after the restart delay its liveness check failed continuously for the restart threshold.
func (a *Agent) supervise(ctx context.Context, r *record, ready bool) bool {
	a.mu.Lock()
	h, healthURL := *r.Handle, "http://"+r.Handle.Address+r.HealthPath
	livenessURL := healthURL
	if r.LivenessPath != "" {
		livenessURL = "http://" + r.Handle.Address + r.LivenessPath
	}
	c := r.Checks
	a.mu.Unlock()
	if c.Startup <= 0 {
		c.Startup = a.cfg.StartTimeout
	}
	if c.RestartThreshold <= 0 {
		c.RestartThreshold = DefaultRestartThreshold
	}
	rt := a.runtimeFor(r.Runtime)
	probe := &http.Client{Timeout: 5 * time.Second}
	started := time.Now()
	deadline := started.Add(c.Startup)
	interval := 50 * time.Millisecond // fast while starting: a cold start waits on it
	if ready {
		interval = a.cfg.SuperviseInterval
	}
	failures, loadErrors := 0, 0
	var notReadySince, notLiveSince time.Time
	for {
		st, err := rt.Status(ctx, h)
		if ctx.Err() != nil {
			return false
		}
		if err == nil && !st.Running {
			reason := "the server exited"
			if st.ExitCode != nil {
				reason = fmt.Sprintf("the server exited with code %d", *st.ExitCode)
			}
			a.fail(r, reason, &st)
			a.log.Warn("replica failed", "replica_id", r.ID, "reason", reason)
			return false
		}
		now := time.Now()
		code, body := probeHealth(ctx, probe, healthURL)
		healthy := code == http.StatusOK
		if !ready && code >= 500 && code != http.StatusServiceUnavailable {
			// 503 means "still loading"; any other server error before the first success
			// means loading failed (the python server answers 500 when load() raised).
			if loadErrors++; loadErrors >= 3 {
				_ = rt.Stop(context.Background(), h, a.cfg.StopGrace)
				st, _ := rt.Status(context.Background(), h)
				a.fail(r, fmt.Sprintf("the model failed to load: health check answered %d: %s", code, body), &st)
				return false
			}
		} else {
			loadErrors = 0
		}
		switch {
		case healthy:
			failures, notReadySince = 0, time.Time{}
			if !ready {
				ready, interval = true, a.cfg.SuperviseInterval
				a.log.Info("replica ready", "replica_id", r.ID)
			}
			a.setState(r, modelplane.ReplicaReady, "")
		case ready:
			// A ready replica that stops answering is taken out of rotation once its
			// readiness has failed for the stop-traffic threshold (by default three misses
			// in a row), and back in when it answers again.
			failures++
			if notReadySince.IsZero() {
				notReadySince = now
			}
			if (c.StopTraffic <= 0 && failures >= 3) || (c.StopTraffic > 0 && now.Sub(notReadySince) >= c.StopTraffic) {
				a.setState(r, modelplane.ReplicaStarting, "health check failing")
			}
		case now.After(deadline):
			_ = rt.Stop(context.Background(), h, a.cfg.StopGrace)
			st, _ := rt.Status(context.Background(), h)
			a.fail(r, fmt.Sprintf("no successful health check on %s within %s", r.HealthPath, c.Startup), &st)
			return false
		}
		// Liveness counts once the replica has been ready and the restart delay has passed,
		// so that a slow load is bounded by the startup threshold alone.
		if ready && now.Sub(started) >= c.RestartDelay {
			live := healthy
			if livenessURL != healthURL {
				lcode, _ := probeHealth(ctx, probe, livenessURL)
				live = lcode == http.StatusOK
			}
			switch {
			case live:
				notLiveSince = time.Time{}
			case notLiveSince.IsZero():
				notLiveSince = now
			case now.Sub(notLiveSince) >= c.RestartThreshold:
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(interval):
		}
	}
}
