package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/bench/internal/benchenv"
)

// A cold start's marks, in the order they happen, each as a time since the request was sent.
type mark int

const (
	markCreated   mark = iota // the agent created the replica
	markStarted               // the agent started the model's process
	markHealthy               // the agent's first passed health check
	markForwarded             // the gateway forwarded the request (its histogram)
	markAnswered              // the client had the answer
	numMarks
)

// phases name the intervals between consecutive marks, the first from the request.
var phases = [numMarks]struct{ name, what string }{
	{"request → replica created on the agent", "gateway holds the request and sends Wake (Temporal update); the workflow records WAKING_UP, places the replica and calls the agent; also any wake the autoscaler undid meanwhile"},
	{"→ model process started", "the agent downloads the package from the API, unpacks it and starts the process"},
	{"→ first health check passed", "the model's load time, the process's start, and up to one 50 ms probe interval"},
	{"→ forwarded by the gateway", "the workflow's activity sees READY (polls the agent every 100 ms) and records it; the gateway reloads its routes on the NOTIFY"},
	{"→ answer received", "proxying and the model's answer"},
}

// marks returns the sample's marks (negative: not seen) from the recorded events, looking at
// the deployment's events from the request until the next request.
func marks(tl *timeline, depID string, s coldSample, until time.Time) [numMarks]time.Duration {
	var m [numMarks]time.Duration
	for i := range m {
		m[i] = -1
	}
	since := func(t time.Time) time.Duration { return t.Sub(s.sent) }
	if !s.created.IsZero() {
		m[markCreated] = since(s.created)
	}
	// The replica that served: an earlier one of the same wake may have been stopped.
	if t, ok := tl.first(depID, s.sent, until, isReplicaMsg(msgServerStarted, s.replicaID)); ok {
		m[markStarted] = since(t)
	}
	if t, ok := tl.first(depID, s.sent, until, isReplicaMsg(msgReplicaReady, s.replicaID)); ok {
		m[markHealthy] = since(t)
	}
	if s.forwarded > 0 {
		m[markForwarded] = s.forwarded
	}
	m[markAnswered] = s.total()
	return m
}

