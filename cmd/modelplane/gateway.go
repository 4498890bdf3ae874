package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/internal/temporalclient"
	"github.com/modelplane/modelplane/internal/tlsfiles"
)

const defaultGatewayListen = ":8081"

type gatewayConfig struct {
	serverConfig
	ID               string
	MaxBodyBytes     int64
	UpstreamTimeout  time.Duration
	ColdStartTimeout time.Duration
	MaxHeld          int
	// WebsocketDrainTimeout bounds a websocket on a draining replica.
	WebsocketDrainTimeout time.Duration
	// KeyCacheSize, FailedAuthRateLimit and FailedAuthBurst bound what unknown API keys cost.
	KeyCacheSize        int
	FailedAuthRateLimit float64
	FailedAuthBurst     int
	// MaxShadowCopies bounds the copies to shadow deployments in flight.
	MaxShadowCopies int
	async           asyncGatewayConfig
	// OutputRetention is how long the output of an async request that ends here is kept.
	OutputRetention time.Duration
	// PprofAddr, when set, serves net/http/pprof there, for profiling under load.
	PprofAddr string
}

// asyncGatewayConfig are the gateway's async inference limits, shared by gateway and dev.
type asyncGatewayConfig struct {
	RateLimit           float64
	MaxOpen             int
	MaxAttempts         int
	WebhookAllowPrivate bool
}

// asyncGatewayFlags adds the flags of asyncGatewayConfig.
func asyncGatewayFlags(cmd *cobra.Command, c *asyncGatewayConfig) {
	f := cmd.Flags()
	f.Float64Var(&c.RateLimit, "async-rate-limit", envFloat("MODELPLANE_ASYNC_RATE_LIMIT", gateway.DefaultAsyncRateLimit), "async_predict requests per second per workspace and gateway, in bursts of twice as many; more are 429; negative: no limit (MODELPLANE_ASYNC_RATE_LIMIT)")
	f.IntVar(&c.MaxOpen, "async-max-open", envInt("MODELPLANE_ASYNC_MAX_OPEN", gateway.DefaultMaxOpenAsync), "async requests a workspace may have queued or in progress; more are 429 (MODELPLANE_ASYNC_MAX_OPEN)")
	f.IntVar(&c.MaxAttempts, "async-max-running", envInt("MODELPLANE_ASYNC_MAX_RUNNING", gateway.DefaultMaxAsyncAttempts), "async predictions this gateway runs at once; negative: none (MODELPLANE_ASYNC_MAX_RUNNING)")
	webhookAllowPrivateFlag(cmd, &c.WebhookAllowPrivate)
}

// check refuses settings that make no sense.
func (c asyncGatewayConfig) check() error {
	if c.RateLimit == 0 {
		return errors.New("--async-rate-limit must not be 0: give a rate, or a negative value for no limit")
	}
	if c.MaxOpen <= 0 {
		return fmt.Errorf("--async-max-open must be positive, got %d", c.MaxOpen)
	}
	if c.MaxAttempts == 0 {
		return errors.New("--async-max-running must not be 0: give a count, or a negative value to run none here")
	}
	return nil
}

// webhookAllowPrivateFlag adds --webhook-allow-private, for the processes that check or send
// webhooks.
func webhookAllowPrivateFlag(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "webhook-allow-private", envBool("MODELPLANE_WEBHOOK_ALLOW_PRIVATE", false), "let webhooks go to loopback, private and link-local addresses, which are refused otherwise (MODELPLANE_WEBHOOK_ALLOW_PRIVATE)")
}

