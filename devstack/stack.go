// Package devstack starts what `modelplane dev` runs on embedded defaults: PostgreSQL (found
// or started), an in-process Temporal server with its UI, the management API and the worker,
// with the workspace "default" and an admin key on first start.
package devstack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/agent"
	"github.com/modelplane/modelplane/agent/runtime/process"
	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/autoscaler"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/internal/httpserve"
	"github.com/modelplane/modelplane/internal/temporalclient"
	"github.com/modelplane/modelplane/internal/tlsfiles"
	"github.com/modelplane/modelplane/nvml"
	"github.com/modelplane/modelplane/reconcile"
	"github.com/modelplane/modelplane/schema"
	"github.com/modelplane/modelplane/secretbox"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/worker"
)

// DefaultWorkspace is the workspace dev creates on first start.
const DefaultWorkspace = "default"

// KeyFile is the file in the data directory that holds dev's admin key.
const KeyFile = "api-key"

// NodeTokenFile is the file in the data directory that holds the node token agents use.
const NodeTokenFile = "node-token"

// WebhookSecretFile is the file in the data directory that holds the default workspace's
// webhook secret, to check the signatures of webhooks with.
const WebhookSecretFile = "webhook-secret"

// MetricsTokenFile is the file in the data directory that holds the Bearer token /metrics
// asks for, made on first start unless Options names a token.
const MetricsTokenFile = "metrics-token"

// SecretsKeyFile is the file in the data directory that holds the key sealing workspace
// secrets, made on first start unless Options names a key.
const SecretsKeyFile = "secrets-key"

// Options configure the stack. Zero values take the defaults documented on each field.
type Options struct {
	DataDir string // required; created if missing
	Listen  string // API address (default 127.0.0.1:8080)

	// TemporalAddress, when set, is an existing Temporal cluster: no server or UI is started.
	TemporalAddress   string
	TemporalNamespace string // default "default"
	TemporalPort      int    // embedded frontend port; 0 picks a free one
	TemporalUIPort    int    // embedded UI port; 0 picks a free one
	// TemporalUIURL is the UI the dashboard links workflows to (default: the embedded UI's).
	TemporalUIURL string
	// TemporalTLS is how the stack reaches TemporalAddress; the embedded server is plain.
	TemporalTLS temporalclient.TLS
	// WorkerConcurrency bounds the in-process worker (worker.DefaultConcurrency when zero).
	WorkerConcurrency worker.Concurrency

	Postgres PostgresOptions // DataDir defaults to Options.DataDir

	// MaxArchiveBytes bounds a model package upload (default api.DefaultMaxArchiveBytes).
	MaxArchiveBytes int64
	// S3, when set, is the bucket model packages are kept in instead of <DataDir>/blobs.
	S3 *blob.S3Config
	// MaxUnpackedBytes bounds what a package unpacks to (default api.DefaultMaxUnpackedBytes).
	MaxUnpackedBytes int64

	// MaxBodyBytes and UpstreamTimeout configure the gateway (defaults in package gateway).
	MaxBodyBytes    int64
	UpstreamTimeout time.Duration
	// ColdStartTimeout bounds how long a request waits for a deployment to wake.
	ColdStartTimeout time.Duration
	// WebsocketDrainTimeout bounds a websocket on a draining replica
	// (gateway.DefaultWebsocketDrainTimeout when zero).
	WebsocketDrainTimeout time.Duration
	// AutoscalerTick is the autoscaler's period (default one second).
	AutoscalerTick time.Duration

	// Async inference (defaults in packages gateway and activities): the gateway's
	// per-workspace submission rate and open-request limit and the predictions it runs at
	// once, whether webhooks may go to private addresses, and how long outputs are kept.
	AsyncRateLimit       float64
	MaxOpenAsync         int
	MaxAsyncAttempts     int
	WebhookAllowPrivate  bool
	AsyncOutputRetention time.Duration

	// SecretsKeyFile holds the key that seals workspace secrets (base64, 32 bytes); empty
	// means <DataDir>/secrets-key, made (0600) on first start. SecretsKey, base64, is the
	// key itself, used when SecretsKeyFile is empty.
	SecretsKeyFile string
	SecretsKey     string

	// MetricsToken is the Bearer token /metrics asks for; empty means the one in
	// <DataDir>/metrics-token, made (0600) on first start.
	MetricsToken string
	// Timeouts bound how long a client may hold a connection to the API and gateway, and to
	// the local agent, without sending (defaults in package httpserve).
	Timeouts httpserve.Timeouts

	// GPUProfile is the local node agent's GPUs: auto (default), none, real, h200, dgxa100.
	GPUProfile string
	// PythonIndexURL and PythonFindLinks are the local agent's pip --index-url and
	// --find-links for the packages' requirements (agent.Config).
	PythonIndexURL  string
	PythonFindLinks string
	// PythonPrewarm starts Truss models' replicas from a warm interpreter (agent.Config).
	PythonPrewarm bool
	// ReplicaUIDs and RequireIsolation are the local agent's (agent.Config). As root, the
	// data directory is made passable (0711) for the agent's replica users, with everything
	// in it but the agent's state directory the stack's own.
	ReplicaUIDs      string
	RequireIsolation bool

	// AdoptDatabase lets dev take over a database whose state another Temporal history
	// carries (another data directory's): it records the current history as the database's,
	// and the reconcile pass restarts or ends what has no workflow here. Without it dev
	// refuses such a database with ErrOtherHistory.
	AdoptDatabase bool
	// TLS, when it names a certificate and key, makes the API and gateway listener serve
	// HTTPS (the local agent stays plain HTTP on loopback); TLSCAFile is what the stack's own
	// clients of it (the local agent) trust besides the system's authorities.
	TLS       tlsfiles.ServerFiles
	TLSCAFile string

	// ExternalWorker runs no worker in the process: workers started separately (modelplane
	// worker, with the stack's node token and API URL) serve the task queue.
	ExternalWorker bool

	Logger *slog.Logger
	// Out receives what a person must see once: the new admin key on first start.
	Out io.Writer
}

