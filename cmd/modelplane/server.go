package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/internal/httpserve"
	"github.com/modelplane/modelplane/internal/temporalclient"
	"github.com/modelplane/modelplane/internal/tlsfiles"
	"github.com/modelplane/modelplane/schema"
	"github.com/modelplane/modelplane/secretbox"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/worker"
)

// defaultWorkerMetricsListen is where a worker serves /metrics unless told otherwise.
const defaultWorkerMetricsListen = ":9090"

// serverConfig is what the production processes (api, worker) connect to.
type serverConfig struct {
	Listen            string
	ArchiveBaseURL    string
	NodeTokenFile     string
	SecretsKeyFile    string
	BlobDir           string
	BlobStore         blobStoreConfig
	MaxArchiveBytes   int64
	MaxUnpackedBytes  int64
	DatabaseURL       string
	TemporalAddress   string
	TemporalNamespace string
	TemporalTLS       temporalclient.TLS
	TemporalUIURL     string // the dashboard's links to workflows
	// Timeouts bound what a client may hold a connection with; MetricsToken guards /metrics.
	Timeouts     httpserve.Timeouts
	MetricsToken string
	// TLS is the listener's certificate; TLSCAFile what the worker trusts when it calls agents.
	TLS       tlsfiles.ServerFiles
	TLSCAFile string
	asyncWorkerConfig
}

// serverTimeoutFlags adds the bounds on how long a client may hold a connection without
// sending: a declared body that never comes must not keep a connection (and a goroutine)
// forever.
func serverTimeoutFlags(cmd *cobra.Command, t *httpserve.Timeouts) {
	f := cmd.Flags()
	f.DurationVar(&t.ReadHeader, "read-header-timeout", envDuration("MODELPLANE_READ_HEADER_TIMEOUT", httpserve.DefaultReadHeaderTimeout), "longest a client may take to send a request's headers (MODELPLANE_READ_HEADER_TIMEOUT)")
	f.DurationVar(&t.BodyRead, "body-read-timeout", envDuration("MODELPLANE_BODY_READ_TIMEOUT", httpserve.DefaultBodyReadTimeout), "longest a request body may go without a byte; then the connection is closed. Renewed as the body arrives, so slow large uploads finish; answers are not bounded (MODELPLANE_BODY_READ_TIMEOUT)")
	f.DurationVar(&t.Idle, "idle-timeout", envDuration("MODELPLANE_IDLE_TIMEOUT", httpserve.DefaultIdleTimeout), "longest a keep-alive connection waits for its next request (MODELPLANE_IDLE_TIMEOUT)")
}

// checkTimeouts refuses bounds that are not positive.
func checkTimeouts(t httpserve.Timeouts) error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--read-header-timeout", t.ReadHeader}, {"--body-read-timeout", t.BodyRead}, {"--idle-timeout", t.Idle}} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive, got %s", d.flag, d.v)
		}
	}
	return nil
}

// metricsTokenFlag adds --metrics-token: /metrics names every workspace's models and
// deployments, so it answers only with this token.
func metricsTokenFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "metrics-token", envString("MODELPLANE_METRICS_TOKEN", ""), "Bearer token /metrics asks for; empty refuses every scrape. Prefer the variable: a flag shows in ps (MODELPLANE_METRICS_TOKEN)")
}

// asyncWorkerConfig is how a worker treats finished async requests.
type asyncWorkerConfig struct {
	AsyncOutputRetention time.Duration
	WebhookAllowPrivate  bool
}

// outputRetentionFlag adds --async-output-retention, for the processes that end async requests:
// gateways (a request that needs no workflow) and workers.
func outputRetentionFlag(cmd *cobra.Command, d *time.Duration) {
	cmd.Flags().DurationVar(d, "async-output-retention", envDuration("MODELPLANE_ASYNC_OUTPUT_RETENTION", store.DefaultAsyncOutputRetention), "how long an async request's output is kept for reading with its status when there is no webhook or it failed (MODELPLANE_ASYNC_OUTPUT_RETENTION)")
}

