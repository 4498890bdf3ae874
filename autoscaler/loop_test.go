package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/temporaltest"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// The loop's tests share one fresh database, made on first use so that Decide's tests, which
// need none, run without PostgreSQL.
var (
	dbOnce sync.Once
	dbURL  string
	dbErr  error
	dropDB func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	if dropDB != nil {
		dropDB()
	}
	os.Exit(code)
}

func openDB(t *testing.T) *sqlx.DB {
	t.Helper()
	dbOnce.Do(func() {
		dbURL, dropDB, dbErr = pgtest.Create("autoscaler")
		if dbErr == nil {
			dbErr = pgtest.Migrate(dbURL)
		}
	})
	require.NoError(t, dbErr)
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeTemporal records Scale updates; every other method of client.Client panics (nil).
type fakeTemporal struct {
	client.Client
	mu     sync.Mutex
	calls  []scaleCall
	starts []string
	// refuse makes the update to these workflows come back rejected by the validator.
	refuse map[string]bool
}

type scaleCall struct {
	WorkflowID string
	Replicas   int
}

func (f *fakeTemporal) UpdateWorkflow(_ context.Context, opts client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if opts.UpdateName != contract.UpdateScale || opts.WaitForStage != client.WorkflowUpdateStageAccepted || len(opts.Args) != 1 {
		return nil, fmt.Errorf("unexpected update %q, stage %v, args %v", opts.UpdateName, opts.WaitForStage, opts.Args)
	}
	req, ok := opts.Args[0].(contract.ScaleRequest)
	if !ok {
		return nil, fmt.Errorf("unexpected argument %T", opts.Args[0])
	}
	f.calls = append(f.calls, scaleCall{WorkflowID: opts.WorkflowID, Replicas: req.Replicas})
	h := fakeHandle{id: opts.WorkflowID}
	if f.refuse[opts.WorkflowID] {
		h.err = errors.New("deployment is INACTIVE; activate it before scaling")
	}
	return h, nil
}

// takeCalls returns the calls made since the last take that went to the given deployments.
// ExecuteWorkflow records the start of an AsyncRequest workflow.
func (f *fakeTemporal) ExecuteWorkflow(_ context.Context, opts client.StartWorkflowOptions, workflow any, _ ...any) (client.WorkflowRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if workflow != contract.AsyncRequestWorkflowType {
		return nil, fmt.Errorf("unexpected workflow %v", workflow)
	}
	f.starts = append(f.starts, opts.ID)
	return nil, nil
}

// takeStarts returns the workflows started since the last call.
func (f *fakeTemporal) takeStarts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.starts
	f.starts = nil
	return out
}

func (f *fakeTemporal) takeCalls(deploymentIDs ...string) []scaleCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := map[string]bool{}
	for _, id := range deploymentIDs {
		want[contract.DeploymentWorkflowID(id)] = true
	}
	var out []scaleCall
	for _, c := range f.calls {
		if want[c.WorkflowID] {
			out = append(out, c)
		}
	}
	f.calls = nil
	return out
}

// fakeHandle is an update handle whose outcome is already known, as the SDK returns for an
// update the workflow rejected (err) or one that completed before the call returned.
type fakeHandle struct {
	id  string
	err error
}

func (h fakeHandle) WorkflowID() string             { return h.id }
func (h fakeHandle) RunID() string                  { return "" }
func (h fakeHandle) UpdateID() string               { return "" }
func (h fakeHandle) Get(context.Context, any) error { return h.err }

// newModel makes a model in a workspace of its own. It also retires every deployment the
// package's earlier tests left, so that a tick sees only the test's own.
func newModel(t *testing.T, db *sqlx.DB) store.Model {
	t.Helper()
	ctx := context.Background()
	_, err := db.ExecContext(ctx, `UPDATE deployments SET deleted_at = now() WHERE deleted_at IS NULL`)
	require.NoError(t, err)
	ws, _, err := store.EnsureWorkspace(ctx, db, "ws-"+modelplane.NewID(6))
	require.NoError(t, err)
	m, err := store.CreateModel(ctx, db, ws.ID, "echo")
	require.NoError(t, err)
	return m
}

