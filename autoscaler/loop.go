package autoscaler

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/internal/promutil"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// LeaderLockKey is the PostgreSQL advisory lock that elects the one active loop among all
// worker processes sharing a database. It is "mp-autosc" in ASCII; nothing else in modelplane
// takes a lock with this key.
const LeaderLockKey int64 = 0x6d702d6175746f73

// Defaults and timings of the loop.
const (
	// DefaultTick is how often the leader reads load and decides, when Options.Tick is zero.
	DefaultTick = time.Second
	// campaignInterval is how often a loop that is not leader tries to take the lock. A killed
	// leader's session ends with its connection, so another worker leads within about this.
	campaignInterval = time.Second
	// dbTimeout bounds each statement the loop runs (lock, ping, read), so a stuck database
	// shows as an error rather than a silent stall.
	dbTimeout = 5 * time.Second
	// updateTimeout bounds one Scale update. The loop waits only for the workflow to accept
	// the update, never for the scale to finish.
	updateTimeout = 5 * time.Second
	// resendAfter is how long a sent count is not sent again while the live count catches up
	// (replicas take a while to be placed and started).
	resendAfter = 30 * time.Second
	// rejectedBackoff is how long a deployment whose workflow refused a Scale (inactive, build
	// failed, deleted) or could not be reached is left alone before the next try.
	rejectedBackoff = time.Minute
	// failedBackoff is the same after an error that may pass soon (Temporal unavailable).
	failedBackoff = 5 * time.Second
	// maxConcurrentUpdates bounds the Scale updates in flight in one tick.
	maxConcurrentUpdates = 8
)

// Options configure a Loop.
type Options struct {
	// DB is the pool the loop reads from; the leader also keeps one of its connections for
	// the advisory lock.
	DB *sqlx.DB
	// Temporal sends Scale updates to Deployment workflows.
	Temporal client.Client
	Logger   *slog.Logger
	// Tick is how often the leader decides; zero means DefaultTick.
	Tick time.Duration
	// Registerer, when set, receives the loop's metrics: modelplane_autoscaler_leader (1 while
	// this loop leads), modelplane_autoscaler_scale_total{direction="up"|"down"} and
	// modelplane_autoscaler_scale_errors_total{kind="rejected"|"failed"}.
	Registerer prometheus.Registerer
}

// Loop is the autoscaler: while it holds the leader lock it reads every scalable
// deployment's load once per tick, runs Decide on each, and sends Scale to the Deployment
// workflow whose desired count changed.
type Loop struct {
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	leader  atomic.Bool
	metrics metrics

	// conn is the session that holds the leader lock, and on which the leader reads; nil when
	// not leading. Only Run's goroutine touches it and the fields below.
	conn  *sqlx.Conn
	track map[string]*tracked
}

// tracked is what the loop remembers about one deployment between ticks.
type tracked struct {
	state State
	// sent is the last count sent and when, so a slow start is not asked again every tick.
	sent   int
	sentAt time.Time
	// quietUntil is when a deployment whose last update failed may be tried again.
	quietUntil time.Time
	// held is how far its workspace's quota holds the deployment's scale-up (the count it
	// gets and the count it wants), logged when it changes; zero when not held.
	held [2]int
}

type metrics struct {
	leader prometheus.Gauge
	scales *prometheus.CounterVec
	errors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelplane_autoscaler_leader",
			Help: "1 while this process runs the autoscaler (holds the leader lock), else 0.",
		}),
		scales: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelplane_autoscaler_scale_total",
			Help: "Scale updates the autoscaler sent and Deployment workflows accepted, by direction.",
		}, []string{"direction"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelplane_autoscaler_scale_errors_total",
			Help: "Scale updates that were refused by the workflow (rejected) or not delivered (failed).",
		}, []string{"kind"}),
	}
	if reg != nil {
		m.leader = promutil.Register(reg, m.leader)
		m.scales = promutil.Register(reg, m.scales)
		m.errors = promutil.Register(reg, m.errors)
	}
	return m
}

// New returns a loop; Run starts it.
func New(opts Options) *Loop {
	if opts.Tick <= 0 {
		opts.Tick = DefaultTick
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Loop{
		opts:    opts,
		log:     log.With("component", "autoscaler"),
		now:     time.Now,
		metrics: newMetrics(opts.Registerer),
		track:   map[string]*tracked{},
	}
}

// IsLeader reports whether this loop holds the leader lock now.
func (l *Loop) IsLeader() bool { return l.leader.Load() }

// Run campaigns for leadership and, while leading, scales deployments every tick. It returns
// nil when ctx ends, after giving up the lock.
func (l *Loop) Run(ctx context.Context) error {
	defer l.resign("stopping")
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		start := time.Now()
		if l.conn == nil {
			l.campaign(ctx)
		} else if err := l.stillLeader(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			l.log.Warn("autoscaler lost its database session; giving up leadership", "err", err)
			l.resign("session lost")
		}
		wait := min(campaignInterval, l.opts.Tick)
		if l.conn != nil {
			wait = l.opts.Tick
			if err := l.tick(ctx, l.now()); err != nil && ctx.Err() == nil {
				l.log.Warn("autoscaler tick failed", "err", err)
			}
		}
		timer.Reset(max(0, wait-time.Since(start)))
	}
}