// asyncWorkerFlags adds the flags of asyncWorkerConfig; dev shares --webhook-allow-private
// with its gateway, so it adds only the retention.
func asyncWorkerFlags(cmd *cobra.Command, c *asyncWorkerConfig) {
	outputRetentionFlag(cmd, &c.AsyncOutputRetention)
	if cmd.Flags().Lookup("webhook-allow-private") == nil {
		webhookAllowPrivateFlag(cmd, &c.WebhookAllowPrivate)
	}
}

func temporalFlags(cmd *cobra.Command, c *serverConfig) {
	cmd.Flags().StringVar(&c.TemporalAddress, "temporal-address", envString(envTemporalAddress, defaultTemporal), "Temporal frontend host:port (TEMPORAL_ADDRESS)")
	cmd.Flags().StringVar(&c.TemporalNamespace, "temporal-namespace", envString(envTemporalNamespace, defaultNamespace), "Temporal namespace (TEMPORAL_NAMESPACE)")
	temporalTLSFlags(cmd, &c.TemporalTLS)
}

func (c serverConfig) temporal() temporalclient.Config {
	return temporalclient.Config{Address: c.TemporalAddress, Namespace: c.TemporalNamespace, TLS: c.TemporalTLS}
}

func dialTemporal(ctx context.Context, c serverConfig, log *slog.Logger) (client.Client, error) {
	return temporalclient.Dial(ctx, c.temporal(), log)
}

// secretsAndBlobs reads the node token (empty when no file is named) and opens the blob
// store and the scratch space packages are checked in, the things the api and worker
// processes both need from their flags.
func (c serverConfig) secretsAndBlobs(ctx context.Context) (string, blob.Store, string, error) {
	var token string
	if c.NodeTokenFile != "" {
		var err error
		if token, err = readToken(c.NodeTokenFile); err != nil {
			return "", nil, "", err
		}
	}
	blobs, scratch, err := c.BlobStore.open(ctx, c.BlobDir, c.MaxArchiveBytes)
	if err != nil {
		return "", nil, "", err
	}
	return token, blobs, scratch, nil
}

// envSecretsKey is the variable that may hold the secrets key itself, base64.
const envSecretsKey = "MODELPLANE_SECRETS_KEY"

// secretsKeyFlag adds --secrets-key-file.
// maxUnpackedFlag is --max-unpacked-bytes: the most an uploaded model package may unpack to.
func maxUnpackedFlag(cmd *cobra.Command, p *int64) {
	cmd.Flags().Int64Var(p, "max-unpacked-bytes", int64(envInt("MODELPLANE_MAX_UNPACKED_BYTES", api.DefaultMaxUnpackedBytes)),
		"most a model package may unpack to, in every workspace; more is 413 (MODELPLANE_MAX_UNPACKED_BYTES)")
}

func secretsKeyFlag(cmd *cobra.Command, file *string, what string) {
	cmd.Flags().StringVar(file, "secrets-key-file", envString("MODELPLANE_SECRETS_KEY_FILE", ""),
		"file holding the 32-byte key, base64, that "+what+"; else "+envSecretsKey+" holds it; with neither, secrets are off (MODELPLANE_SECRETS_KEY_FILE)")
}

// secretsKey reads the secrets key from --secrets-key-file or MODELPLANE_SECRETS_KEY; nil
// when neither is set.
func (c serverConfig) secretsKey(log *slog.Logger) (*secretbox.Key, error) {
	k, err := secretbox.Load(c.SecretsKeyFile, os.Getenv(envSecretsKey))
	if err != nil {
		return nil, err
	}
	if k == nil {
		log.Warn("no secrets key: workspace secrets are off", "set", api.SecretsKeySettings)
	}
	return k, nil
}

func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

