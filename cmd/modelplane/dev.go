package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/internal/httpserve"
	"github.com/modelplane/modelplane/internal/temporalclient"
	"github.com/modelplane/modelplane/internal/tlsfiles"
	"github.com/modelplane/modelplane/worker"
)

// shutdownTimeout bounds how long dev takes to stop after Ctrl-C.
const shutdownTimeout = 10 * time.Second

type devConfig struct {
	DataDir           string
	Listen            string
	TemporalPort      int
	TemporalUIPort    int
	TemporalAddress   string
	TemporalNamespace string
	TemporalUIURL     string
	TemporalTLS       temporalclient.TLS
	Concurrency       worker.Concurrency
	DatabaseURL       string
	MaxArchiveBytes   int64
	MaxUnpackedBytes  int64
	GPUProfile        string
	python            pythonConfig
	isolation         isolationConfig
	SecretsKeyFile    string
	MaxBodyBytes      int64
	UpstreamTimeout   time.Duration
	ColdStartTimeout  time.Duration
	// WebsocketDrainTimeout bounds a websocket on a draining replica.
	WebsocketDrainTimeout time.Duration
	async                 asyncGatewayConfig
	asyncWorker           asyncWorkerConfig
	timeouts              httpserve.Timeouts
	MetricsToken          string
	// AdoptDatabase takes over a database that another Temporal history's state is in.
	AdoptDatabase bool
	tls           tlsfiles.ServerFiles
	tlsCAFile     string
	blobs         blobStoreConfig
}

