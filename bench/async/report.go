package main

import (
	"fmt"
	"math"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/bench/internal/benchenv"
)

func report(c config, acc accResult, e2e e2eResult, took time.Duration) {
	fmt.Printf("## Async inference\n\n")
	benchenv.PrintRun(took)
	fmt.Printf("The whole dev stack runs in this process (devstack: embedded Temporal, the API and the gateway on " +
		"one loopback address, the worker, the autoscaler, the local node agent with the process runtime, no GPU), " +
		"on a fresh database of PostgreSQL on loopback, with the async rate limit off; the model is the test model " +
		"(cmd/testmodel) as a `process` package. The load comes from the same process: closed-loop clients on " +
		"keep-alive HTTP/1.1 connections, each sending its next request once it has read the answer to the last. " +
		"The baseline is synchronous predict to the same deployment, measured in the same run. The stack, the model " +
		"processes, PostgreSQL and the clients share this machine's CPUs, so the figures compare async with sync " +
		"here, not with a deployment that gives each part machines of its own. Percentiles are by nearest rank.\n\n")

	fmt.Printf("### Acceptance\n\n")
	fmt.Printf("- The test model with no latency, one replica. %d clients send to it for %s unmeasured, then for %s "+
		"measured; predict first, then async_predict (`{\"model_input\": …}`, no webhook), which must be answered "+
		"201 every time.\n"+
		"- Time to 201 is from send until the answer was read: the gateway checks the request, inserts its row "+
		"(QUEUED) and starts its workflow before it answers. The accepted requests' workflows run meanwhile on the "+
		"same CPUs; the benchmark does not wait for them (this phase runs last).\n\n",
		c.Clients, c.Warmup, c.Duration)
	fmt.Printf("| mode | requests | not answered 200/201 | per second | p50 | p99 |\n|---|---|---|---|---|---|\n")
	loadRow("predict (baseline)", acc.sync)
	loadRow("async_predict (accepted)", acc.async)
	fmt.Println()
	syncP99, asyncP99 := benchenv.Percentile(acc.sync.latencies, 99), benchenv.Percentile(acc.async.latencies, 99)
	fmt.Printf("- Accepted/s ÷ predict req/s: %s.\n", ratio(acc.async.perSecond(), acc.sync.perSecond()))
	fmt.Printf("- p99 to 201 ÷ predict p99: %s.\n", ratio(float64(asyncP99), float64(syncP99)))
	fmt.Printf("- The deployment's async requests when the measurement ended (warm-up included): %s.\n\n", countsText(acc.after))

	fmt.Printf("### End-to-end completion\n\n")
	capacity := e2eReplicas * e2eConcurrency
	fmt.Printf("- The test model with --latency %s; min_replica = max_replica = %d, concurrency_target %d, so %d "+
		"async requests run at once.\n"+
		"- Baseline: %d predicts by %d closed-loop clients, from the first send until the last answer.\n"+
		"- Async: %d async_predict sent by %d closed-loop clients as fast as they are accepted, then timed from the "+
		"first submission until the latest finished_at of their rows (PostgreSQL's clock, on this machine), read "+
		"once the database, polled every %s, showed every request ended. Every request must end SUCCEEDED.\n"+
		"- The model alone allows at most %.0f/s (%d at once, %s each).\n\n",
		c.Latency, e2eReplicas, e2eConcurrency, capacity, c.N, c.Clients, c.N, c.Clients, pollEvery,
		modelBound(c.Latency, capacity), capacity, c.Latency)
	fmt.Printf("| mode | requests | time | per second |\n|---|---|---|---|\n")
	fmt.Printf("| predict (baseline) | %d | %s | %.0f |\n", e2e.sync.requests, durText(e2e.sync.elapsed), e2e.sync.perSecond())
	fmt.Printf("| async, first submission → last SUCCEEDED | %d | %s | %.1f |\n\n", len(e2e.rows), durText(e2e.completion()), e2e.completionsPerSecond())
	fmt.Printf("- Completions/s ÷ predict req/s: %s.\n", ratio(e2e.completionsPerSecond(), e2e.sync.perSecond()))
	fmt.Printf("- Submitting all %d took %s (%.0f/s; p50 %s, p99 %s to 201); the poll saw the last end %s after the first submission.\n",
		c.N, durText(e2e.submit.elapsed), e2e.submit.perSecond(), durText(benchenv.Percentile(e2e.submit.latencies, 50)),
		durText(benchenv.Percentile(e2e.submit.latencies, 99)), durText(e2e.waited))
	retried := 0
	for _, r := range e2e.rows {
		if r.Attempts > 1 {
			retried++
		}
	}
	fmt.Printf("- Most requests seen IN_PROGRESS at once: %d (capacity %d); requests that took more than one attempt: %d.\n",
		e2e.maxInProgress, capacity, retried)
	if held := meanHeld(e2e.rows); held > 0 {
		busy := e2e.completionsPerSecond() * held.Seconds()
		fmt.Printf("- A request held its slot (started_at → finished_at) %s on average, so the %d slots could finish "+
			"%.1f/s; at the measured rate %.1f of them were busy on average (%.0f%%): the others stood idle while requests waited in the queue.\n",
			durText(held), capacity, float64(capacity)/held.Seconds(), busy, 100*busy/float64(capacity))
	}
	fmt.Println()

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
		{"claimed → attempt recorded", "ClaimAsync returns to the workflow, which schedules RunAsyncAttempt; it inserts the attempt and notifies the gateways",
			func(r asyncRow) (time.Duration, bool) { return since(r.AttemptCreated, r.StartedAt) }},
		{"→ running on the gateway", "the gateway hears the notification (or its 1 s poll) and claims the attempt",
			func(r asyncRow) (time.Duration, bool) { return since(r.AttemptStarted, r.AttemptCreated) }},
		{"→ attempt done", fmt.Sprintf("the gateway calls the model (%s) and records the answer", c.Latency),
			func(r asyncRow) (time.Duration, bool) { return since(r.AttemptFinished, r.AttemptStarted) }},
		{"→ request finished", "the activity hears the attempt is done, returns, and FinishAsync records SUCCEEDED",
			func(r asyncRow) (time.Duration, bool) { return since(r.FinishedAt, r.AttemptFinished) }},
	} {
		var v []time.Duration
		for _, r := range e2e.rows {
			if r.Status != modelplane.AsyncSucceeded {
				continue
			}
			if d, ok := iv.d(r); ok {
				v = append(v, d)
			}
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", iv.name, iv.what, durText(benchenv.Percentile(v, 50)), durText(benchenv.Percentile(v, 99)), durText(benchenv.Percentile(v, 100)))
	}
	fmt.Println()
}

func loadRow(name string, r loadResult) {
	fmt.Printf("| %s | %d | %d | %.0f | %s | %s |\n", name, r.requests, r.bad, r.perSecond(),
		durText(benchenv.Percentile(r.latencies, 50)), durText(benchenv.Percentile(r.latencies, 99)))
}

// meanHeld is the mean time from started_at to finished_at of the requests that SUCCEEDED.
func meanHeld(rows []asyncRow) time.Duration {
	var sum time.Duration
	n := 0
	for _, r := range rows {
		if d, ok := since(r.FinishedAt, r.StartedAt); ok && r.Status == modelplane.AsyncSucceeded {
			sum += d
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / time.Duration(n)
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