// campaign tries once to take the leader lock on a connection of its own, which it keeps
// while leading: a session advisory lock lives exactly as long as its session.
func (l *Loop) campaign(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	conn, err := l.opts.DB.Connx(ctx)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Debug("autoscaler cannot reach the database to campaign", "err", err)
		}
		return
	}
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, LeaderLockKey).Scan(&got); err != nil || !got {
		if err != nil {
			l.log.Debug("autoscaler campaign failed", "err", err)
			discard(conn) // the lock may have been taken before the error; never pool it
			return
		}
		_ = conn.Close()
		return
	}
	// The tick's query is one statement whose cost estimate grows with the deployments and
	// their samples until PostgreSQL JIT-compiles it, which costs more than the query
	// itself, every second. Older servers without the setting refuse it; that is harmless.
	_, _ = conn.ExecContext(ctx, `SET jit = off`)
	l.conn = conn
	l.leader.Store(true)
	l.metrics.leader.Set(1)
	l.log.Info("autoscaler is leader")
}

// stillLeader checks that the session holding the lock is alive.
func (l *Loop) stillLeader(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	return l.conn.PingContext(ctx)
}

// resign gives up the lock and its connection, and forgets the per-deployment state, which a
// later term rebuilds from the database.
func (l *Loop) resign(why string) {
	if l.conn == nil {
		return
	}
	// Unlock explicitly, then close the session rather than return it to the pool: a pooled
	// session that still held the lock (unlock failed) would keep every loop from leading.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, _ = l.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, LeaderLockKey)
	cancel()
	discard(l.conn)
	l.conn = nil
	l.leader.Store(false)
	l.metrics.leader.Set(0)
	clear(l.track)
	l.log.Info("autoscaler is no longer leader", "reason", why)
}