// Stack is a running dev stack.
type Stack struct {
	APIURL          string
	TemporalAddress string
	TemporalUIURL   string // empty when an external cluster is used
	Postgres        *Postgres
	// NewAPIKey is the admin key created by this start; empty when the data directory
	// already had a valid one.
	NewAPIKey string

	// AgentURL is the local node agent's API.
	AgentURL string

	log       *slog.Logger
	db        *sqlx.DB
	agent     *agent.Agent
	gpus      *nvml.Manager
	stopAgent context.CancelFunc
	agentDone chan error
	temporal  *Temporal
	tc        client.Client
	acts      *activities.Activities
	worker    sdkworker.Worker
	http      *http.Server
	served    chan error
	gateway   *gateway.Gateway
	stopGW    context.CancelFunc
	gwDone    chan error
	stopLoop  context.CancelFunc
	loopDone  chan error
	// MetricsToken is the Bearer token the stack's /metrics asks for.
	MetricsToken string
}

// Start brings the stack up. On error everything already started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.DataDir == "" {
		return nil, errors.New("devstack: no data directory")
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:8080"
	}
	if opts.TemporalNamespace == "" {
		opts.TemporalNamespace = "default"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Postgres.DataDir == "" {
		opts.Postgres.DataDir = opts.DataDir
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	s := &Stack{log: opts.Logger, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			_ = s.Close(context.Background())
		}
	}()

	if s.Postgres, err = StartPostgres(ctx, opts.Postgres); err != nil {
		return nil, err
	}
	s.log.Info("postgres", "source", s.Postgres.Source, "url", redact(s.Postgres.URL))
	if s.db, err = store.Open(ctx, s.Postgres.URL); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	applied, err := schema.Migrate(ctx, s.db.DB)
	if err != nil {
		return nil, err
	}
	if len(applied) > 0 {
		s.log.Info("schema migrated", "applied", len(applied))
	}
	if s.NewAPIKey, err = ensureAdminKey(ctx, s.db, filepath.Join(opts.DataDir, KeyFile)); err != nil {
		return nil, err
	}
	if err := ensureWebhookSecret(ctx, s.db, filepath.Join(opts.DataDir, WebhookSecretFile)); err != nil {
		return nil, fmt.Errorf("webhook secret: %w", err)
	}
	nodeToken, err := ensureToken(filepath.Join(opts.DataDir, NodeTokenFile))
	if err != nil {
		return nil, err
	}
	s.MetricsToken = opts.MetricsToken
	if s.MetricsToken == "" {
		if s.MetricsToken, err = ensureToken(filepath.Join(opts.DataDir, MetricsTokenFile)); err != nil {
			return nil, fmt.Errorf("metrics token: %w", err)
		}
	}
	secretsKey, err := loadSecretsKey(opts)
	if err != nil {
		return nil, err
	}
	blobs, scratch, err := openBlobs(ctx, opts)
	if err != nil {
		return nil, err
	}

	s.TemporalAddress = opts.TemporalAddress
	if s.TemporalAddress == "" {
		s.temporal, err = StartTemporal(TemporalOptions{
			DataDir: opts.DataDir, Namespace: opts.TemporalNamespace,
			Port: opts.TemporalPort, UIPort: opts.TemporalUIPort,
		})
		if err != nil {
			return nil, err
		}
		s.TemporalAddress, s.TemporalUIURL = s.temporal.Address, s.temporal.UIURL
	}
	if opts.TemporalUIURL != "" {
		s.TemporalUIURL = opts.TemporalUIURL
	}
	s.tc, err = temporalclient.Dial(ctx, temporalclient.Config{
		Address: s.TemporalAddress, Namespace: opts.TemporalNamespace, TLS: opts.TemporalTLS,
	}, s.log)
	if err != nil {
		return nil, err
	}
	if err := worker.EnsureSearchAttributes(ctx, s.tc, opts.TemporalNamespace); err != nil {
		return nil, err
	}
	// The database and the Temporal history must not part silently.
	where := s.TemporalAddress
	if s.temporal != nil {
		where = filepath.Join(opts.DataDir, "temporal.db")
	}
	if err := checkHistory(ctx, s.db, s.tc, opts.TemporalNamespace, where, opts.DataDir, opts.AdoptDatabase, s.log); err != nil {
		return nil, err
	}
	if err := worker.EnsureSchedules(ctx, s.tc); err != nil {
		return nil, err
	}
	cert, apiTLS, err := loadTLS(opts)
	if err != nil {
		return nil, err
	}
	// The API's address is known before the worker starts: agents download archives there.
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", opts.Listen, err)
	}
	ln = tlsfiles.Listener(ln, cert)
	s.APIURL = tlsfiles.Scheme(ln) + "://" + ln.Addr().String()
	if !opts.ExternalWorker {
		s.acts = &activities.Activities{DB: s.db, NodeToken: nodeToken, ArchiveBaseURL: s.APIURL, Temporal: s.tc, Blobs: blobs,
			DatabaseURL: s.Postgres.URL, AsyncOutputRetention: opts.AsyncOutputRetention, WebhookAllowPrivate: opts.WebhookAllowPrivate,
			SecretsKey: secretsKey}
		activities.StartAsyncListener(s.acts, s.log)
		conc := opts.WorkerConcurrency
		if conc == (worker.Concurrency{}) {
			conc = worker.DefaultConcurrency()
		}
		s.worker = worker.NewWithConcurrency(s.tc, s.acts, conc)
		if err := s.worker.Start(); err != nil {
			ln.Close()
			return nil, fmt.Errorf("worker: %w", err)
		}
		// As `modelplane worker` does at start: what the database says runs but Temporal
		// does not have is taken up again, or ended with the reason.
		if _, err := reconcile.Run(ctx, s.db, s.tc, s.log); err != nil {
			s.log.Error("reconcile pass failed", "err", err)
		}
		// The autoscaler runs with the worker, as `modelplane worker` runs it.
		loop := autoscaler.New(autoscaler.Options{DB: s.db, Temporal: s.tc, Logger: s.log,
			Registerer: prometheus.DefaultRegisterer, Tick: opts.AutoscalerTick})
		loopCtx, cancel := context.WithCancel(context.Background())
		s.stopLoop, s.loopDone = cancel, make(chan error, 1)
		go func() { s.loopDone <- loop.Run(loopCtx) }()
	}
	if err := s.startGateway(opts); err != nil {
		ln.Close()
		return nil, err
	}
	apiHandler := api.New(api.Deps{DB: s.db, Temporal: s.tc, Logger: s.log, NodeToken: nodeToken,
		Blobs: blobs, ScratchDir: scratch, MaxArchiveBytes: opts.MaxArchiveBytes,
		MaxUnpackedBytes: opts.MaxUnpackedBytes, SecretsKey: secretsKey, MetricsToken: s.MetricsToken,
		TemporalUIURL: s.TemporalUIURL, TemporalNamespace: opts.TemporalNamespace})
	// The API and the gateway share the address: inference paths go to the gateway. No flat
	// ReadTimeout: uploads, streamed requests and websockets pass here too.
	s.http = gateway.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gateway.IsInference(r) {
			s.gateway.ServeHTTP(w, r)
			return
		}
		apiHandler.ServeHTTP(w, r)
	}), opts.Timeouts)
	go func() { s.served <- s.http.Serve(ln) }()

	if err := s.startAgent(opts, nodeToken, apiTLS); err != nil {
		return nil, err
	}

	if s.NewAPIKey != "" {
		fmt.Fprintf(opts.Out, "Created workspace %q and an admin API key (saved to %s, shown only this once):\n\n    %s\n\n",
			DefaultWorkspace, filepath.Join(opts.DataDir, KeyFile), s.NewAPIKey)
	}
	return s, nil
}

