// Package gateway is modelplane's inference gateway: it authenticates inference requests,
// resolves their target (an environment, the development deployment or a deployment ID) to a
// deployment by weight and to a READY replica by the power of two choices, and forwards them.
//
// Its routing table comes from PostgreSQL and is reloaded on every NOTIFY modelplane_routes
// and periodically as a safety net. Once a second it writes each deployment's average
// concurrency, requests, errors and latency histogram to load_samples (for the autoscaler and
// the canary analysis) and its in-flight count per replica to
// gateway_reports (so that a replica being drained is stopped only when no gateway can still
// send it anything).
//
// It also accepts async inference requests, recording each for its AsyncRequest workflow, and
// runs the predict attempts those workflows ask for (announced on NOTIFY
// modelplane_async_attempts), each the way a client's predict would go.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane/internal/keylimit"
	"github.com/modelplane/modelplane/store"
)

// Defaults of Options.
const (
	DefaultMaxBodyBytes    = 32 << 20
	DefaultUpstreamTimeout = 5 * time.Minute
	DefaultReloadEvery     = 10 * time.Second
	DefaultReportEvery     = time.Second
	// DefaultMaxAsyncAttempts bounds the async attempts one gateway runs at once.
	DefaultMaxAsyncAttempts = 256
	// DefaultAsyncRateLimit is how many async requests a workspace may submit per second
	// to one gateway, with bursts of twice as many.
	DefaultAsyncRateLimit = 200
	// DefaultMaxOpenAsync bounds a workspace's async requests queued or in progress.
	DefaultMaxOpenAsync = 50000
	// DefaultWebsocketDrainTimeout is how long a websocket open on a replica that started
	// draining may go on before the gateway closes it; below the deployment's drain timeout,
	// so that the close is the gateway's going-away frame rather than the replica stopping.
	DefaultWebsocketDrainTimeout = 2 * time.Minute
	// DefaultKeyCacheSize bounds the API keys a gateway keeps, of which a quarter at most are
	// unknown keys (remembered for two seconds).
	DefaultKeyCacheSize = 10000
	// DefaultFailedAuthRateLimit is how many failed authentications per second one client
	// address may make, in bursts of up to DefaultFailedAuthBurst, before it is answered 429.
	DefaultFailedAuthRateLimit = 20
	DefaultFailedAuthBurst     = 40
	// RetryAfter is what a 503 tells clients to wait.
	RetryAfter = 2 * time.Second
)

// Options configure a Gateway. DB and DatabaseURL are required.
type Options struct {
	DB *sqlx.DB
	// DatabaseURL is where the gateway LISTENs for route changes.
	DatabaseURL string
	Logger      *slog.Logger
	// Registerer receives the gateway's metrics; nil means a private registry.
	Registerer prometheus.Registerer
	// ID names this gateway in load samples and reports; empty means host name and PID.
	ID string
	// MaxBodyBytes bounds a request body (DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// UpstreamTimeout bounds a forwarded request, streamed answer included
	// (DefaultUpstreamTimeout).
	UpstreamTimeout time.Duration
	// ReloadEvery is the safety-net full reload period (DefaultReloadEvery).
	ReloadEvery time.Duration
	// ReportEvery is how often load samples and the in-flight report are written
	// (DefaultReportEvery).
	ReportEvery time.Duration
	// Temporal wakes deployments at zero; nil answers their requests 503.
	Temporal client.Client
	// ColdStartTimeout bounds how long a request waits for its deployment to wake, or for a
	// replica with room under the QUEUE_ON_FULL backpressure policy (DefaultColdStartTimeout);
	// MaxHeld bounds how many wait per deployment to wake (DefaultMaxHeld).
	ColdStartTimeout time.Duration
	MaxHeld          int
	// MaxAsyncAttempts bounds the async attempts this gateway runs at once
	// (DefaultMaxAsyncAttempts); a negative value runs none, for a gateway that only accepts.
	MaxAsyncAttempts int
	// AsyncRateLimit is how many async requests per second a workspace may submit to this
	// gateway, in bursts of up to twice as many (DefaultAsyncRateLimit); more are answered
	// 429. A negative value turns the limit off.
	AsyncRateLimit float64
	// MaxOpenAsync bounds a workspace's async requests queued or in progress
	// (DefaultMaxOpenAsync); more are answered 429.
	MaxOpenAsync int
	// AsyncOutputRetention is how long the output of an async request that ends here is kept
	// for reading with its status (store.DefaultAsyncOutputRetention).
	AsyncOutputRetention time.Duration
	// WebsocketDrainTimeout bounds how long a websocket stays open once its replica started
	// draining (DefaultWebsocketDrainTimeout); then the gateway closes it with 1001.
	WebsocketDrainTimeout time.Duration
	// WebhookAllowPrivate accepts webhook URLs whose host is a loopback, private, link-local
	// or otherwise non-public address, which are refused by default.
	WebhookAllowPrivate bool
	// KeyCacheSize bounds the API keys the gateway keeps in memory (DefaultKeyCacheSize); a
	// quarter of it at most holds unknown keys, so that a flood of made-up keys cannot evict
	// the keys clients use.
	KeyCacheSize int
	// FailedAuthRateLimit is how many failed authentications (answered 401) per second one
	// client address may make, in bursts of up to FailedAuthBurst (DefaultFailedAuthRateLimit,
	// DefaultFailedAuthBurst); more are answered 429 until the address slows down. Requests
	// whose key is accepted are never limited by it. The address is the connection's peer:
	// behind a proxy, every client shares the proxy's. A negative value turns the limit off.
	FailedAuthRateLimit float64
	FailedAuthBurst     int
	// MaxShadowCopies bounds the shadow copies this gateway has in flight
	// (DefaultMaxShadowCopies); a request chosen for a copy while that many are in flight is
	// not copied, and counts as dropped.
	MaxShadowCopies int
	// MetricsToken is the Bearer token Handler's /metrics asks for: its labels name every
	// workspace's models and deployments. Empty refuses every scrape.
	MetricsToken string
}