func report(c config, runs []*coldRun, step stepResult, tl *timeline, took time.Duration) {
	fmt.Printf("## Cold start and scale-up\n\n")
	benchenv.PrintRun(took)
	fmt.Printf("The whole dev stack runs in this process (devstack: embedded Temporal, the API and the gateway on " +
		"one loopback address, the worker and the autoscaler with its default 1 s tick, the local node agent " +
		"with the process runtime, no GPU), on a fresh database of PostgreSQL on loopback; the model is the " +
		"test model (cmd/testmodel) as a `process` package. The baseline is the model's own load time, which " +
		"is subtracted; there is no other stack to compare with, so there are no ratios.\n\n")

	fmt.Printf("### Cold start overhead\n\n")
	fmt.Printf("- One deployment per load time, with min_replica 0, max_replica 1, scale_down_delay %d and "+
		"autoscaling_window 10: after a request it goes back to zero once the request has left the 10 s window "+
		"and the delay has passed.\n"+
		"- %d times per load time: wait until the deployment is SCALED_TO_ZERO (the API polled every 50 ms; the "+
		"status is recorded once the agent has stopped the replica), then send one prediction through the gateway "+
		"(keep-alive HTTP on loopback) and time it from send to answer. The test model answers at once, so "+
		"overhead = that time − the load time.\n"+
		"- The two deployments take turns (one idles back to zero while the other is measured); a measurement "+
		"holds a lock that pauses the benchmark's own polling, so no two cold starts overlap. The other "+
		"deployment's scale-down can still fall into one; the table counts those.\n"+
		"- Percentiles are by nearest rank%s. A load time's measurements end early after %d failed cold "+
		"starts (the gateway gives up a wake after %s).\n\n",
		int(c.ScaleDownDelay/time.Second), c.N, fewSamples(c.N), maxColdFailures, coldStartTimeout)

	fmt.Printf("| model load time | cold starts | failed | overhead p50 | overhead p99 (= max) | min | "+
		"p50 < %s | p99 < %s | wakes undone by the autoscaler | overlapped another deployment's change |\n"+
		"|---|---|---|---|---|---|---|---|---|---|\n",
		maxOverheadP50, maxOverheadP99)
	undoneAll := 0
	for _, r := range runs {
		undone := 0
		var over []time.Duration
		overlapped := 0
		for _, s := range r.samples {
			over = append(over, s.total()-r.load)
			if tl.busy(r.depID, s.sent, s.answered) {
				overlapped++
			}
		}
		for _, s := range append(slices.Clone(r.samples), r.failed...) {
			undone += tl.count(r.depID, s.sent, s.answered, isScaleTo(0))
		}
		p50, p99 := benchenv.Percentile(over, 50), benchenv.Percentile(over, 99)
		fmt.Printf("| %s | %d | %d | %s | %s | %s | %s | %s | %d | %d |\n", r.load, len(r.samples), len(r.failed),
			msText(p50), msText(p99), msText(benchenv.Percentile(over, 0)), target(r, p50 < maxOverheadP50),
			target(r, p99 < maxOverheadP99), undone, overlapped)
		undoneAll += undone
	}
	fmt.Println()
	notes := false
	for _, r := range runs {
		notes = notes || r.gaveUp || r.stuck != "" || len(r.failed) > 0
		if r.gaveUp {
			fmt.Printf("- Load time %s: stopped after %d failed cold starts.\n", r.load, len(r.failed))
		}
		if r.stuck != "" {
			fmt.Printf("- Load time %s: stopped after %d cold starts: %s.\n", r.load, len(r.samples)+len(r.failed), r.stuck)
		}
		for i, f := range r.failed {
			fmt.Printf("- Load time %s, failed after %s: %s\n", r.load, msText(f.total()), f.err)
			if i == 2 && len(r.failed) > 3 {
				fmt.Printf("- … and %d more failures.\n", len(r.failed)-3)
				break
			}
		}
	}
	if undoneAll > 0 {
		fmt.Printf("- A wake undone by the autoscaler is a Scale to 0 sent while a request was held for the "+
			"deployment: held requests show in no load sample, and the woken replica's start counts as a "+
			"request only for scale_down_delay (%d s here), so the next tick takes the waking deployment back "+
			"to zero before its replica is READY; the gateway sends Wake again every 2 s. A model that loads "+
			"in less than about a tick can win that race; a slower one may not until the timeout.\n",
			int(c.ScaleDownDelay/time.Second))
	}
	if notes || undoneAll > 0 {
		fmt.Println()
	}
	fmt.Printf("Cross-check with the gateway's own `%s` (arrival until forwarded, so without the answer):\n\n",
		coldStartMetric)
	for _, r := range runs {
		var clientSum time.Duration
		for _, s := range r.samples {
			clientSum += s.total()
		}
		if r.hist.count == 0 || len(r.samples) == 0 {
			fmt.Printf("- load time %s: the histogram counted nothing.\n", r.load)
			continue
		}
		gwMean := time.Duration(r.hist.sum / float64(r.hist.count) * float64(time.Second))
		fmt.Printf("- load time %s: %d observed, mean %s − load time = %s; the client's mean − load time = %s.\n",
			r.load, r.hist.count, msText(gwMean), msText(gwMean-r.load),
			msText(clientSum/time.Duration(len(r.samples))-r.load))
	}
	fmt.Println()

	fmt.Printf("Where the time goes: each cold start's marks, from the stack's log (the workflow's status writes, "+
		"the agent's \"%s\" and \"%s\"), the agent's replica creation time, and the histogram's growth over the "+
		"request; each row is the interval from the mark before, p50 and max over the cold starts.\n\n",
		msgServerStarted, msgReplicaReady)
	fmt.Printf("| interval | what happens |")
	for _, r := range runs {
		fmt.Printf(" %s load: p50 | max |", r.load)
	}
	fmt.Printf("\n|---|---|%s\n", strings.Repeat("---|---|", len(runs)))
	all := make([][][numMarks]time.Duration, len(runs))
	for i, r := range runs {
		for j, s := range r.samples {
			until := s.sent.Add(time.Minute)
			if j+1 < len(r.samples) {
				until = r.samples[j+1].sent
			}
			all[i] = append(all[i], marks(tl, r.depID, s, until))
		}
	}
	for p := range numMarks {
		fmt.Printf("| %s | %s |", phases[p].name, phases[p].what)
		for i := range runs {
			var d []time.Duration
			for _, m := range all[i] {
				from := time.Duration(0)
				if p > 0 {
					from = m[p-1]
				}
				if m[p] >= 0 && from >= 0 {
					d = append(d, m[p]-from)
				}
			}
			fmt.Printf(" %s | %s |", msText(benchenv.Percentile(d, 50)), msText(benchenv.Percentile(d, 100)))
		}
		fmt.Println()
	}
	fmt.Println()
	for _, r := range runs {
		var woke, active []time.Duration
		for j, s := range r.samples {
			until := s.sent.Add(time.Minute)
			if j+1 < len(r.samples) {
				until = r.samples[j+1].sent
			}
			if t, ok := tl.first(r.depID, s.sent, until, isStatus(modelplane.DeploymentWakingUp)); ok {
				woke = append(woke, t.Sub(s.sent))
			}
			if t, ok := tl.first(r.depID, s.sent, until, isStatus(modelplane.DeploymentActive)); ok {
				active = append(active, t.Sub(s.sent))
			}
		}
		fmt.Printf("- load time %s: the workflow recorded WAKING_UP at p50 %s and ACTIVE at p50 %s after the request.\n",
			r.load, msText(benchenv.Percentile(woke, 50)), msText(benchenv.Percentile(active, 50)))
	}
	fmt.Println()

	fmt.Printf("### Scale-up reaction\n\n")
	fmt.Printf("The test model with --latency %s; min_replica 1, max_replica %d, concurrency_target %d, "+
		"target_utilization_percentage 100, autoscaling_window %d, scale_down_delay %d. %d closed-loop client(s) "+
		"for %s, then %d; READY replicas read from the API's active_replica_count every 100 ms.\n\n",
		stepLatency, stepMaxReplicas, stepConcurrency, int(stepWindow/time.Second), int(stepScaleDownWait/time.Second),
		c.BaseClients, c.Base, c.StepClients)
	fmt.Printf("| replicas | READY after the step | autoscaler sent the scale | the window's average first asks for it |\n" +
		"|---|---|---|---|\n")
	for k := 2; k <= stepMaxReplicas; k++ {
		decided := "-"
		if t, ok := tl.first(step.depID, step.step, step.step.Add(c.StepTimeout), func(e event) bool {
			to, err := strconv.Atoi(e.attrs["to"])
			return e.msg == msgScaled && err == nil && to >= k
		}); ok {
			decided = secText(t.Sub(step.step))
		}
		ready := "not within " + c.StepTimeout.String()
		if step.ready[k] > 0 {
			ready = secText(step.ready[k])
		}
		fmt.Printf("| %d | %s | %s | %s |\n", k, ready, decided, secText(windowReaches(k, c)))
	}
	fmt.Println()
	fmt.Printf("- Requests during the run: %d, failed: %d (must be 0).", step.requests, step.failures)
	if step.failures > 0 {
		fmt.Printf(" First failure: %s", step.firstFailure)
	}
	fmt.Println()
	fmt.Printf("- The window paces it: the autoscaler decides on the average concurrency over the last %d s "+
		"(one sample per second, summed over gateways), not on the current one, so %d clients at %d per replica "+
		"ask for another replica only as the step fills the window. The last column is when that average first "+
		"exceeds k−1 replicas' worth if every client always has a request in flight (%d before the step, for %s, "+
		"nothing before that); the autoscaler acts on it at its next tick after the second's sample is written, "+
		"and the replica is READY once placed, started and health-checked.\n\n",
		int(stepWindow/time.Second), c.StepClients, stepConcurrency, c.BaseClients, c.Base)
}

// fewSamples says, for n samples per load time, that p99 is the largest one when it is.
func fewSamples(n int) string {
	if n >= 100 {
		return ""
	}
	return fmt.Sprintf(": with %d samples, p99 is the largest one, the same as max", n)
}

func msText(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond)/time.Millisecond)
}

func secText(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// target says whether a cold-start target is met: failed cold starts, which are not in the
// percentiles, fail it too.
func target(r *coldRun, ok bool) string {
	switch {
	case len(r.samples) == 0:
		return "not measured"
	case len(r.failed) > 0:
		return fmt.Sprintf("not met (%d failed)", len(r.failed))
	}
	return met(ok)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}