func newDevCmd(logger func() *slog.Logger) *cobra.Command {
	var c devConfig
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole stack in one process on embedded defaults",
		Long: `Runs PostgreSQL (DATABASE_URL, else the local server on 127.0.0.1:5432, else a private
cluster in the data directory), an in-process Temporal server with its UI (unless
TEMPORAL_ADDRESS names a cluster), the management API, the inference gateway (on the same address), the worker and a local node agent
(whose model servers stop with dev). The first start creates
the workspace "default" and an admin API key, saved to <data-dir>/api-key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDev(cmd, c, logger()) },
	}
	f := cmd.Flags()
	f.StringVar(&c.DataDir, "data-dir", envString("MODELPLANE_DATA_DIR", defaultDataDir), "where dev keeps its state (MODELPLANE_DATA_DIR)")
	f.StringVar(&c.Listen, "listen", envString("MODELPLANE_LISTEN", defaultDevListen), "API address (MODELPLANE_LISTEN)")
	f.IntVar(&c.TemporalPort, "temporal-port", envInt("MODELPLANE_TEMPORAL_PORT", defaultTemporalPort), "embedded Temporal frontend port (MODELPLANE_TEMPORAL_PORT)")
	f.IntVar(&c.TemporalUIPort, "temporal-ui-port", envInt("MODELPLANE_TEMPORAL_UI_PORT", defaultTemporalUI), "embedded Temporal UI port (MODELPLANE_TEMPORAL_UI_PORT)")
	f.StringVar(&c.TemporalAddress, "temporal-address", envString(envTemporalAddress, ""), "use this Temporal cluster instead of the embedded one (TEMPORAL_ADDRESS)")
	f.StringVar(&c.TemporalNamespace, "temporal-namespace", envString(envTemporalNamespace, defaultNamespace), "Temporal namespace (TEMPORAL_NAMESPACE)")
	f.StringVar(&c.TemporalUIURL, "temporal-ui-url", envString(envTemporalUIURL, ""), "the Temporal UI the dashboard links workflows to; default the embedded one's (MODELPLANE_TEMPORAL_UI_URL)")
	temporalTLSFlags(cmd, &c.TemporalTLS) // for --temporal-address; the embedded server serves plain gRPC
	workerConcurrencyFlags(cmd, &c.Concurrency)
	f.StringVar(&c.DatabaseURL, "database-url", envString(envDatabaseURL, ""), "PostgreSQL URL; empty tries the local server, then a private cluster (DATABASE_URL)")
	f.StringVar(&c.GPUProfile, "gpu-profile", envString("MODELPLANE_GPU_PROFILE", "auto"), "the local agent's GPUs: auto, none, real, h200 or dgxa100 (MODELPLANE_GPU_PROFILE)")
	f.Int64Var(&c.MaxBodyBytes, "max-body-bytes", int64(envInt("MODELPLANE_MAX_BODY_BYTES", gateway.DefaultMaxBodyBytes)), "largest inference request body; larger is 413 (MODELPLANE_MAX_BODY_BYTES)")
	f.DurationVar(&c.UpstreamTimeout, "upstream-timeout", envDuration("MODELPLANE_UPSTREAM_TIMEOUT", gateway.DefaultUpstreamTimeout), "longest a forwarded inference request may take; then 504 (MODELPLANE_UPSTREAM_TIMEOUT)")
	f.DurationVar(&c.ColdStartTimeout, "cold-start-timeout", envDuration("MODELPLANE_COLD_START_TIMEOUT", gateway.DefaultColdStartTimeout), "longest a request waits for its deployment to wake from zero; then 504 (MODELPLANE_COLD_START_TIMEOUT)")
	f.DurationVar(&c.WebsocketDrainTimeout, "websocket-drain-timeout", envDuration("MODELPLANE_WEBSOCKET_DRAIN_TIMEOUT", gateway.DefaultWebsocketDrainTimeout), "longest a websocket stays open once its replica drains; then it is closed with 1001 (MODELPLANE_WEBSOCKET_DRAIN_TIMEOUT)")
	f.Int64Var(&c.MaxArchiveBytes, "max-archive-bytes", int64(envInt("MODELPLANE_MAX_ARCHIVE_BYTES", api.DefaultMaxArchiveBytes)), "largest model package accepted (MODELPLANE_MAX_ARCHIVE_BYTES)")
	maxUnpackedFlag(cmd, &c.MaxUnpackedBytes)
	f.StringVar(&c.SecretsKeyFile, "secrets-key-file", envString("MODELPLANE_SECRETS_KEY_FILE", ""), "file holding the key that seals workspace secrets; else "+envSecretsKey+"; with neither, <data-dir>/secrets-key, made on first start (MODELPLANE_SECRETS_KEY_FILE)")
	pythonFlags(cmd, &c.python)
	isolationFlags(cmd, &c.isolation)
	asyncGatewayFlags(cmd, &c.async)
	asyncWorkerFlags(cmd, &c.asyncWorker) // --webhook-allow-private is the gateway's, above
	serverTimeoutFlags(cmd, &c.timeouts)
	tlsServerFlags(cmd, &c.tls)
	tlsCAFlag(cmd, &c.tlsCAFile, "its own API (the local agent)")
	cmd.Flags().StringVar(&c.MetricsToken, "metrics-token", envString("MODELPLANE_METRICS_TOKEN", ""), "Bearer token /metrics asks for; empty: the one in <data-dir>/metrics-token, made on first start (MODELPLANE_METRICS_TOKEN)")
	f.BoolVar(&c.AdoptDatabase, "adopt-database", envBool("MODELPLANE_ADOPT_DATABASE", false), "take over a database whose deployments another Temporal history (another data directory) runs: they are restarted here, promotions in flight canceled; without it dev refuses such a database (MODELPLANE_ADOPT_DATABASE)")
	blobStoreFlags(cmd, &c.blobs)
	return cmd
}

func runDev(cmd *cobra.Command, c devConfig, log *slog.Logger) error {
	if err := c.async.check(); err != nil {
		return err
	}
	if err := checkTimeouts(c.timeouts); err != nil {
		return err
	}
	if err := c.Concurrency.Check(); err != nil {
		return err
	}
	if c.TemporalTLS.On() && c.TemporalAddress == "" {
		return fmt.Errorf("--temporal-tls-* need --temporal-address: the embedded Temporal serves without TLS")
	}
	if c.WebsocketDrainTimeout <= 0 {
		return fmt.Errorf("--websocket-drain-timeout must be positive, got %s", c.WebsocketDrainTimeout)
	}
	if c.asyncWorker.AsyncOutputRetention <= 0 {
		return fmt.Errorf("--async-output-retention must be positive, got %s", c.asyncWorker.AsyncOutputRetention)
	}
	s3, err := c.blobs.s3()
	if err != nil {
		return err
	}
	ctx, stop := signalContext(cmd)
	defer stop()
	out := cmd.OutOrStdout()

	s, err := devstack.Start(ctx, devstack.Options{
		DataDir: c.DataDir, Listen: c.Listen,
		TemporalAddress: c.TemporalAddress, TemporalNamespace: c.TemporalNamespace, TemporalUIURL: c.TemporalUIURL,
		TemporalPort: c.TemporalPort, TemporalUIPort: c.TemporalUIPort,
		TemporalTLS: c.TemporalTLS, WorkerConcurrency: c.Concurrency,
		Postgres:        devstack.PostgresOptions{DatabaseURL: c.DatabaseURL},
		MaxArchiveBytes: c.MaxArchiveBytes,
		S3:              s3,
		GPUProfile:      c.GPUProfile,
		PythonIndexURL:  c.python.IndexURL, PythonFindLinks: c.python.FindLinks, PythonPrewarm: c.python.Prewarm,
		ReplicaUIDs: c.isolation.ReplicaUIDs, RequireIsolation: c.isolation.Require,
		MaxUnpackedBytes: c.MaxUnpackedBytes,
		SecretsKeyFile:   c.SecretsKeyFile, SecretsKey: os.Getenv(envSecretsKey),
		MaxBodyBytes: c.MaxBodyBytes, UpstreamTimeout: c.UpstreamTimeout, ColdStartTimeout: c.ColdStartTimeout,
		WebsocketDrainTimeout: c.WebsocketDrainTimeout,
		AsyncRateLimit:        c.async.RateLimit, MaxOpenAsync: c.async.MaxOpen, MaxAsyncAttempts: c.async.MaxAttempts,
		WebhookAllowPrivate: c.async.WebhookAllowPrivate, AsyncOutputRetention: c.asyncWorker.AsyncOutputRetention,
		MetricsToken: c.MetricsToken, Timeouts: c.timeouts,
		AdoptDatabase: c.AdoptDatabase, TLS: c.tls, TLSCAFile: c.tlsCAFile,
		Logger: log, Out: out,
	})
	if err != nil {
		return err
	}
	// Client commands (keys create) find dev's database here, whichever source it came from.
	if err := os.WriteFile(filepath.Join(c.DataDir, databaseURLFile), []byte(s.Postgres.URL+"\n"), 0o600); err != nil {
		log.Warn("recording the database URL", "err", err)
	}
	fmt.Fprintf(out, "modelplane dev is ready\n")
	fmt.Fprintf(out, "  API:          %s\n", s.APIURL)
	fmt.Fprintf(out, "  Dashboard:    %s/ (sign in with the API key below)\n", s.APIURL)
	fmt.Fprintf(out, "  Inference:    %s/models/{model_id}/production/predict\n", s.APIURL)
	fmt.Fprintf(out, "  Temporal:     %s (namespace %s)\n", s.TemporalAddress, c.TemporalNamespace)
	if s.TemporalUIURL != "" {
		fmt.Fprintf(out, "  Temporal UI:  %s\n", s.TemporalUIURL)
	}
	fmt.Fprintf(out, "  PostgreSQL:   %s (%s)\n", redactURL(s.Postgres.URL), s.Postgres.Source)
	fmt.Fprintf(out, "  Node agent:   %s (GPU profile %s)\n", s.AgentURL, c.GPUProfile)
	fmt.Fprintf(out, "  API key:      %s\n", filepath.Join(c.DataDir, devstack.KeyFile))
	fmt.Fprintf(out, "  Webhooks:     %s (signing secret)\n", filepath.Join(c.DataDir, devstack.WebhookSecretFile))
	fmt.Fprintf(out, "  Node token:   %s (for modelplane agent --token-file)\n", filepath.Join(c.DataDir, devstack.NodeTokenFile))
	if c.SecretsKeyFile == "" && os.Getenv(envSecretsKey) == "" {
		fmt.Fprintf(out, "  Secrets key:  %s (for modelplane worker --secrets-key-file)\n", filepath.Join(c.DataDir, devstack.SecretsKeyFile))
	}
	if c.MetricsToken == "" {
		fmt.Fprintf(out, "  Metrics:      %s/metrics with Authorization: Bearer <the token in %s>\n", s.APIURL, filepath.Join(c.DataDir, devstack.MetricsTokenFile))
	}
	fmt.Fprintf(out, "Press Ctrl-C to stop.\n")

	var served error
	select {
	case <-ctx.Done():
	case served = <-s.Served():
	}
	// A second Ctrl-C now kills the process the default way.
	stop()
	fmt.Fprintln(out, "stopping...")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := s.Close(shutdownCtx); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	if served != nil {
		return fmt.Errorf("API server stopped: %w", served)
	}
	fmt.Fprintln(out, "stopped")
	return nil
}