// newDeployment makes a deployment in status with settings s and the given READY replicas.
func newDeployment(t *testing.T, db *sqlx.DB, m store.Model, status string, s settings.AutoscalingSettings, ready int) store.Deployment {
	t.Helper()
	ctx := context.Background()
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, AutoscalingSettings: s})
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `UPDATE deployments SET status = $2 WHERE id = $1`, d.ID, status)
	require.NoError(t, err)
	addReady(t, db, d.ID, ready)
	return d
}

func addReady(t *testing.T, db *sqlx.DB, deploymentID string, n int) {
	t.Helper()
	ctx := context.Background()
	for range n {
		r, _, err := store.CreateReplica(ctx, db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: deploymentID})
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, `UPDATE replicas SET state = 'READY', ready_at = now() WHERE id = $1`, r.ID)
		require.NoError(t, err)
	}
}

// load writes, for each second in (now-window, now], perGateway concurrency from each of two
// gateways, with one request each.
func load(t *testing.T, db *sqlx.DB, deploymentID string, now time.Time, window int, perGateway float64) {
	t.Helper()
	var samples []store.LoadSample
	for s := range window {
		at := now.Add(-time.Duration(s) * time.Second)
		for _, g := range []string{"gw-a", "gw-b"} {
			samples = append(samples, store.LoadSample{DeploymentID: deploymentID, GatewayID: g, At: at,
				Concurrency: perGateway, Requests: 1})
		}
	}
	require.NoError(t, store.InsertLoadSamples(context.Background(), db, samples))
}

// linear settings ask for one replica per unit of concurrency, over a 10 s window.
func linear(maxReplica int) settings.AutoscalingSettings {
	return settings.AutoscalingSettings{MinReplica: 0, MaxReplica: maxReplica, AutoscalingWindow: 10,
		ScaleDownDelay: 300, ConcurrencyTarget: 1, TargetUtilizationPercentage: 100, MaxScaleDownRate: 50}
}

func TestTick_SendsScaleWhenTheDecisionChangesAndNotOtherwise(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	busy := newDeployment(t, db, m, "ACTIVE", linear(8), 1)
	asleep := newDeployment(t, db, m, "SCALED_TO_ZERO", linear(8), 0)
	now := time.Now().UTC().Truncate(time.Second)
	at := func(s int) time.Time { return now.Add(time.Duration(s) * time.Second) }
	load(t, db, busy.ID, at(60), 70, 1.5) // 3 in flight from 10 s ago to a minute on: 3 replicas

	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger(), Registerer: prometheus.NewRegistry()})
	ctx := context.Background()

	require.NoError(t, l.tick(ctx, now))
	require.Equal(t, []scaleCall{{contract.DeploymentWorkflowID(busy.ID), 3}}, tc.takeCalls(busy.ID, asleep.ID),
		"a deployment at 1 whose load asks for 3 gets one Scale to 3; the one asleep gets nothing")

	require.NoError(t, l.tick(ctx, at(1)))
	require.NoError(t, l.tick(ctx, at(2)))
	require.Empty(t, tc.takeCalls(busy.ID, asleep.ID), "the same decision while the replicas start is not sent again")

	addReady(t, db, busy.ID, 2)
	require.NoError(t, l.tick(ctx, at(3)))
	require.Empty(t, tc.takeCalls(busy.ID, asleep.ID), "nothing to send once the live count is the desired one")

	load(t, db, busy.ID, at(60), 41, 2.5) // 5 in flight from +20 s on
	require.NoError(t, l.tick(ctx, at(29)))
	require.Equal(t, []scaleCall{{contract.DeploymentWorkflowID(busy.ID), 5}}, tc.takeCalls(busy.ID, asleep.ID),
		"a new decision is sent at once")

	for s := 30; s < 29+resendSeconds(); s++ {
		require.NoError(t, l.tick(ctx, at(s)))
		require.Empty(t, tc.takeCalls(busy.ID, asleep.ID), "tick at +%ds: same decision, and the idle deployment", s)
	}
	require.Equal(t, 2.0, value(t, l.metrics.scales.WithLabelValues("up")), "modelplane_autoscaler_scale_total{direction=up}")
}