func newGatewayCmd(logger func() *slog.Logger) *cobra.Command {
	var c gatewayConfig
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the inference gateway (predict routes, /healthz, /readyz, /metrics)",
		Long: `Serves the inference paths (/models/{model_id}/production/predict,
.../environments/{env}/predict, .../development/predict, .../deployment/{id}/predict, their
sync/{path} passthrough and websocket, and the same under Host: model-{model_id}.<domain>)
with the API's keys. The routing table comes from
PostgreSQL and follows every change within milliseconds; /readyz answers 200 once it is loaded.
Run as many gateways as you like behind a load balancer.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.UpstreamTimeout <= 0 {
				return fmt.Errorf("--upstream-timeout must be positive, got %s", c.UpstreamTimeout)
			}
			if c.MaxBodyBytes <= 0 {
				return fmt.Errorf("--max-body-bytes must be positive, got %d", c.MaxBodyBytes)
			}
			if c.ColdStartTimeout <= 0 {
				return fmt.Errorf("--cold-start-timeout must be positive, got %s", c.ColdStartTimeout)
			}
			if c.WebsocketDrainTimeout <= 0 {
				return fmt.Errorf("--websocket-drain-timeout must be positive, got %s", c.WebsocketDrainTimeout)
			}
			if c.MaxHeld <= 0 {
				return fmt.Errorf("--max-held-requests must be positive, got %d", c.MaxHeld)
			}
			if c.KeyCacheSize <= 0 {
				return fmt.Errorf("--key-cache-size must be positive, got %d", c.KeyCacheSize)
			}
			if c.MaxShadowCopies <= 0 {
				return fmt.Errorf("--max-shadow-copies must be positive, got %d", c.MaxShadowCopies)
			}
			if c.FailedAuthRateLimit == 0 {
				return errors.New("--failed-auth-rate-limit must not be 0: give a rate, or a negative value for no limit")
			}
			if c.FailedAuthBurst <= 0 {
				return fmt.Errorf("--failed-auth-burst must be positive, got %d", c.FailedAuthBurst)
			}
			if c.OutputRetention <= 0 {
				return fmt.Errorf("--async-output-retention must be positive, got %s", c.OutputRetention)
			}
			if err := c.async.check(); err != nil {
				return err
			}
			if err := checkTimeouts(c.Timeouts); err != nil {
				return err
			}
			cert, err := c.TLS.Load()
			if err != nil {
				return err
			}
			if os.Getenv("GOGC") == "" {
				// The gateway allocates per request and keeps little: collecting less often
				// trades a few MB of memory for CPU that requests need.
				debug.SetGCPercent(400)
			}
			log := logger()
			ctx, stop := signalContext(cmd)
			defer stop()
			db, err := openDB(ctx, c.DatabaseURL)
			if err != nil {
				return err
			}
			defer db.Close()
			// Only waking deployments at zero needs Temporal: the gateway serves without it.
			tc, err := temporalclient.NewLazy(c.serverConfig.temporal(), log)
			if err != nil {
				return err
			}
			defer tc.Close()
			gw, err := gateway.New(gateway.Options{DB: db, DatabaseURL: c.DatabaseURL, Logger: log, ID: c.ID,
				Registerer: prometheus.DefaultRegisterer, MaxBodyBytes: c.MaxBodyBytes, UpstreamTimeout: c.UpstreamTimeout,
				Temporal: tc, ColdStartTimeout: c.ColdStartTimeout, MaxHeld: c.MaxHeld, WebsocketDrainTimeout: c.WebsocketDrainTimeout,
				AsyncRateLimit: c.async.RateLimit, MaxOpenAsync: c.async.MaxOpen,
				MaxAsyncAttempts: c.async.MaxAttempts, WebhookAllowPrivate: c.async.WebhookAllowPrivate,
				AsyncOutputRetention: c.OutputRetention,
				KeyCacheSize:         c.KeyCacheSize, FailedAuthRateLimit: c.FailedAuthRateLimit, FailedAuthBurst: c.FailedAuthBurst,
				MaxShadowCopies: c.MaxShadowCopies, MetricsToken: c.MetricsToken})
			if err != nil {
				return err
			}
			runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
			ran := make(chan error, 1)
			go func() { ran <- gw.Run(runCtx) }()
			// No flat ReadTimeout: it would cut streamed uploads and websockets; a body is
			// bounded by the time it may go without a byte instead.
			srv := gateway.NewServer(gw.Handler(nil), c.Timeouts)
			srv.Addr = c.Listen
			if c.PprofAddr != "" {
				go servePprof(ctx, c.PprofAddr, log)
			}
			log.Info("gateway listening", "addr", c.Listen, "id", gw.ID(), "tls", cert != nil)
			err = serve(ctx, srv, cert)
			// In-flight requests finished (or the shutdown timed out): stop reporting last.
			cancelRun()
			return errors.Join(err, <-ran)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Listen, "listen", envString("MODELPLANE_GATEWAY_LISTEN", defaultGatewayListen), "address to serve on (MODELPLANE_GATEWAY_LISTEN)")
	f.StringVar(&c.ID, "id", envString("MODELPLANE_GATEWAY_ID", ""), "name in load samples and drain reports; default host name and PID (MODELPLANE_GATEWAY_ID)")
	f.Int64Var(&c.MaxBodyBytes, "max-body-bytes", int64(envInt("MODELPLANE_MAX_BODY_BYTES", gateway.DefaultMaxBodyBytes)), "largest request body; larger is 413 (MODELPLANE_MAX_BODY_BYTES)")
	f.DurationVar(&c.UpstreamTimeout, "upstream-timeout", envDuration("MODELPLANE_UPSTREAM_TIMEOUT", gateway.DefaultUpstreamTimeout), "longest a forwarded request may take, streamed answer included; then 504 (MODELPLANE_UPSTREAM_TIMEOUT)")
	f.DurationVar(&c.ColdStartTimeout, "cold-start-timeout", envDuration("MODELPLANE_COLD_START_TIMEOUT", gateway.DefaultColdStartTimeout), "longest a request waits for its deployment to wake from zero; then 504 (MODELPLANE_COLD_START_TIMEOUT)")
	f.DurationVar(&c.WebsocketDrainTimeout, "websocket-drain-timeout", envDuration("MODELPLANE_WEBSOCKET_DRAIN_TIMEOUT", gateway.DefaultWebsocketDrainTimeout), "longest a websocket stays open once its replica drains; then it is closed with 1001 (MODELPLANE_WEBSOCKET_DRAIN_TIMEOUT)")
	f.IntVar(&c.MaxHeld, "max-held-requests", envInt("MODELPLANE_MAX_HELD_REQUESTS", gateway.DefaultMaxHeld), "requests held per waking deployment; more are 429 (MODELPLANE_MAX_HELD_REQUESTS)")
	f.IntVar(&c.MaxShadowCopies, "max-shadow-copies", envInt("MODELPLANE_MAX_SHADOW_COPIES", gateway.DefaultMaxShadowCopies), "copies to environments' shadow deployments this gateway has in flight; a request chosen for a copy beyond them is not copied (MODELPLANE_MAX_SHADOW_COPIES)")
	f.IntVar(&c.KeyCacheSize, "key-cache-size", envInt("MODELPLANE_KEY_CACHE_SIZE", gateway.DefaultKeyCacheSize), "API keys kept in memory, a quarter of them at most unknown ones (MODELPLANE_KEY_CACHE_SIZE)")
	f.Float64Var(&c.FailedAuthRateLimit, "failed-auth-rate-limit", envFloat("MODELPLANE_FAILED_AUTH_RATE_LIMIT", gateway.DefaultFailedAuthRateLimit), "failed authentications per second one client address may make, in bursts of --failed-auth-burst; more are 429; negative: no limit (MODELPLANE_FAILED_AUTH_RATE_LIMIT)")
	f.IntVar(&c.FailedAuthBurst, "failed-auth-burst", envInt("MODELPLANE_FAILED_AUTH_BURST", gateway.DefaultFailedAuthBurst), "failed authentications one client address may make at once before --failed-auth-rate-limit applies (MODELPLANE_FAILED_AUTH_BURST)")
	f.StringVar(&c.PprofAddr, "pprof-addr", envString("MODELPLANE_PPROF_ADDR", ""), "address to serve Go's /debug/pprof/ on, without authentication: keep it on loopback; empty: none (MODELPLANE_PPROF_ADDR)")
	asyncGatewayFlags(cmd, &c.async)
	outputRetentionFlag(cmd, &c.OutputRetention)
	serverTimeoutFlags(cmd, &c.Timeouts)
	tlsServerFlags(cmd, &c.TLS)
	metricsTokenFlag(cmd, &c.MetricsToken)
	databaseFlag(cmd, &c.DatabaseURL)
	temporalFlags(cmd, &c.serverConfig)
	return cmd
}

// servePprof serves /debug/pprof/ on addr until ctx ends; a failure to listen is logged, not
// fatal, since profiling is an aid and not part of serving.
func servePprof(ctx context.Context, addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("pprof listening", "addr", addr)
	if err := serve(ctx, srv, nil); err != nil {
		log.Warn("pprof server", "err", err)
	}
}

// envBool is envString for booleans ("true", "1", "false", ...).
func envBool(name string, def bool) bool {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %s=%q is not true or false\n", name, v)
		os.Exit(2)
	}
	return b
}

// envFloat is envString for numbers.
func envFloat(name string, def float64) float64 {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %s=%q is not a number\n", name, v)
		os.Exit(2)
	}
	return f
}

// envDuration is envString for durations ("30s", "5m").
func envDuration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %s=%q is not a duration (e.g. 30s, 5m)\n", name, v)
		os.Exit(2)
	}
	return d
}

// serve runs srv until ctx ends, then shuts it down, letting requests in flight finish for up
// to shutdownTimeout.
func serve(ctx context.Context, srv *http.Server, cert *tlsfiles.Certificate) error {
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	return serveOn(ctx, srv, tlsfiles.Listener(ln, cert))
}

// serveOn is serve on a listener already open, for a caller that must know the address is
// free before it goes on.
func serveOn(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
