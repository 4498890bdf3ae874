package main

import (
	"fmt"
	"math"
	"time"

	"github.com/modelplane/modelplane/bench/internal/benchenv"
)

// goal is one of the benchmark's targets and how this run measured against it.
type goal struct {
	name, figure, target string
	met                  bool
}

func (g goal) String() string {
	verdict := "not met"
	if g.met {
		verdict = "met"
	}
	return fmt.Sprintf("%s: %s (target %s): %s", g.name, g.figure, g.target, verdict)
}

func report(c config, acc accResult, drain drainResult, steady steadyResult, took time.Duration) {
	capacity := drainReplicas * drainConcurrency
	bound := modelBound(c.Latency, capacity)
	syncP99, asyncP99 := benchenv.Percentile(acc.sync.latencies, 99), benchenv.Percentile(acc.async.latencies, 99)
	accRate := acc.async.perSecond() / acc.sync.perSecond()
	accP99 := float64(asyncP99) / float64(syncP99)
	drainRatio := drain.drainPerSecond() / bound
	waits := steady.queueWaits()
	waitP50 := benchenv.Percentile(waits, 50)
	goals := struct{ accRate, accP99, drain, steady goal }{
		accRate: goal{"Accepted/s ÷ predict req/s", ratio(acc.async.perSecond(), acc.sync.perSecond()), "at least 0.3x", accRate >= 0.3},
		accP99:  goal{"p99 to 201 ÷ predict p99", ratio(float64(asyncP99), float64(syncP99)), "at most 3x", accP99 <= 3},
		drain: goal{"Drain rate ÷ the model's capacity", fmt.Sprintf("%.0f/s ÷ %.0f/s = %s", drain.drainPerSecond(), bound,
			ratio(drain.drainPerSecond(), bound)), "at least 0.8x", drainRatio >= 0.8},
		steady: goal{fmt.Sprintf("Steady state at %.0f/s, median wait in the queue", steady.rate), durText(waitP50),
			"under 20 ms", len(waits) > 0 && waitP50 < 20*time.Millisecond},
	}

	fmt.Printf("## Async inference\n\n")
	benchenv.PrintRun(took)
	fmt.Printf("The whole dev stack runs in this process (devstack: embedded Temporal, the API and the gateway on " +
		"one loopback address, the worker, the autoscaler, the local node agent with the process runtime, no GPU), " +
		"on a fresh database of PostgreSQL on loopback, with the async rate limit off; the model is the test model " +
		"(cmd/testmodel) as a `process` package. The load comes from the same process on keep-alive HTTP/1.1 " +
		"connections. The baseline is synchronous predict to the same deployment, measured in the same run. The " +
		"stack, the model processes, PostgreSQL and the clients share this machine's CPUs, so the figures compare " +
		"async with sync here, not with a deployment that gives each part machines of its own. Percentiles are by " +
		"nearest rank.\n\n")

	fmt.Printf("### Acceptance\n\n")
	fmt.Printf("- The test model with no latency, one replica. %d closed-loop clients (each sends its next request "+
		"once it has read the answer to the last) send to it for %s unmeasured, then for %s measured; predict "+
		"first, then async_predict (`{\"model_input\": …}`, no webhook), which must be answered 201 every time.\n"+
		"- Time to 201 is from send until the answer was read: the gateway checks the request, writes its row "+
		"(QUEUED) together with other accepted requests in one batch, and answers 201 once it is committed; no "+
		"workflow is started. The gateway runs the accepted requests meanwhile on the same CPUs; the benchmark does "+
		"not wait for them (this phase runs last).\n\n",
		c.Clients, c.Warmup, c.Duration)
	fmt.Printf("| mode | requests | not answered 200/201 | per second | p50 | p99 |\n|---|---|---|---|---|---|\n")
	loadRow("predict (baseline)", acc.sync)
	loadRow("async_predict (accepted)", acc.async)
	fmt.Println()
	fmt.Printf("- %s.\n", goals.accRate)
	fmt.Printf("- %s.\n", goals.accP99)
	fmt.Printf("- The deployment's async requests when the measurement ended (warm-up included): %s.\n\n", countsText(acc.after))

	fmt.Printf("### Completion (backlog drain)\n\n")
	fmt.Printf("- The test model with --latency %s; min_replica = max_replica = %d, concurrency_target %d, so %d "+
		"async requests run at once: the model's capacity is %.0f/s.\n"+
		"- Baseline: %d predicts by %d closed-loop clients, from the first send until the last answer.\n"+
		"- Async: %d async_predict sent by %d closed-loop clients as fast as they are accepted; their rows are read "+
		"once the database, polled every %s, showed every request ended. Every request must end SUCCEEDED. The drain "+
		"runs from the earliest started_at to the latest finished_at of their rows (PostgreSQL's clock, on this "+
		"machine); the whole time from the first submission to the latest finished_at.\n\n",
		c.Latency, drainReplicas, drainConcurrency, capacity, bound, c.N, c.Clients, c.N, c.Clients, pollEvery)
	fmt.Printf("| mode | requests | time | per second |\n|---|---|---|---|\n")
	fmt.Printf("| predict (baseline) | %d | %s | %.0f |\n", drain.sync.requests, durText(drain.sync.elapsed), drain.sync.perSecond())
	fmt.Printf("| async, first submission → last SUCCEEDED | %d | %s | %.1f |\n", len(drain.rows), durText(drain.completion()), drain.completionsPerSecond())
	fmt.Printf("| async drain, first started → last SUCCEEDED | %d | %s | %.1f |\n\n", len(drain.rows), durText(drain.span()), drain.drainPerSecond())
	fmt.Printf("- %s.\n", goals.drain)
	fmt.Printf("- Completions/s (from the first submission) ÷ predict req/s: %s.\n", ratio(drain.completionsPerSecond(), drain.sync.perSecond()))
	busy := drain.busySlots()
	fmt.Printf("- No slot idle while requests wait: during the drain %.1f of the %d slots were busy on average "+
		"(started_at → finished_at summed over the requests, over the drain's span): %.0f%%.\n",
		busy, capacity, 100*busy/float64(capacity))
	fmt.Printf("- Submitting all %d took %s (%.0f/s; p50 %s, p99 %s to 201); the poll saw the last end %s after the first submission.\n",
		c.N, durText(drain.submit.elapsed), drain.submit.perSecond(), durText(benchenv.Percentile(drain.submit.latencies, 50)),
		durText(benchenv.Percentile(drain.submit.latencies, 99)), durText(drain.waited))
	fmt.Printf("- Most requests seen IN_PROGRESS at once: %d (capacity %d); requests that took more than one attempt: %d.\n\n",
		drain.maxInProgress, capacity, retried(drain.rows))

	fmt.Printf("Each request's times, from its row and its last attempt's row (database times, each the start of the " +
		"transaction that wrote it):\n\n")
	fmt.Printf("| interval | what happens | p50 | p99 | max |\n|---|---|---|---|---|\n")
	for _, iv := range []struct {
		name, what string
		d          func(asyncRow) (time.Duration, bool)
	}{
		{"created → finished", "the whole request: finished_at − created_at",
			func(r asyncRow) (time.Duration, bool) { return since(r.FinishedAt, &r.CreatedAt) }},
		{"in queue", "started_at − created_at: waiting for one of the deployment's slots",
			func(r asyncRow) (time.Duration, bool) { return since(r.StartedAt, &r.CreatedAt) }},
		{"→ attempt running", "attempt started_at − request started_at: ~0 when a gateway starts the queue head into its own slot (the request IN_PROGRESS and attempt 1 RUNNING in one statement); a head the autoscaler's sweep started waits here for a gateway to claim it",
			func(r asyncRow) (time.Duration, bool) { return since(r.AttemptStarted, r.StartedAt) }},
		{"→ attempt done", fmt.Sprintf("attempt finished_at − started_at: the gateway calls the model (%s) and records the answer", c.Latency),
			func(r asyncRow) (time.Duration, bool) { return since(r.AttemptFinished, r.AttemptStarted) }},
		{"→ request finished", "request finished_at − attempt finished_at: the attempt and the request's end are recorded in one transaction",
			func(r asyncRow) (time.Duration, bool) { return since(r.FinishedAt, r.AttemptFinished) }},
	} {
		var v []time.Duration
		for _, r := range drain.rows {
			if d, ok := iv.d(r); ok {
				v = append(v, d)
			}
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", iv.name, iv.what, durText(benchenv.Percentile(v, 50)), durText(benchenv.Percentile(v, 99)), durText(benchenv.Percentile(v, 100)))
	}
	fmt.Println()

	fmt.Printf("### Steady state\n\n")
	fmt.Printf("- The same deployment once the drain has ended. An open loop sends async_predict at %.0f/s (%s the "+
		"model's capacity) for %s on a fixed schedule, each request in its own goroutine, at most %d awaiting their "+
		"201 at once, whatever the answers take; then the benchmark waits until every one has ended, which must be "+
		"SUCCEEDED. The wait in the queue is started_at − created_at of the requests' rows.\n",
		steady.rate, ratio(steady.rate, bound), c.SteadyDuration, steadyInFlight)
	fmt.Printf("- Sent %d in %s (%.0f/s accepted); time to 201 from each request's scheduled time p50 %s, p99 %s.\n",
		steady.submit.requests, durText(steady.submit.elapsed), steady.submit.perSecond(),
		durText(benchenv.Percentile(steady.submit.latencies, 50)), durText(benchenv.Percentile(steady.submit.latencies, 99)))
	var whole []time.Duration
	for _, r := range steady.rows {
		if d, ok := since(r.FinishedAt, &r.CreatedAt); ok {
			whole = append(whole, d)
		}
	}
	fmt.Printf("- Wait in the queue over %d requests: p50 %s, p99 %s, max %s; created → finished p50 %s, p99 %s; "+
		"requests that took more than one attempt: %d.\n",
		len(waits), durText(waitP50), durText(benchenv.Percentile(waits, 99)), durText(benchenv.Percentile(waits, 100)),
		durText(benchenv.Percentile(whole, 50)), durText(benchenv.Percentile(whole, 99)), retried(steady.rows))
	fmt.Printf("- %s.\n\n", goals.steady)

	fmt.Printf("### Goals\n\n")
	for _, g := range []goal{goals.accRate, goals.accP99, goals.drain, goals.steady} {
		fmt.Printf("- %s.\n", g)
	}
	fmt.Println()
}

// retried counts the requests that took more than one attempt.
func retried(rows []asyncRow) int {
	n := 0
	for _, r := range rows {
		if r.Attempts > 1 {
			n++
		}
	}
	return n
}

func loadRow(name string, r loadResult) {
	fmt.Printf("| %s | %d | %d | %.0f | %s | %s |\n", name, r.requests, r.bad, r.perSecond(),
		durText(benchenv.Percentile(r.latencies, 50)), durText(benchenv.Percentile(r.latencies, 99)))
}

// since is to − from, when both are known.
func since(to, from *time.Time) (time.Duration, bool) {
	if to == nil || from == nil {
		return 0, false
	}
	return to.Sub(*from), true
}

// modelBound is the most requests per second `slots` copies of a model with this latency
// can answer; infinite with no latency.
func modelBound(latency time.Duration, slots int) float64 {
	if latency <= 0 {
		return math.Inf(1)
	}
	return float64(slots) / latency.Seconds()
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	if r := a / b; r < 0.1 {
		return fmt.Sprintf("%.2gx", r) // two significant digits: 0.0033x
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func durText(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}
