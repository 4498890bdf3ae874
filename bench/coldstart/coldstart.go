package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
)

// coldStartMetric is the gateway's histogram of the wait from a request's arrival for a
// deployment at zero until it was forwarded.
const coldStartMetric = "modelplane_cold_start_seconds"

// coldRun is the cold starts of one deployment, whose model loads in load.
type coldRun struct {
	load           time.Duration
	modelID, depID string
	samples        []coldSample // the answered ones
	failed         []coldSample
	gaveUp         bool      // maxColdFailures ended the measurements early
	stuck          string    // why the deployment did not get back to zero, which ended them
	hist           histogram // the gateway's histogram at the end
}

// coldSample is one request to the deployment at zero.
type coldSample struct {
	sent, answered time.Time
	// forwarded is the gateway's own wait for this request, the histogram's growth over it;
	// zero when the histogram did not count exactly this one request.
	forwarded time.Duration
	// created is when the agent created the replica that woke (its clock), zero if not found.
	created   time.Time
	replicaID string // that replica
	err       string // why a failed one failed
}

func (s coldSample) total() time.Duration { return s.answered.Sub(s.sent) }

// coldStarts measures c.N cold starts of one deployment per load time. The deployments take
// turns: while one idles back to zero the other is measured, which halves the run time, and
// a measurement holds a lock that stops the others' polling, so no two cold starts and no
// benchmark traffic overlap. (The other deployment's autoscaler-driven scale-down may still
// fall into a measurement; the report counts those.)
func (b *bench) coldStarts(ctx context.Context, c config) ([]*coldRun, error) {
	var runs []*coldRun
	for _, load := range c.LoadTimes {
		name := fmt.Sprintf("cold-%s", load)
		progress("deploying %s", name)
		modelID, depID, err := b.deploy(ctx, name, "--load-time", load.String())
		if err != nil {
			return nil, err
		}
		// Back to zero as soon as it is idle: with no delay, the window (10 s, the smallest
		// allowed) is all that keeps a replica after a request.
		if err := b.Autoscale(ctx, modelID, depID, map[string]any{"min_replica": 0, "max_replica": 1,
			"scale_down_delay": int(c.ScaleDownDelay / time.Second), "autoscaling_window": 10}); err != nil {
			return nil, err
		}
		runs = append(runs, &coldRun{load: load, modelID: modelID, depID: depID})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var pause sync.RWMutex
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = b.coldStartsOf(ctx, r, c.N, &pause); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		return nil, err
	}
	for _, r := range runs {
		h, err := coldHistogram(r.depID)
		if err != nil {
			return nil, err
		}
		r.hist = h
	}
	return runs, nil
}

// coldStartsOf waits for the deployment to be at zero and sends one request, n times.
func (b *bench) coldStartsOf(ctx context.Context, r *coldRun, n int, pause *sync.RWMutex) error {
	for i := range n {
		// SCALED_TO_ZERO is recorded once the last replica has stopped on the agent.
		if _, err := b.WaitFor(ctx, r.modelID, r.depID, 50*time.Millisecond, zeroTimeout, pause, string(modelplane.DeploymentScaledToZero),
			func(d apiv1.DeploymentV1) bool { return d.Status == modelplane.DeploymentScaledToZero }); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Reported, not fatal: the other measurements still say something.
			r.stuck = err.Error()
			progress("load %s: stopped: %v", r.load, err)
			return nil
		}
		s, err := b.coldStart(ctx, r, pause)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			s.err = err.Error()
			r.failed = append(r.failed, s)
			progress("load %s: cold start %d/%d failed after %s: %v", r.load, i+1, n,
				s.total().Round(time.Millisecond), err)
			if len(r.failed) >= maxColdFailures {
				r.gaveUp = true
				progress("load %s: giving up after %d failed cold starts", r.load, len(r.failed))
				return nil
			}
			continue
		}
		r.samples = append(r.samples, s)
		progress("load %s: cold start %d/%d: %s (gateway: %s)", r.load, i+1, n, s.total().Round(time.Millisecond),
			s.forwarded.Round(time.Millisecond))
	}
	return nil
}

// coldStart times one prediction to the deployment at zero, holding pause.
func (b *bench) coldStart(ctx context.Context, r *coldRun, pause *sync.RWMutex) (coldSample, error) {
	pause.Lock()
	before, herr := coldHistogram(r.depID)
	s := coldSample{sent: time.Now()}
	pctx, cancel := context.WithTimeout(ctx, requestTimeout)
	_, err := b.gw.Predict(pctx, r.modelID, client.DeploymentTarget(r.depID), []byte(`{"cold":true}`))
	s.answered = time.Now()
	cancel()
	after, herr2 := coldHistogram(r.depID)
	pause.Unlock()
	if err != nil {
		return s, err
	}
	if herr == nil && herr2 == nil && after.count == before.count+1 {
		s.forwarded = time.Duration((after.sum - before.sum) * float64(time.Second))
	}
	if rs, err := b.agent.Replicas(ctx); err == nil {
		for _, rep := range rs {
			if rep.DeploymentID == r.depID && (rep.State == modelplane.ReplicaReady || rep.State == modelplane.ReplicaStarting) &&
				rep.CreatedAt.After(s.created) {
				s.created, s.replicaID = rep.CreatedAt, rep.ID
			}
		}
	}
	return s, nil
}

// histogram is one deployment's series of the cold-start histogram.
type histogram struct {
	count uint64
	sum   float64
}

// coldHistogram reads the gateway's cold-start histogram for the deployment from the
// process's default registry, where the stack registers it.
func coldHistogram(depID string) (histogram, error) {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return histogram{}, err
	}
	for _, mf := range mfs {
		if mf.GetName() != coldStartMetric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "deployment_id" && l.GetValue() == depID {
					h := m.GetHistogram()
					return histogram{count: h.GetSampleCount(), sum: h.GetSampleSum()}, nil
				}
			}
		}
	}
	return histogram{}, nil
}