func newAPICmd(logger func() *slog.Logger) *cobra.Command {
	var c serverConfig
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Run the management API (migrates the schema at start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkTimeouts(c.Timeouts); err != nil {
				return err
			}
			cert, agentTLS, err := c.loadTLS()
			if err != nil {
				return err
			}
			log := logger()
			ctx, stop := signalContext(cmd)
			defer stop()
			db, err := openDB(ctx, c.DatabaseURL)
			if err != nil {
				return err
			}
			defer db.Close()
			if _, err := schema.Migrate(ctx, db.DB); err != nil {
				return err
			}
			// The API serves without Temporal (and says so on /readyz) so that a Temporal
			// outage does not take the read routes down; the client connects lazily.
			tc, err := temporalclient.NewLazy(c.temporal(), log)
			if err != nil {
				return err
			}
			defer tc.Close()
			nodeToken, blobs, scratch, err := c.secretsAndBlobs(ctx)
			if err != nil {
				return err
			}
			secretsKey, err := c.secretsKey(log)
			if err != nil {
				return err
			}
			// No flat ReadTimeout: a large archive upload over a slow link may take longer than
			// any bound that suits the rest; the body read timeout is renewed as bytes arrive.
			srv := httpserve.Server(api.New(api.Deps{DB: db, Temporal: tc, Logger: log, NodeToken: nodeToken,
				Blobs: blobs, ScratchDir: scratch, MaxArchiveBytes: c.MaxArchiveBytes, MaxUnpackedBytes: c.MaxUnpackedBytes,
				SecretsKey: secretsKey, MetricsToken: c.MetricsToken, AgentTLS: agentTLS,
				TemporalUIURL: c.TemporalUIURL, TemporalNamespace: c.TemporalNamespace}), c.Timeouts)
			srv.Addr = c.Listen
			log.Info("api listening", "addr", c.Listen, "tls", cert != nil)
			return serve(ctx, srv, cert)
		},
	}
	cmd.Flags().StringVar(&c.Listen, "listen", envString("MODELPLANE_LISTEN", defaultServerListen), "address to serve on (MODELPLANE_LISTEN)")
	cmd.Flags().StringVar(&c.BlobDir, "blob-dir", envString("MODELPLANE_BLOB_DIR", "./.modelplane/blobs"), "where model packages are stored; shared by every API process (MODELPLANE_BLOB_DIR)")
	blobStoreFlags(cmd, &c.BlobStore)
	cmd.Flags().Int64Var(&c.MaxArchiveBytes, "max-archive-bytes", int64(envInt("MODELPLANE_MAX_ARCHIVE_BYTES", api.DefaultMaxArchiveBytes)), "largest model package accepted (MODELPLANE_MAX_ARCHIVE_BYTES)")
	maxUnpackedFlag(cmd, &c.MaxUnpackedBytes)
	cmd.Flags().StringVar(&c.NodeTokenFile, "node-token-file", envString("MODELPLANE_NODE_TOKEN_FILE", ""), "file holding the token shared by node agents of older setups; unset accepts only nodes' own tokens (modelplane nodes token create) (MODELPLANE_NODE_TOKEN_FILE)")
	secretsKeyFlag(cmd, &c.SecretsKeyFile, "seals workspace secrets and makes nodes' own tokens to call their agents with; the worker needs the same one")
	serverTimeoutFlags(cmd, &c.Timeouts)
	tlsServerFlags(cmd, &c.TLS)
	tlsCAFlag(cmd, &c.TLSCAFile, "node agents (logs, terminate)")
	cmd.Flags().StringVar(&c.TemporalUIURL, "temporal-ui-url", envString(envTemporalUIURL, ""), "the Temporal UI the dashboard links each operation's workflow to; empty shows no links (MODELPLANE_TEMPORAL_UI_URL)")
	metricsTokenFlag(cmd, &c.MetricsToken)
	databaseFlag(cmd, &c.DatabaseURL)
	temporalFlags(cmd, &c)
	return cmd
}