func TestTick_ResendsAnUnmetCountAfterAWhile(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	d := newDeployment(t, db, m, "ACTIVE", linear(8), 1)
	now := time.Now().UTC().Truncate(time.Second)
	load(t, db, d.ID, now.Add(time.Minute), 70, 1) // 2 in flight for the next minute

	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger()})
	ctx := context.Background()
	var sent []int
	for s := 0; s <= 35; s++ {
		require.NoError(t, l.tick(ctx, now.Add(time.Duration(s)*time.Second)))
		for _, c := range tc.takeCalls(d.ID) {
			sent = append(sent, s)
			require.Equal(t, 2, c.Replicas)
		}
	}
	require.Equal(t, []int{0, resendSeconds()}, sent, "seconds at which Scale to 2 was sent while the live count stayed 1")
}

func resendSeconds() int { return int(resendAfter / time.Second) }

func TestTick_RefusedScaleIsNotRetriedAtOnce(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	d := newDeployment(t, db, m, "ACTIVE", linear(8), 1)
	now := time.Now().UTC().Truncate(time.Second)
	load(t, db, d.ID, now.Add(2*time.Minute), 130, 2) // 4 in flight for two minutes

	tc := &fakeTemporal{refuse: map[string]bool{contract.DeploymentWorkflowID(d.ID): true}}
	reg := prometheus.NewRegistry()
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger(), Registerer: reg})
	ctx := context.Background()
	var sent []int
	for s := 0; s <= 65; s++ {
		require.NoError(t, l.tick(ctx, now.Add(time.Duration(s)*time.Second)))
		for range tc.takeCalls(d.ID) {
			sent = append(sent, s)
		}
	}
	backoff := int(rejectedBackoff / time.Second)
	require.Equal(t, []int{0, backoff}, sent, "seconds at which a refused Scale was tried")
	require.Equal(t, 2.0, value(t, l.metrics.errors.WithLabelValues("rejected")))
	require.Equal(t, 0.0, value(t, l.metrics.scales.WithLabelValues("up")), "a refused scale is not counted as one")
}

func TestTick_NewReplicaGetsTheDelayBeforeZero(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	ctx := context.Background()
	fresh := newDeployment(t, db, m, "WAKING_UP", linear(1), 1)
	stale := newDeployment(t, db, m, "ACTIVE", linear(1), 1)
	_, err := db.ExecContext(ctx, `UPDATE replicas SET created_at = now() - interval '10 minutes' WHERE deployment_id = $1`, stale.ID)
	require.NoError(t, err)

	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger()})
	require.NoError(t, l.tick(ctx, time.Now()))
	require.Equal(t, []scaleCall{{contract.DeploymentWorkflowID(stale.ID), 0}}, tc.takeCalls(fresh.ID, stale.ID),
		"a replica started within scale_down_delay (a wake whose requests the gateway still holds) stays; "+
			"one idle for longer than the delay goes to zero")
}

func TestTick_DeploymentAtZeroWakesOnlyForLoadAfterIt(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	ctx := context.Background()
	// Busy until a promotion moved its traffic away and scaled it to zero, just now.
	d := newDeployment(t, db, m, "SCALED_TO_ZERO", linear(8), 0)
	now := time.Now().UTC().Truncate(time.Second)
	load(t, db, d.ID, now.Add(-2*time.Second), 8, 2)
	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger()})
	require.NoError(t, l.tick(ctx, now.Add(time.Second)))
	require.Empty(t, tc.takeCalls(d.ID), "the load it had before it went to zero does not revive it")

	load(t, db, d.ID, now.Add(3*time.Second), 1, 2)
	require.NoError(t, l.tick(ctx, now.Add(4*time.Second)))
	require.Equal(t, []scaleCall{{contract.DeploymentWorkflowID(d.ID), 1}}, tc.takeCalls(d.ID),
		"requests after it went to zero scale it up")
}

func TestTick_DeploymentWhoseLastReplicaJustStoppedIsNotRevived(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	ctx := context.Background()
	// A promotion scaled it down: its replica has stopped, its status is not written yet.
	d := newDeployment(t, db, m, "ACTIVE", linear(8), 0)
	now := time.Now().UTC().Truncate(time.Second)
	load(t, db, d.ID, now.Add(-2*time.Second), 8, 2)
	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger()})
	require.NoError(t, l.tick(ctx, now.Add(time.Second)))
	require.Empty(t, tc.takeCalls(d.ID), "the load it had before its replicas stopped does not start it again")
}