// loadTLS reads the listener's certificate (nil: plain HTTP) and what the local agent
// trusts when it calls the API, so that a missing or bad file stops the start.
func loadTLS(opts Options) (*tlsfiles.Certificate, *tls.Config, error) {
	cert, err := opts.TLS.Load()
	if err != nil {
		return nil, nil, err
	}
	clientTLS, err := tlsfiles.ClientConfig(opts.TLSCAFile)
	if err != nil {
		return nil, nil, err
	}
	return cert, clientTLS, nil
}

// startGateway runs the inference gateway and waits for its first routing table, so that the
// stack serves predictions as soon as Start returns.
func (s *Stack) startGateway(opts Options) error {
	gw, err := gateway.New(gateway.Options{DB: s.db, DatabaseURL: s.Postgres.URL, Logger: s.log,
		Registerer: prometheus.DefaultRegisterer, MaxBodyBytes: opts.MaxBodyBytes, UpstreamTimeout: opts.UpstreamTimeout,
		Temporal: s.tc, ColdStartTimeout: opts.ColdStartTimeout, WebsocketDrainTimeout: opts.WebsocketDrainTimeout,
		AsyncRateLimit: opts.AsyncRateLimit, MaxOpenAsync: opts.MaxOpenAsync, MaxAsyncAttempts: opts.MaxAsyncAttempts,
		WebhookAllowPrivate: opts.WebhookAllowPrivate, AsyncOutputRetention: opts.AsyncOutputRetention})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.gateway, s.stopGW, s.gwDone = gw, cancel, make(chan error, 1)
	go func() { s.gwDone <- gw.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !gw.Ready() {
		if time.Now().After(deadline) {
			return errors.New("gateway: routing table not loaded after 30s")
		}
		select {
		case err := <-s.gwDone:
			s.gwDone <- err
			return fmt.Errorf("gateway: %w", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// Served reports the API server's end: an error if it stopped on its own.
func (s *Stack) Served() <-chan error { return s.served }

// Close stops everything in the reverse order of Start, within ctx's deadline where the parts
// allow it.
func (s *Stack) Close(ctx context.Context) error {
	var errs []error
	if s.agent != nil {
		// dev is one process: its model servers end with it, so nothing is left running.
		s.agent.StopAll(5 * time.Second)
		s.stopAgent()
		if err := <-s.agentDone; err != nil {
			errs = append(errs, fmt.Errorf("agent: %w", err))
		}
	}
	if s.gpus != nil {
		_ = s.gpus.Close()
	}
	if s.http != nil {
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("api: %w", err))
		}
	}
	if s.stopLoop != nil {
		s.stopLoop()
		if err := <-s.loopDone; err != nil {
			errs = append(errs, fmt.Errorf("autoscaler: %w", err))
		}
	}
	if s.stopGW != nil {
		s.stopGW()
		if err := <-s.gwDone; err != nil {
			errs = append(errs, fmt.Errorf("gateway: %w", err))
		}
	}
	if s.worker != nil {
		s.worker.Stop()
	}
	if s.acts != nil {
		activities.StopAsyncListener(s.acts)
	}
	if s.tc != nil {
		s.tc.Close()
	}
	if s.temporal != nil {
		if err := s.temporal.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("temporal: %w", err))
		}
	}
	if s.db != nil {
		_ = s.db.Close()
	}
	if s.Postgres != nil {
		if err := s.Postgres.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("postgres: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ensureAdminKey makes sure the key file holds a working admin key of the default workspace.
// It returns the key when it had to create one (first start, or a database that does not
// know the key in the file), and "" otherwise.
func ensureAdminKey(ctx context.Context, db *sqlx.DB, path string) (string, error) {
	ws, _, err := store.EnsureWorkspace(ctx, db, DefaultWorkspace)
	if err != nil {
		return "", fmt.Errorf("workspace %s: %w", DefaultWorkspace, err)
	}
	if b, err := os.ReadFile(path); err == nil {
		if id, secret, err := apikey.Parse(strings.TrimSpace(string(b))); err == nil {
			k, err := store.APIKeyByID(ctx, db, id)
			if err == nil && k.RevokedAt == nil && k.WorkspaceID == ws.ID && apikey.Matches(k.SecretSHA256, secret) {
				return "", nil
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return "", err
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	_, text, err := apikey.Create(ctx, db, ws.ID, "dev admin", true)
	if err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text+"\n"), 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return text, nil
}

// ensureWebhookSecret makes the default workspace's webhook secret if it has none and keeps
// the file at path (0600) holding the current one, also after a rotation through the API.
func ensureWebhookSecret(ctx context.Context, db *sqlx.DB, path string) error {
	ws, _, err := store.EnsureWorkspace(ctx, db, DefaultWorkspace)
	if err != nil {
		return fmt.Errorf("workspace %s: %w", DefaultWorkspace, err)
	}
	secret, err := store.GetWebhookSecret(ctx, db, ws.ID)
	if errors.Is(err, store.ErrNotFound) {
		secret, err = store.RotateWebhookSecret(ctx, db, ws.ID)
	}
	if err != nil {
		return err
	}
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == secret.Secret {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(secret.Secret+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ensureToken returns the token kept in path, creating it (0600) on first start.
func ensureToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	t := modelplane.NewID(40)
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", err
	}
	return t, nil
}

// loadSecretsKey reads the key named by opts, or the data directory's, creating that one
// (0600) on first start.
func loadSecretsKey(opts Options) (*secretbox.Key, error) {
	if opts.SecretsKeyFile != "" || opts.SecretsKey != "" {
		return secretbox.Load(opts.SecretsKeyFile, opts.SecretsKey)
	}
	path := filepath.Join(opts.DataDir, SecretsKeyFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		text, err := secretbox.Generate()
		if err != nil {
			return nil, err
		}
		// O_EXCL: two stacks starting on one data directory must not each write a key.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, err = f.WriteString(text + "\n")
			err = errors.Join(err, f.Close())
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("secrets key: %w", err)
		}
	}
	return secretbox.Load(path, "")
}

// passableDataDir lets a root agent's replica users pass through the data directory to their
// own directories under its agent/: the data directory becomes 0711 (passable, not listable)
// and every other entry in it (keys, tokens, blobs, databases) loses all group and other
// access. Not root, the agent runs no replica users and nothing changes.
func passableDataDir(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "agent" || e.Type()&os.ModeSymlink != 0 {
			continue
		}
		// A file may go meanwhile (SQLite's journal): what is gone needs nothing. SQLite
		// makes its journals with its database's mode.
		info, err := e.Info()
		if err == nil {
			err = os.Chmod(filepath.Join(dir, e.Name()), info.Mode().Perm()&^0o077)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return os.Chmod(dir, 0o711)
}

// startAgent runs the local node agent, reporting to this stack's API.
func (s *Stack) startAgent(opts Options, nodeToken string, apiTLS *tls.Config) error {
	profile := opts.GPUProfile
	if profile == "" {
		profile = nvml.ProfileAuto
	}
	gpus, err := nvml.Open(profile, nvml.Options{Logger: s.log.With("component", "nvml")})
	if err != nil {
		return fmt.Errorf("--gpu-profile %s: %w", profile, err)
	}
	s.gpus = gpus
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.AgentURL = "http://" + ln.Addr().String()
	if err := passableDataDir(opts.DataDir); err != nil {
		ln.Close()
		return err
	}
	a, err := agent.New(agent.Config{
		Name: "dev", AdvertiseURL: s.AgentURL, APIURL: s.APIURL, Token: nodeToken,
		StateDir: filepath.Join(opts.DataDir, "agent"), Logger: s.log.With("component", "agent"),
		PythonIndexURL: opts.PythonIndexURL, PythonFindLinks: opts.PythonFindLinks, PythonPrewarm: opts.PythonPrewarm,
		HTTPTimeouts: opts.Timeouts, APITLS: apiTLS,
		ReplicaUIDs: opts.ReplicaUIDs, RequireIsolation: opts.RequireIsolation,
	}, gpus, agent.Runtimes{})
	if err != nil {
		ln.Close()
		return err
	}
	a.SetRuntimes(agent.Runtimes{Process: process.New(a.ID())})
	ctx, cancel := context.WithCancel(context.Background())
	s.agent, s.stopAgent, s.agentDone = a, cancel, make(chan error, 1)
	go func() { s.agentDone <- a.Run(ctx, ln) }()
	return nil
}
