// Command async measures async inference on a whole dev stack run in this process (devstack:
// embedded Temporal, PostgreSQL, the gateway, the worker, the autoscaler and the local node
// agent with the process runtime), with the test model (cmd/testmodel) as the model, against
// synchronous predict to the same deployment as the baseline, measured in the same run:
//
//   - Completion (backlog drain): N async requests are submitted as fast as -clients clients
//     can to a deployment of two replicas of the test model with 20 ms latency and
//     concurrency_target 8 (16 run at once, 800/s), and timed until the last is SUCCEEDED;
//     every one must succeed. The drain rate is N over the span from the earliest started_at
//     to the latest finished_at of their rows, against the model's capacity. The baseline is
//     N synchronous predicts by the same clients.
//   - Steady state: an open loop sends async requests to the same deployment at half its
//     capacity on a fixed schedule for a few seconds, then waits until they have all ended;
//     the figure is the time a request waits in the queue for a free slot.
//   - Acceptance: closed-loop clients send async_predict (no webhook) to one deployment of
//     the test model with no latency for a fixed time; every answer must be 201. The
//     baseline is the same clients sending predict to the same deployment for the same
//     time: accepted/s against req/s, and p99 to 201 against the predict p99.
//
// The acceptance phase runs last: the requests it leaves queued keep the gateway busy
// afterwards, which would slow whatever ran next. It prints a markdown section, ending with
// the goals and whether they were met, which bench/run adds to RESULTS.md.
//
// It needs PostgreSQL as the tests use it (internal/pgtest).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/bench/internal/benchenv"
	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/store"
)

// Settings of the drain and steady-state deployment: two replicas that never scale, eight
// requests each at once, so that async requests run 16 at a time.
const (
	drainReplicas    = 2
	drainConcurrency = 8
)

// Timings of the benchmark itself.
const (
	// requestTimeout bounds one request from the client's side.
	requestTimeout = 60 * time.Second
	// settleTimeout bounds a wait for a new deployment to be ACTIVE with its replicas.
	settleTimeout = 90 * time.Second
	// pollEvery is how often the database is read while async requests run.
	pollEvery = 50 * time.Millisecond
	// steadyInFlight bounds the steady-state requests awaiting their 201 at once, so a stalled
	// gateway cannot make the open loop start goroutines without end.
	steadyInFlight = 256
)

type config struct {
	Clients        int           // concurrent clients in the acceptance phase, the drain and its baseline
	Duration       time.Duration // how long the acceptance phase measures each mode
	Warmup         time.Duration // unmeasured load before each acceptance measurement
	N              int           // async requests of the drain, and predicts of its baseline
	Latency        time.Duration // the drain and steady-state model's latency
	Timeout        time.Duration // how long the drain's or the steady state's requests may take to end
	SteadyRate     float64       // async requests a second in the steady state
	SteadyDuration time.Duration // how long the steady state sends
	Log            string        // file for the stack's log; empty: not kept
}

func main() {
	var c config
	flag.IntVar(&c.Clients, "clients", 16, "concurrent clients (acceptance phase, the drain and its baseline)")
	flag.DurationVar(&c.Duration, "duration", 10*time.Second, "how long each acceptance measurement runs")
	flag.DurationVar(&c.Warmup, "warmup", time.Second, "unmeasured load before each acceptance measurement")
	flag.IntVar(&c.N, "n", 2000, "async requests submitted in the drain (and predicts of its baseline)")
	flag.DurationVar(&c.Latency, "latency", 20*time.Millisecond, "the drain and steady-state test model's latency")
	flag.DurationVar(&c.Timeout, "timeout", 0, "how long the drain's or the steady state's async requests may take to end (0: 1m plus 50ms a request)")
	flag.Float64Var(&c.SteadyRate, "steady-rate", 0, "async requests a second in the steady state (0: half the model's capacity)")
	flag.DurationVar(&c.SteadyDuration, "steady-duration", 5*time.Second, "how long the steady state sends")
	flag.StringVar(&c.Log, "log", "", "write the stack's log (Info and above) to this file")
	flag.Parse()
	if c.Clients < 1 || c.N < 1 || c.Duration <= 0 || c.SteadyDuration <= 0 || c.Warmup < 0 || c.Latency < 0 || c.Timeout < 0 || c.SteadyRate < 0 {
		fmt.Fprintln(os.Stderr, "bench/async: -clients and -n must be at least 1, -duration and -steady-duration positive, "+
			"-warmup, -latency, -timeout and -steady-rate not negative")
		os.Exit(2)
	}
	if c.SteadyRate == 0 {
		if c.Latency <= 0 {
			fmt.Fprintln(os.Stderr, "bench/async: with no -latency the model's capacity is unbounded; set -steady-rate")
			os.Exit(2)
		}
		c.SteadyRate = modelBound(c.Latency, drainReplicas*drainConcurrency) / 2
	}
	if c.Timeout == 0 {
		c.Timeout = time.Minute + time.Duration(c.N)*50*time.Millisecond
	}

	benchenv.Main("bench/async", func(ctx context.Context) error { return run(ctx, c) })
}