// startLoop runs a loop on a database of its own until the returned cancel is called; cancel
// waits for Run to return.
func startLoop(t *testing.T, name string) (*Loop, *sqlx.DB, func()) {
	t.Helper()
	db := openDB(t)
	l := New(Options{DB: db, Temporal: &fakeTemporal{}, Logger: discardLogger().With("loop", name),
		Tick: 100 * time.Millisecond, Registerer: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Errorf("loop %s did not stop within 10s of its context ending", name)
		}
	})
	t.Cleanup(stop)
	return l, db, stop
}

// leaders returns the positions of the loops that say they lead.
func leaders(loops ...*Loop) []int {
	var out []int
	for i, l := range loops {
		if l.IsLeader() {
			out = append(out, i)
		}
	}
	return out
}

func requireOneLeader(t *testing.T, within time.Duration, loops ...*Loop) *Loop {
	t.Helper()
	require.Eventually(t, func() bool { return len(leaders(loops...)) == 1 }, within, 20*time.Millisecond,
		"expected exactly one of %d loops to lead within %v", len(loops), within)
	// Leadership is stable: no second leader shows up, the first does not flap.
	first := leaders(loops...)[0]
	for range 10 {
		time.Sleep(30 * time.Millisecond)
		require.Equal(t, []int{first}, leaders(loops...), "leading loops; leadership changed with nothing happening")
	}
	return loops[first]
}

// lockHolder is the backend PID holding the leader lock, 0 when none.
func lockHolder(t *testing.T, db *sqlx.DB) int {
	t.Helper()
	var pid int
	err := db.GetContext(context.Background(), &pid, `
		SELECT COALESCE(max(pid), 0) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1
		  AND ((classid::bigint << 32) | objid::bigint) = $1`, LeaderLockKey)
	require.NoError(t, err)
	return pid
}

func TestLeadership_OneLeaderAndFailoverWhenItStops(t *testing.T) {
	a, _, stopA := startLoop(t, "a")
	b, _, stopB := startLoop(t, "b")
	loops := map[*Loop]func(){a: stopA, b: stopB}

	leader := requireOneLeader(t, 5*time.Second, a, b)
	follower := a
	if leader == a {
		follower = b
	}
	require.Equal(t, 1.0, value(t, leader.metrics.leader), "the leader's modelplane_autoscaler_leader")
	require.Equal(t, 0.0, value(t, follower.metrics.leader), "the follower's modelplane_autoscaler_leader")

	loops[leader]() // the leader's worker stops (its context ends)
	require.False(t, leader.IsLeader(), "a stopped loop must not say it leads")
	require.Eventually(t, follower.IsLeader, 5*time.Second, 20*time.Millisecond,
		"the other loop must take over within a few seconds of the leader stopping")
	require.Equal(t, 0.0, value(t, leader.metrics.leader), "a stopped loop's modelplane_autoscaler_leader")
}

func TestLeadership_FailoverWhenTheLeadersSessionDies(t *testing.T) {
	a, db, _ := startLoop(t, "a")
	b, _, _ := startLoop(t, "b")
	requireOneLeader(t, 5*time.Second, a, b)
	holder := lockHolder(t, db)
	require.NotZero(t, holder, "the leader's session must hold the advisory lock")

	// A killed worker process: its session ends, and with it the lock.
	_, err := db.ExecContext(context.Background(), `SELECT pg_terminate_backend($1)`, holder)
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		h := lockHolder(t, db)
		return h != 0 && h != holder && len(leaders(a, b)) == 1
	}, 5*time.Second, 20*time.Millisecond, "a loop on a new session must lead within a few seconds of the old session dying")
	// Until its next ping the old leader may still believe it leads; it cannot act on it, as
	// it reads on the dead session. Within a tick it knows.
	time.Sleep(300 * time.Millisecond)
	requireOneLeader(t, time.Second, a, b)
}