// discard closes conn's underlying session instead of returning it to the pool.
func discard(conn *sqlx.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// scaleOrder is one Scale update a tick sends.
type scaleOrder struct {
	target   store.AutoscalingTarget
	decision Decision
	err      error
	rejected bool
}

// Tick runs one tick now, as the leader does every Options.Tick, on a session of the pool
// when this loop does not lead: for a benchmark to time. Run is what serves.
func (l *Loop) Tick(ctx context.Context, now time.Time) error { return l.tick(ctx, now) }

// tick reads every target, decides, and sends the updates the decisions call for.
func (l *Loop) tick(ctx context.Context, now time.Time) error {
	var db sqlx.QueryerContext = l.opts.DB
	if l.conn != nil {
		db = l.conn
	}
	qctx, cancel := context.WithTimeout(ctx, dbTimeout)
	targets, err := store.AutoscalingTargets(qctx, db, now)
	cancel()
	if err != nil {
		return fmt.Errorf("read autoscaling targets: %w", err)
	}
	qctx, cancel = context.WithTimeout(ctx, dbTimeout)
	rooms, err := l.rooms(qctx, db)
	cancel()
	if err != nil {
		return err
	}
	qctx, cancel = context.WithTimeout(ctx, dbTimeout)
	rolling, err := store.RollingDeployments(qctx, db)
	cancel()
	if err != nil {
		return fmt.Errorf("read the deployments of rolling deploys: %w", err)
	}

	seen := make(map[string]bool, len(targets))
	var orders []*scaleOrder
	for _, t := range targets {
		if rolling[t.DeploymentID] {
			// A rolling deploy sets its replicas step by step; it is decided on afresh once
			// the promotion has ended.
			continue
		}
		seen[t.DeploymentID] = true
		if t.LiveReplicas == 0 && t.Status != modelplane.DeploymentScaledToZero {
			// Its last replica has stopped and its workflow has not yet recorded where it
			// ended (at zero after a promotion scaled it down, say). Deciding now would read
			// the load it had before as load at zero and start it again; the next tick sees
			// the status.
			continue
		}
		tr := l.track[t.DeploymentID]
		if tr == nil {
			tr = &tracked{sent: -1}
			l.track[t.DeploymentID] = tr
		}
		d := Decide(inputOf(t, now), &tr.state)
		d = l.fitQuota(d, t, tr, rooms)
		if d.Desired == t.LiveReplicas {
			tr.sent = -1 // caught up: a later change is new, whatever was sent before
			continue
		}
		if tr.sent == d.Desired && now.Sub(tr.sentAt) < resendAfter {
			continue // asked already; the replicas are on their way
		}
		if now.Before(tr.quietUntil) {
			continue
		}
		orders = append(orders, &scaleOrder{target: t, decision: d})
	}
	for id := range l.track {
		if !seen[id] {
			delete(l.track, id)
		}
	}

	l.send(ctx, orders)
	for _, o := range orders {
		l.record(o, l.track[o.target.DeploymentID], now)
	}
	return l.sweepAsync(ctx, db)
}

// rooms reads what each workspace may still start under its replica and GPU quotas; a
// workspace missing from the map runs nothing and has the default quotas.
func (l *Loop) rooms(ctx context.Context, db sqlx.QueryerContext) (map[string]*Room, error) {
	got, err := store.ReplicaRoom(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("read workspace quotas: %w", err)
	}
	out := make(map[string]*Room, len(got))
	for ws, r := range got {
		out[ws] = &Room{Replicas: r.Replicas, GPUs: r.GPUs}
	}
	return out, nil
}

// fitQuota holds the decision's scale-up to what the deployment's workspace has room for
// (FitQuota), taking it from the workspace's room, and logs a hold when it starts or changes.
func (l *Loop) fitQuota(d Decision, t store.AutoscalingTarget, tr *tracked, rooms map[string]*Room) Decision {
	room := rooms[t.WorkspaceID]
	if room == nil {
		q := store.DefaultQuotas()
		room = &Room{Replicas: q.Replicas, GPUs: q.GPUs}
		rooms[t.WorkspaceID] = room
	}
	fitted := FitQuota(d, t.LiveReplicas, t.GPUsPerReplica, room)
	held := [2]int{}
	if fitted.Desired != d.Desired {
		held = [2]int{fitted.Desired, d.Desired}
	}
	if held != tr.held && held != [2]int{} {
		l.log.Warn("autoscaler holds a scale-up at the workspace's quota", "deployment_id", t.DeploymentID,
			"model_id", t.ModelID, "workspace_id", t.WorkspaceID, "from", t.LiveReplicas, "to", fitted.Desired,
			"wanted", d.Desired, "reason", fitted.Reason)
	}
	tr.held = held
	return fitted
}

// Bounds of one tick's async sweep: requests started and expired, and workflows started.
const (
	maxSweepStarts    = 1024
	maxSweepExpiries  = 1024
	maxSweepWorkflows = 256
	// sweepWorkflowGrace is how long a request that wants its workflow is left to the
	// gateway that asked for it before the sweep starts it.
	sweepWorkflowGrace = 5 * time.Second
)

// sweepAsync moves the async queues where no gateway does: it starts the queued requests their
// deployments have room for (a replica became READY, say, or a notification was lost), fails
// the queues of deployments that will not serve, expires requests past their
// max_time_in_queue, and starts the workflows that requests want (a retry, a webhook, a
// gateway lost mid-attempt) and did not get.
func (l *Loop) sweepAsync(ctx context.Context, db sqlx.QueryerContext) error {
	qctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	starts, err := store.StartAsyncHeads(qctx, l.opts.DB, "", maxSweepStarts, "")
	if err != nil {
		return fmt.Errorf("start async queue heads: %w", err)
	}
	expired, n, err := store.ExpireDueAsync(qctx, db, maxSweepExpiries)
	if err != nil {
		return fmt.Errorf("expire async requests: %w", err)
	}
	if n > 0 {
		l.log.Info("async requests expired in their queues", "count", n)
	}
	lost, err := store.WantWorkflowsForLostAttempts(qctx, db)
	if err != nil {
		return fmt.Errorf("find async attempts of lost gateways: %w", err)
	}
	late, err := store.UnstartedAsyncRequests(qctx, db, time.Now().Add(-sweepWorkflowGrace), maxSweepWorkflows)
	if err != nil {
		return fmt.Errorf("read async requests that want their workflow: %w", err)
	}
	want := append(append(append(starts.Wanted, expired...), lost...), late...)
	for i, id := range want {
		if i >= maxSweepWorkflows {
			break // the next tick starts the rest
		}
		sctx, cancel := context.WithTimeout(ctx, updateTimeout)
		_, err := contract.StartAsyncRequest(sctx, l.opts.Temporal, id)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				l.log.Warn("starting async request workflow", "request_id", id, "err", err)
			}
			break // Temporal refuses: the next tick tries again
		}
	}
	return nil
}

// replicaStartGrace is how long a new replica counts as busy (see inputOf).
const replicaStartGrace = 10 * time.Second