// Gateway serves inference requests. Run must be running for it to route anything.
type Gateway struct {
	opts Options
	// unstarted takes the async requests that want their workflow, for retryStarts.
	unstarted chan string
	// accepts records accepted async requests in batches.
	accepts acceptBatcher
	log     *slog.Logger
	table   atomic.Pointer[table]
	builder *builder
	// routesAt is the database time of the current table's snapshot, in Unix nanoseconds.
	routesAt atomic.Int64
	keys     *keyCache
	metrics  *metrics
	pool     *pool
	waker    *waker
	// limiter is the per-workspace async submission rate limit.
	limiter *keylimit.Limiter
	// failures is the per-address limit of failed authentications.
	failures *keylimit.Limiter
	// attempts runs the async attempts this gateway claimed.
	attempts *attemptRunner
	// reported is set once a gateway report is written: until then workers would take the
	// gateway for dead and give up on any attempt it ran.
	reported atomic.Bool
	// reloaded is signalled after every reload, for tests that wait for one.
	reloaded chan struct{}
	// run names this run of the gateway in the shadow figures it writes.
	run string
	// shadowSlots holds a token per shadow copy in flight.
	shadowSlots chan struct{}
}

// New checks the options and builds a gateway.
func New(opts Options) (*Gateway, error) {
	if opts.DB == nil || opts.DatabaseURL == "" {
		return nil, errors.New("gateway: DB and DatabaseURL are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.ID == "" {
		host, _ := os.Hostname()
		opts.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.UpstreamTimeout <= 0 {
		opts.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if opts.ReloadEvery <= 0 {
		opts.ReloadEvery = DefaultReloadEvery
	}
	if opts.ReportEvery <= 0 {
		opts.ReportEvery = DefaultReportEvery
	}
	if opts.ColdStartTimeout <= 0 {
		opts.ColdStartTimeout = DefaultColdStartTimeout
	}
	if opts.MaxHeld <= 0 {
		opts.MaxHeld = DefaultMaxHeld
	}
	if opts.MaxAsyncAttempts == 0 {
		opts.MaxAsyncAttempts = DefaultMaxAsyncAttempts
	}
	if opts.AsyncRateLimit == 0 {
		opts.AsyncRateLimit = DefaultAsyncRateLimit
	}
	if opts.WebsocketDrainTimeout <= 0 {
		opts.WebsocketDrainTimeout = DefaultWebsocketDrainTimeout
	}
	if opts.MaxOpenAsync <= 0 {
		opts.MaxOpenAsync = DefaultMaxOpenAsync
	}
	if opts.KeyCacheSize <= 0 {
		opts.KeyCacheSize = DefaultKeyCacheSize
	}
	if opts.FailedAuthRateLimit == 0 {
		opts.FailedAuthRateLimit = DefaultFailedAuthRateLimit
	}
	if opts.FailedAuthBurst <= 0 {
		opts.FailedAuthBurst = DefaultFailedAuthBurst
	}
	if opts.MaxShadowCopies <= 0 {
		opts.MaxShadowCopies = DefaultMaxShadowCopies
	}
	g := &Gateway{
		opts:      opts,
		log:       opts.Logger.With("component", "gateway"),
		builder:   newBuilder(),
		keys:      newKeyCache(opts.DB, opts.KeyCacheSize, time.Now),
		reloaded:  make(chan struct{}, 1),
		unstarted: make(chan string, unstartedBacklog),
		// A restarted gateway counts its shadow figures from zero, beside what it wrote before.
		run:         opts.ID + "@" + time.Now().UTC().Format(time.RFC3339Nano),
		shadowSlots: make(chan struct{}, opts.MaxShadowCopies),
	}
	g.metrics = newMetrics(opts.Registerer, g)
	g.pool = newPool()
	g.waker = newWaker(opts.Temporal, opts.MaxHeld)
	// Async requests per workspace, with a burst of two seconds' worth; failed
	// authentications per client address.
	g.limiter = keylimit.New(opts.AsyncRateLimit, int(2*opts.AsyncRateLimit))
	g.failures = keylimit.New(opts.FailedAuthRateLimit, opts.FailedAuthBurst)
	g.attempts = newAttemptRunner()
	g.accepts.g = g
	return g, nil
}

// ID is the name this gateway reports under.
func (g *Gateway) ID() string { return g.opts.ID }

// Ready reports whether the first routing table is loaded.
func (g *Gateway) Ready() bool { return g.table.Load() != nil }

// Run loads the routing table, keeps it current, writes load samples and reports, and runs
// async attempts until ctx ends. It returns only when ctx ends (once the attempts in flight
// were given back or finished), or at once if it cannot listen for changes.
func (g *Gateway) Run(ctx context.Context) error {
	l, err := store.Listen(g.opts.DatabaseURL, store.RoutesChannel, 100*time.Millisecond, 5*time.Second, g.log)
	if err != nil {
		return fmt.Errorf("gateway: listen for route changes: %w", err)
	}
	defer l.Close()
	var attempts <-chan string
	if g.opts.MaxAsyncAttempts > 0 {
		al, err := store.Listen(g.opts.DatabaseURL, store.AsyncAttemptsChannel, 100*time.Millisecond, 5*time.Second, g.log)
		if err != nil {
			return fmt.Errorf("gateway: listen for async attempts: %w", err)
		}
		defer al.Close()
		attempts = al.C
	}
	defer g.pool.closeIdle()
	// Reports go on until the attempts in flight have ended: a gateway without a fresh report
	// counts as dead, and its running attempts as lost.
	reportCtx, stopReports := context.WithCancel(context.WithoutCancel(ctx))
	reporterDone := make(chan struct{})
	go func() {
		defer close(reporterDone)
		g.reportLoop(reportCtx)
	}()
	attemptsDone := make(chan struct{})
	go func() {
		defer close(attemptsDone)
		g.runAttempts(ctx, attempts)
	}()
	startsDone := make(chan struct{})
	go func() {
		defer close(startsDone)
		g.retryStarts(ctx)
	}()
	defer func() {
		<-attemptsDone
		<-startsDone
		stopReports()
		<-reporterDone
	}()

	tick := time.NewTicker(g.opts.ReloadEvery)
	defer tick.Stop()
	retry := time.NewTimer(0) // the first load happens at once
	defer retry.Stop()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return nil
		case payload, ok := <-l.C:
			if !ok {
				return nil
			}
			g.notified(payload, l.C)
		case <-tick.C:
		case <-retry.C:
		}
		if err := g.reload(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			g.log.Warn("loading routes", "err", err, "retry_in", backoff)
			retry.Reset(backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// notified handles a notification and any others already queued, so a burst of changes costs
// one reload. Key changes only evict the key from the cache.
func (g *Gateway) notified(payload string, more <-chan string) {
	for {
		g.keys.notified(payload)
		select {
		case p, ok := <-more:
			if !ok {
				return
			}
			payload = p
		default:
			return
		}
	}
}

func (g *Gateway) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := store.LoadRoutes(ctx, g.opts.DB)
	if err != nil {
		return err
	}
	t := g.builder.build(r)
	g.table.Store(t)
	// Published after the table: a report that carries this time was taken after every
	// replica that left the READY set was marked draining.
	g.routesAt.Store(t.at.UnixNano())
	g.waker.reloaded()
	select {
	case g.reloaded <- struct{}{}:
	default:
	}
	// A replica that became READY makes room in its deployment's async queue.
	g.attempts.nudge()
	return nil
}

// reportLoop writes the in-flight report every ReportEvery and load samples once per wall
// clock second, and removes the report when the gateway stops, so drains stop waiting for it.
// Ticks start on a whole second, so each sample describes the second that just ended.
func (g *Gateway) reportLoop(ctx context.Context) {
	// The first report goes out as soon as the first table is in, before the alignment wait,
	// so that drains never take a serving gateway for an absent one.
	s := &sampler{second: time.Now().Truncate(time.Second)}
	for g.routesAt.Load() == 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := g.report(ctx, time.Now(), s); err != nil && ctx.Err() == nil {
		g.log.Warn("writing gateway report", "err", err)
	} else if err == nil {
		g.reported.Store(true)
	}
	now := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(now.Truncate(time.Second).Add(time.Second).Sub(now)):
	}
	tick := time.NewTicker(g.opts.ReportEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if err := g.writeShadowStats(cctx); err != nil {
				g.log.Warn("writing shadow figures", "err", err)
			}
			if err := store.DeleteGatewayReport(cctx, g.opts.DB, g.opts.ID); err != nil {
				g.log.Warn("removing gateway report", "err", err)
			}
			cancel()
			return
		case now := <-tick.C:
			if err := g.report(ctx, now, s); err != nil && ctx.Err() == nil {
				g.log.Warn("writing load samples", "err", err)
			} else if err == nil {
				g.reported.Store(true)
			}
		}
	}
}

// sampler remembers the second load was last sampled in.
type sampler struct{ second time.Time }

// report writes one batch: the in-flight count per replica and, when a new second began, a
// load sample per deployment that had traffic since the last one.
//
// The order matters for drains: routesAt is read before the in-flight counts. Any request
// that picks a replica counts itself there and then checks the replica's draining flag, which
// the table published at routesAt already set; so a request either shows in the counts read
// here or never reaches a draining replica.
func (g *Gateway) report(ctx context.Context, now time.Time, s *sampler) error {
	routesAt := g.routesAt.Load()
	if routesAt == 0 {
		return nil // nothing routed yet
	}
	inFlight, loads := g.builder.snapshot()
	var samples []store.LoadSample
	if sec := now.Truncate(time.Second); sec.After(s.second) {
		at := sec.Add(-time.Second).UTC()
		for id, l := range loads {
			p := l.sample(now)
			if p.avg == 0 && p.requests == 0 && p.inFlight == 0 && p.completed == 0 {
				continue
			}
			samples = append(samples, store.LoadSample{DeploymentID: id, GatewayID: g.opts.ID, At: at,
				Concurrency: p.avg, Requests: p.requests,
				Completed: p.completed, Errors: p.errors, LatencyBuckets: p.latency})
		}
		s.second = sec
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := store.WithTx(ctx, g.opts.DB, func(tx *sqlx.Tx) error {
		if err := store.InsertLoadSamples(ctx, tx, samples); err != nil {
			return err
		}
		return store.ReportGateway(ctx, tx, store.GatewayReport{
			GatewayID: g.opts.ID, RoutesAt: time.Unix(0, routesAt), InFlight: inFlight,
		})
	})
	if err != nil {
		return err
	}
	// Apart from the report: shadow figures are running totals that the next report writes
	// again if this write fails, and a failure must not hold up the report drains wait for.
	if err := g.writeShadowStats(ctx); err != nil && ctx.Err() == nil {
		g.log.Warn("writing shadow figures", "err", err)
	}
	return nil
}
