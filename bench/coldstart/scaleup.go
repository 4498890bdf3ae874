package main

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
)

// Settings of the scale-up deployment (the issue's): one replica carries 5 concurrent
// requests, the decision averages the last 10 s, and nothing scales down during the run.
const (
	stepLatency       = 200 * time.Millisecond
	stepMaxReplicas   = 4
	stepConcurrency   = 5
	stepWindow        = 10 * time.Second
	stepScaleDownWait = 60 * time.Second
)

// stepResult is what the load step showed.
type stepResult struct {
	modelID, depID string
	step           time.Time
	// ready[k] is when k replicas were first READY (the API's active_replica_count), since
	// the step; zero when that never happened within the step timeout.
	ready    [stepMaxReplicas + 1]time.Duration
	requests int64
	failures int64
	// firstFailure is the first failed request's error.
	firstFailure string
}

// scaleUp runs c.BaseClients closed-loop clients for c.Base, then c.StepClients, until the
// deployment has stepMaxReplicas READY replicas or c.StepTimeout has passed.
func (b *bench) scaleUp(ctx context.Context, c config) (stepResult, error) {
	progress("deploying the scale-up model")
	modelID, depID, err := b.deploy(ctx, "stepped", "--latency", stepLatency.String())
	if err != nil {
		return stepResult{}, err
	}
	if err := b.Autoscale(ctx, modelID, depID, map[string]any{"min_replica": 1, "max_replica": stepMaxReplicas,
		"concurrency_target": stepConcurrency, "target_utilization_percentage": 100,
		"autoscaling_window": int(stepWindow / time.Second), "scale_down_delay": int(stepScaleDownWait / time.Second)}); err != nil {
		return stepResult{}, err
	}
	if _, err := b.WaitFor(ctx, modelID, depID, 100*time.Millisecond, settleTimeout, nil, "ACTIVE with one READY replica",
		func(d apiv1.DeploymentV1) bool {
			return d.Status == modelplane.DeploymentActive && d.ActiveReplicaCount == 1
		}); err != nil {
		return stepResult{}, err
	}

	res := stepResult{modelID: modelID, depID: depID}
	var requests, failures atomic.Int64
	var failMu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	clients := func(n int) {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					rctx, cancel := context.WithTimeout(ctx, requestTimeout)
					_, err := b.gw.Predict(rctx, modelID, client.DeploymentTarget(depID), []byte(`{"step":true}`))
					cancel()
					requests.Add(1)
					if err != nil {
						if failures.Add(1) == 1 {
							failMu.Lock()
							res.firstFailure = err.Error()
							failMu.Unlock()
						}
					}
				}
			}()
		}
	}
	defer func() {
		// Also on an early return: no client outlives the measurement.
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	progress("scale-up: %d client(s) for %s", c.BaseClients, c.Base)
	clients(c.BaseClients)
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(c.Base):
	}
	res.step = time.Now()
	progress("scale-up: step to %d clients", c.StepClients)
	clients(c.StepClients - c.BaseClients)
	deadline := res.step.Add(c.StepTimeout)
	for res.ready[stepMaxReplicas] == 0 && time.Now().Before(deadline) {
		d, err := b.API.Deployment(ctx, modelID, depID)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if err == nil {
			since := time.Since(res.step)
			for k := 2; k <= min(d.ActiveReplicaCount, stepMaxReplicas); k++ {
				if res.ready[k] == 0 {
					res.ready[k] = since
					progress("scale-up: %d READY after %s", k, since.Round(time.Millisecond))
				}
			}
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	close(stop)
	wg.Wait()
	res.requests, res.failures = requests.Load(), failures.Load()
	return res, nil
}

// windowReaches is when, after the step, the average concurrency over the window first asks
// for k replicas (it exceeds k-1 replicas' worth), if every client always has a request in
// flight: base clients during the base time before the step (no load before it), step
// clients after. It is the part of the reaction that the window alone sets.
func windowReaches(k int, c config) time.Duration {
	w := stepWindow.Seconds()
	for ms := 0; ms <= int(2*w*1000); ms += 10 {
		t := float64(ms) / 1000
		baseSeconds := math.Max(0, math.Min(c.Base.Seconds(), w-t))
		avg := (float64(c.BaseClients)*baseSeconds + float64(c.StepClients)*math.Min(t, w)) / w
		if avg > float64((k-1)*stepConcurrency) {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return 0
}