// inputOf turns a target into Decide's input.
func inputOf(t store.AutoscalingTarget, now time.Time) Input {
	in := Input{
		Now: now, Current: t.LiveReplicas, Settings: t.Settings, Development: t.IsDevelopment,
		Samples: make([]Sample, len(t.Samples)), AsyncQueued: t.AsyncQueued,
	}
	if t.KeptAwake {
		// Someone is working on the deployment (modelplane watch): it stays up while they do.
		in.Settings.MinReplica = max(in.Settings.MinReplica, 1)
	}
	// A deployment at zero wakes for requests that came after it got there, never for the
	// load it had before: a promotion that moved its traffic away and scaled it to zero would
	// otherwise see it revived from the old samples still in the window. (Requests for it
	// now go through a gateway, which wakes it and whose samples show.)
	after := time.Time{}
	if t.ZeroSince != nil && t.LiveReplicas == 0 {
		after = *t.ZeroSince
	}
	in.Samples = in.Samples[:0]
	for _, s := range t.Samples {
		if !s.At.Before(after) {
			in.Samples = append(in.Samples, Sample{At: s.At, Concurrency: s.Concurrency, Requests: s.Requests})
		}
	}
	if t.LastRequestAt != nil && !t.LastRequestAt.Before(after) {
		in.LastRequest = *t.LastRequestAt
	}
	// A replica is started because someone asked for one: a push, a promotion, a manual
	// scale, or a wake for requests a gateway holds. Its start counts as a request that lasts
	// replicaStartGrace, so Decide keeps it for that long plus scale_down_delay before it
	// takes the deployment to zero: load samples reach the loop a second or two after the
	// requests that woke it, and a delay of 0 must not stop a replica before they do.
	if t.NewestReplicaAt != nil {
		if started := t.NewestReplicaAt.Add(replicaStartGrace); started.After(in.LastRequest) {
			in.LastRequest = started
		}
	}
	return in
}

// send delivers the orders concurrently and waits for each to be accepted, refused or to
// time out.
func (l *Loop) send(ctx context.Context, orders []*scaleOrder) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxConcurrentUpdates)
	for _, o := range orders {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			o.rejected, o.err = l.scale(ctx, o.target.DeploymentID, o.decision.Desired)
		}()
	}
	wg.Wait()
}

// scale sends one Scale update and waits until the workflow has accepted it. rejected is set
// when the workflow (or the server, for a workflow that is not running) refused it, as
// opposed to the update not getting through.
func (l *Loop) scale(ctx context.Context, deploymentID string, replicas int) (rejected bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, updateTimeout)
	defer cancel()
	h, err := l.opts.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   contract.DeploymentWorkflowID(deploymentID),
		UpdateName:   contract.UpdateScale,
		Args:         []any{contract.ScaleRequest{Replicas: replicas}},
		WaitForStage: client.WorkflowUpdateStageAccepted,
	})
	if err != nil {
		// No running workflow to scale (deleted, or never started) is as final as a refusal.
		var notFound *serviceerror.NotFound
		return errors.As(err, &notFound), err
	}
	// A rejected update comes back as an update already completed with the validator's
	// error. Get on an expired context answers at once: that error, nil when the scale
	// already finished, or a timeout error when it is accepted and still running.
	expired, cancelExpired := context.WithCancel(context.Background())
	cancelExpired()
	err = h.Get(expired, nil)
	var pending *client.WorkflowUpdateServiceTimeoutOrCanceledError
	if err == nil || errors.As(err, &pending) {
		return false, nil
	}
	return true, err
}

// record notes the outcome of an order and logs it.
func (l *Loop) record(o *scaleOrder, tr *tracked, now time.Time) {
	t, d := o.target, o.decision
	attrs := []any{"deployment_id", t.DeploymentID, "model_id", t.ModelID, "from", t.LiveReplicas,
		"to", d.Desired, "wanted", d.Wanted, "reason", d.Reason}
	if t.Schedule != nil {
		attrs = append(attrs, "schedule_id", t.Schedule.ID)
	}
	switch {
	case o.err == nil:
		tr.sent, tr.sentAt = d.Desired, now
		direction := "up"
		if d.Desired < t.LiveReplicas {
			direction = "down"
		}
		l.metrics.scales.WithLabelValues(direction).Inc()
		l.log.Info("autoscaler scaled deployment", attrs...)
	case o.rejected:
		tr.quietUntil = now.Add(rejectedBackoff)
		l.metrics.errors.WithLabelValues("rejected").Inc()
		l.log.Debug("deployment refused scale", append(attrs, "err", o.err)...)
	default:
		tr.quietUntil = now.Add(failedBackoff)
		l.metrics.errors.WithLabelValues("failed").Inc()
		l.log.Warn("scale update not delivered", append(attrs, "err", o.err)...)
	}
}