// bench is the running stack and what talks to it.
type bench struct {
	*benchenv.Env
	// hc sends the load: keep-alive connections, enough idle ones for every client.
	hc   *http.Client
	db   *sqlx.DB // the stack's database, read for the requests' rows
	logs *logCounter
}

func run(ctx context.Context, c config) (err error) {
	began := time.Now()
	var logs *logCounter
	env, err := benchenv.Start(ctx, benchenv.Options{
		TempPrefix: "modelplane-bench-async-", Database: "benchasync", Log: c.Log,
		Handler: func(next slog.Handler) slog.Handler { logs = newLogCounter(next); return logs },
		Stack: devstack.Options{
			// No rate limit and no practical open-request limit: the benchmark measures what the
			// stack sustains, not the limits.
			AsyncRateLimit: -1, MaxOpenAsync: 1 << 30,
		},
		Progress: progress,
	})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := env.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	db, err := store.Open(ctx, env.DBURL)
	if err != nil {
		return err
	}
	defer db.Close()
	// Nor the workspace's async_requests quota: the acceptance phase may leave more requests
	// open than its default allows.
	var workspaces []string
	if err := db.SelectContext(ctx, &workspaces, `SELECT id FROM workspaces`); err != nil {
		return err
	}
	for _, ws := range workspaces {
		q := store.DefaultQuotas()
		q.AsyncRequests = 1 << 30
		if err := store.SetWorkspaceQuotas(ctx, db, ws, q); err != nil {
			return err
		}
	}
	b := &bench{Env: env, db: db, logs: logs,
		hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * c.Clients}}}

	progress("deploying the drain and steady-state model (--latency %s, %d replicas)", c.Latency, drainReplicas)
	drainModel, drainDep, err := b.deploy(ctx, "drain", drainReplicas, drainConcurrency, "--latency", c.Latency.String())
	if err != nil {
		return err
	}
	progress("deploying the acceptance model (no latency, 1 replica)")
	accModel, accDep, err := b.deploy(ctx, "accept", 1, 1)
	if err != nil {
		return err
	}

	drain, err := b.drain(ctx, c, drainModel, drainDep)
	if err != nil {
		return err
	}
	steady, err := b.steady(ctx, c, drainModel, drainDep)
	if err != nil {
		return err
	}
	acc, err := b.acceptance(ctx, c, accModel, accDep)
	if err != nil {
		return err
	}
	report(c, acc, drain, steady, time.Since(began))
	if n := b.logs.total(); n > 0 {
		progress("the stack logged %d warnings or errors; the most frequent: %s", n, b.logs.top(5))
	}
	return nil
}

// deploy packages the test model, started with args, as a process-runtime model, creates a
// model named name from it, gives its deployment `replicas` replicas (min and max) and the
// concurrency target, and waits until it is ACTIVE with them all READY.
func (b *bench) deploy(ctx context.Context, name string, replicas, concurrency int, args ...string) (modelID, depID string, err error) {
	modelID, depID, err = b.CreateModel(ctx, name, args...)
	if err != nil {
		return "", "", err
	}
	if err := b.Autoscale(ctx, modelID, depID,
		map[string]any{"min_replica": replicas, "max_replica": replicas, "concurrency_target": concurrency}); err != nil {
		return "", "", err
	}
	_, err = b.WaitFor(ctx, modelID, depID, 100*time.Millisecond, settleTimeout, nil, fmt.Sprintf("ACTIVE with %d READY", replicas),
		func(d apiv1.DeploymentV1) bool {
			return d.Status == modelplane.DeploymentActive && d.ActiveReplicaCount == replicas
		})
	return modelID, depID, err
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench/async: "+format+"\n", args...)
}