// value reads a gauge's or counter's current value.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// scaleProbe stands in for the Deployment workflow: its Scale validator refuses more than
// five replicas, and its handler takes a minute, so an accepted update is still running when
// the loop moves on.
func scaleProbe(ctx workflow.Context) error {
	err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateScale,
		func(ctx workflow.Context, req contract.ScaleRequest) (int, error) {
			return req.Replicas, workflow.Sleep(ctx, time.Minute)
		},
		workflow.UpdateHandlerOptions{Validator: func(req contract.ScaleRequest) error {
			if req.Replicas > 5 {
				return fmt.Errorf("at most 5 replicas, not %d", req.Replicas)
			}
			return nil
		}})
	if err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return false })
}

func TestScale_TellsAcceptedFromRefusedOnRealServer(t *testing.T) {
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	tc := ts.GetDefaultClient()
	ts.NewWorker("autoscaler-test", func(r sdkworker.Registry) { r.RegisterWorkflow(scaleProbe) })
	ctx := context.Background()
	_, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: contract.DeploymentWorkflowID("probe123"), TaskQueue: "autoscaler-test"}, scaleProbe)
	require.NoError(t, err)
	l := New(Options{Temporal: tc, Logger: discardLogger()})

	start := time.Now()
	rejected, err := l.scale(ctx, "probe123", 3)
	require.NoError(t, err, "an accepted update whose handler is still running is a success")
	require.False(t, rejected)
	require.Less(t, time.Since(start), updateTimeout, "the loop must not wait for the scale to finish")

	rejected, err = l.scale(ctx, "probe123", 9)
	require.Error(t, err)
	require.True(t, rejected, "a validator's refusal is a rejection: %v", err)

	rejected, err = l.scale(ctx, "nowf0000", 1)
	require.Error(t, err)
	require.True(t, rejected, "a deployment without a running workflow is a rejection: %v", err)
}

func TestTick_StartsTheAsyncQueueHeadsItHasRoomFor(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	settings := linear(8)
	settings.ConcurrencyTarget = 2
	d := newDeployment(t, db, m, "ACTIVE", settings, 1) // room for 2 at a time
	asleep := newDeployment(t, db, m, "SCALED_TO_ZERO", linear(8), 0)
	ctx := context.Background()
	low := enqueue(t, db, m, d.ID, 2, "")
	first := enqueue(t, db, m, d.ID, 1, "")
	second := enqueue(t, db, m, d.ID, 1, "")
	urgent := enqueue(t, db, m, d.ID, 0, "")
	sleeper := enqueue(t, db, m, asleep.ID, 0, "")

	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger()})
	now := time.Now().UTC().Truncate(time.Second)
	require.NoError(t, l.tick(ctx, now))
	for _, id := range []string{urgent, first} {
		require.Equal(t, modelplane.AsyncInProgress, asyncStatus(t, db, id).Status, "the two heads in priority order, then age")
		a, err := store.GetAsyncAttempt(ctx, db, id, 1)
		require.NoError(t, err, "its first attempt is recorded for the gateways")
		require.Equal(t, modelplane.AttemptPending, a.State)
	}
	for _, id := range []string{second, low, sleeper} {
		require.Equal(t, modelplane.AsyncQueued, asyncStatus(t, db, id).Status, "no room for %s", id)
	}
	require.Equal(t, []scaleCall{{contract.DeploymentWorkflowID(asleep.ID), 1}}, tc.takeCalls(asleep.ID),
		"a queued request wakes the deployment at zero")
	require.NotContains(t, tc.takeStarts(), contract.AsyncWorkflowID(urgent), "a started request needs no workflow")

	_, err := db.ExecContext(ctx, `UPDATE async_requests SET status = 'SUCCEEDED' WHERE id = $1`, urgent)
	require.NoError(t, err)
	require.NoError(t, l.tick(ctx, now.Add(time.Second)))
	require.Equal(t, modelplane.AsyncInProgress, asyncStatus(t, db, second).Status, "one ended leaves room for one: the oldest left of priority 1")
	require.Equal(t, modelplane.AsyncQueued, asyncStatus(t, db, low).Status)
}