func newWorkerCmd(logger func() *slog.Logger) *cobra.Command {
	var c workerConfig
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a Temporal worker for modelplane's workflows and activities",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkTimeouts(c.Timeouts); err != nil {
				return err
			}
			if err := c.Concurrency.Check(); err != nil {
				return err
			}
			cert, agentTLS, err := c.loadTLS()
			if err != nil {
				return err
			}
			log := logger()
			ctx, stop := signalContext(cmd)
			defer stop()
			db, err := openDB(ctx, c.DatabaseURL)
			if err != nil {
				return err
			}
			defer db.Close()
			tc, err := dialTemporal(ctx, c.serverConfig, log)
			if err != nil {
				return err
			}
			defer tc.Close()
			nodeToken, blobs, _, err := c.secretsAndBlobs(ctx)
			if err != nil {
				return err
			}
			if c.AsyncOutputRetention <= 0 {
				return fmt.Errorf("--async-output-retention must be positive, got %s", c.AsyncOutputRetention)
			}
			secretsKey, err := c.secretsKey(log)
			if err != nil {
				return err
			}
			acts := &activities.Activities{DB: db, NodeToken: nodeToken, ArchiveBaseURL: c.ArchiveBaseURL, Temporal: tc, Blobs: blobs,
				DatabaseURL: c.DatabaseURL, AsyncOutputRetention: c.AsyncOutputRetention, WebhookAllowPrivate: c.WebhookAllowPrivate,
				SecretsKey: secretsKey, AgentTLS: agentTLS}
			metricsDone := make(chan error, 1)
			if c.Listen != "" {
				// The autoscaler's metrics (leader, scale counts) live in the worker process.
				mux := http.NewServeMux()
				mux.Handle("GET /metrics", httpserve.MetricsToken(c.MetricsToken, promhttp.Handler()))
				mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
				})
				mux.Handle("GET /readyz", worker.Readyz(db, tc))
				ln, err := net.Listen("tcp", c.Listen)
				if err != nil {
					return fmt.Errorf("--metrics-listen %s: %w", c.Listen, err)
				}
				// Only GETs come here: the whole request is bounded too.
				t := c.Timeouts
				t.Read = httpserve.DefaultReadTimeout
				srv := httpserve.Server(mux, t)
				log.Info("worker metrics listening", "addr", ln.Addr().String(), "tls", cert != nil)
				go func() { metricsDone <- serveOn(ctx, srv, tlsfiles.Listener(ln, cert)) }()
			} else {
				metricsDone <- nil
			}
			err = worker.Run(ctx, tc, c.TemporalNamespace, acts, c.Concurrency, log)
			stop()
			return errors.Join(err, <-metricsDone)
		},
	}
	cmd.Flags().StringVar(&c.NodeTokenFile, "node-token-file", envString("MODELPLANE_NODE_TOKEN_FILE", ""), "file holding the shared node token, presented to agents that report with it; agents with tokens of their own get theirs, made from the secrets key (MODELPLANE_NODE_TOKEN_FILE)")
	secretsKeyFlag(cmd, &c.SecretsKeyFile, "opens workspace secrets for replicas' starts and makes nodes' own tokens; the API's")
	cmd.Flags().StringVar(&c.Listen, "metrics-listen", envString("MODELPLANE_WORKER_METRICS_LISTEN", defaultWorkerMetricsListen), "address of the worker's /metrics, /healthz and /readyz; empty serves none (MODELPLANE_WORKER_METRICS_LISTEN)")
	cmd.Flags().StringVar(&c.ArchiveBaseURL, "archive-base-url", envString("MODELPLANE_API_URL", "http://127.0.0.1:8080"), "the API's URL as agents reach it, to download archives (MODELPLANE_API_URL)")
	cmd.Flags().StringVar(&c.BlobDir, "blob-dir", envString("MODELPLANE_BLOB_DIR", "./.modelplane/blobs"), "the API's archive store, to prune archives nothing uses (MODELPLANE_BLOB_DIR)")
	blobStoreFlags(cmd, &c.BlobStore)
	asyncWorkerFlags(cmd, &c.asyncWorkerConfig)
	serverTimeoutFlags(cmd, &c.Timeouts)
	tlsServerFlags(cmd, &c.TLS)
	tlsCAFlag(cmd, &c.TLSCAFile, "node agents")
	metricsTokenFlag(cmd, &c.MetricsToken)
	databaseFlag(cmd, &c.DatabaseURL)
	temporalFlags(cmd, &c.serverConfig)
	workerConcurrencyFlags(cmd, &c.Concurrency)
	return cmd
}

// workerConfig is the worker's: the server's settings and its concurrency.
type workerConfig struct {
	serverConfig
	Concurrency worker.Concurrency
}

// loadTLS reads the listener's certificate (nil without one) and the client configuration
// for calls to agents, which trusts --tls-ca-file besides the system's authorities.
func (c serverConfig) loadTLS() (*tlsfiles.Certificate, *tls.Config, error) {
	cert, err := c.TLS.Load()
	if err != nil {
		return nil, nil, err
	}
	agentTLS, err := httpClientTLS(c.TLSCAFile)
	if err != nil {
		return nil, nil, err
	}
	return cert, agentTLS, nil
}