func TestTick_ExpiresQueuedRequestsAndStartsTheWorkflowsRequestsWant(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	asleep := newDeployment(t, db, m, "SCALED_TO_ZERO", linear(8), 0)
	ctx := context.Background()
	hooked := enqueue(t, db, m, asleep.ID, 1, "https://example.com/hook")
	silent := enqueue(t, db, m, asleep.ID, 1, "")
	waiting := enqueue(t, db, m, asleep.ID, 1, "")
	_, err := db.ExecContext(ctx, `UPDATE async_requests SET expires_at = now() WHERE id IN ($1, $2)`, hooked, silent)
	require.NoError(t, err)
	// A request whose gateway asked for its workflow a while ago and did not get it.
	forgotten := enqueue(t, db, m, asleep.ID, 1, "")
	_, err = db.ExecContext(ctx, `UPDATE async_requests SET status = 'IN_PROGRESS', workflow_wanted_at = now() - interval '1 minute' WHERE id = $1`, forgotten)
	require.NoError(t, err)

	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger()})
	require.NoError(t, l.tick(ctx, time.Now().UTC().Truncate(time.Second)))
	require.Equal(t, modelplane.AsyncExpired, asyncStatus(t, db, hooked).Status)
	require.Equal(t, modelplane.AsyncExpired, asyncStatus(t, db, silent).Status)
	require.Equal(t, modelplane.AsyncQueued, asyncStatus(t, db, waiting).Status, "one with time left waits")
	started := tc.takeStarts()
	require.Subset(t, started, []string{contract.AsyncWorkflowID(hooked), contract.AsyncWorkflowID(forgotten)},
		"the expired request's webhook and the forgotten request want their workflows")
	require.NotContains(t, started, contract.AsyncWorkflowID(silent), "an expired request without a webhook needs none")
}

// enqueue records a queued async request for the deployment and returns its ID.
func enqueue(t *testing.T, db *sqlx.DB, m store.Model, dep string, priority int, webhook string) string {
	t.Helper()
	r, err := store.InsertAsyncRequest(context.Background(), db, store.NewAsyncRequest{WorkspaceID: m.WorkspaceID, ModelID: m.ID,
		DeploymentID: dep, Priority: priority, MaxTimeInQueueSeconds: 600, WebhookEndpoint: webhook,
		RetryConfig: modelplane.DefaultRetryConfig(), ModelInput: []byte(`{}`)}, 1000)
	require.NoError(t, err)
	return r.ID
}

func asyncStatus(t *testing.T, db *sqlx.DB, id string) store.AsyncRequest {
	t.Helper()
	r, err := store.GetAsyncRequest(context.Background(), db, "", id)
	require.NoError(t, err)
	return r
}

func TestTick_LeavesARollingDeploysDeploymentsAlone(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	floor := linear(8)
	floor.MinReplica = 4
	prev := newDeployment(t, db, m, "ACTIVE", floor, 2) // half way through: its floor would ask for 4
	cand := newDeployment(t, db, m, "ACTIVE", linear(8), 2)
	ctx := context.Background()
	rolling := settings.DefaultPromotionSettings()
	rolling.RollingDeploy = true
	id := modelplane.NewID(8)
	_, err := store.CreatePromotion(ctx, db, store.NewPromotion{ID: id, ModelID: m.ID, Environment: modelplane.ProductionEnvironment,
		SourceDeploymentID: cand.ID, PreviousDeploymentID: &prev.ID, Settings: rolling, WorkflowID: "promotion:" + m.ID})
	require.NoError(t, err)
	require.NoError(t, store.SetPromotionCandidate(ctx, db, id, cand.ID))

	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger()})
	now := time.Now().UTC().Truncate(time.Second)
	require.NoError(t, l.tick(ctx, now))
	require.Empty(t, tc.takeCalls(prev.ID, cand.ID), "neither deployment of a rolling deploy is scaled")

	require.NoError(t, store.SetPromotionStatus(ctx, db, id, modelplane.PromotionCanceled, 0, "", true))
	require.NoError(t, l.tick(ctx, now.Add(time.Second)))
	require.Equal(t, []scaleCall{{contract.DeploymentWorkflowID(prev.ID), 4}}, tc.takeCalls(prev.ID),
		"once the promotion ended, the floor applies again")
}
