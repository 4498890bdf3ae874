package devstack

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	_ "modernc.org/sqlite" // the SQLite driver Temporal's file uses

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"

	"github.com/modelplane/modelplane/internal/freeport"
	"github.com/modelplane/modelplane/internal/temporalschema"
	"github.com/modelplane/modelplane/workflows/contract"
)

const clusterName = "active"

// TemporalOptions configure the in-process Temporal server.
type TemporalOptions struct {
	DataDir   string // the SQLite file is DataDir/temporal.db
	Namespace string
	Port      int // frontend gRPC port; 0 picks a free one
	UIPort    int // Temporal UI port; 0 picks a free one

	// Postgres, when set, keeps Temporal's stores in PostgreSQL, as operators run it, in
	// place of the SQLite file. The schema must be set up (temporalschema) and the namespace
	// is not registered here: worker.EnsureNamespace does that through the frontend.
	Postgres *TemporalPostgres
	// FrontendTLS, when set, makes the frontend serve TLS and require client certificates.
	// The UI is not started: it would need a client certificate of its own.
	FrontendTLS *FrontendTLS
}

// TemporalPostgres names the PostgreSQL databases of Temporal's default and visibility
// stores.
type TemporalPostgres struct {
	DatabaseURL   string
	VisibilityURL string
}

// FrontendTLS is the frontend's certificate and the CA its clients' certificates must be
// signed by. The server's own services dial the frontend with the same certificate, which
// must therefore be valid for ServerName as a client too.
type FrontendTLS struct {
	CertFile, KeyFile string
	ClientCAFile      string
	ServerName        string
}

// Temporal is an in-process Temporal server on SQLite with the Temporal UI in front of it.
type Temporal struct {
	// Address is the frontend's host:port for clients.
	Address string
	// UIURL is where the Temporal UI answers.
	UIURL string

	server temporal.Server
	ui     *uiserver.Server
	uiDone chan struct{}
}

// StartTemporal starts Temporal with its history in DataDir, so that a restart on the same
// directory keeps every workflow, and registers the namespace with modelplane's search
// attributes.
func StartTemporal(opts TemporalOptions) (*Temporal, error) {
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	frontend, err := portOrFree(opts.Port)
	if err != nil {
		return nil, fmt.Errorf("temporal frontend port %d: %w", opts.Port, err)
	}
	if opts.UIPort != 0 {
		if err := freeport.Check(opts.UIPort); err != nil {
			return nil, fmt.Errorf("temporal UI port %d: %w", opts.UIPort, err)
		}
	}
	cfg, err := serverConfig(opts.DataDir, frontend)
	if err != nil {
		return nil, err
	}
	if opts.FrontendTLS != nil {
		cfg.Global.TLS = frontendTLS(*opts.FrontendTLS)
	}
	if opts.Postgres != nil {
		if cfg.Persistence, err = postgresPersistence(*opts.Postgres); err != nil {
			return nil, err
		}
	} else if err := prepareSQLite(cfg, opts.Namespace); err != nil {
		return nil, err
	}

	logger := log.NewZapLogger(log.BuildZapLogger(log.Config{
		Level: "warn", OutputFile: filepath.Join(opts.DataDir, "temporal.log"),
	}))
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithLogger(logger),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			// Search attributes added at start are usable at once, not after a cache refresh.
			dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("temporal: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("temporal: start: %w", err)
	}
	t := &Temporal{
		Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(frontend)),
		server:  srv,
		uiDone:  make(chan struct{}),
	}
	if opts.FrontendTLS != nil {
		return t, nil
	}
	if err := t.startUI(opts.UIPort, opts.Namespace); err != nil {
		_ = srv.Stop()
		return nil, err
	}
	return t, nil
}

// prepareSQLite creates the SQLite file's schema on first start and registers the namespace
// with modelplane's search attributes.
func prepareSQLite(cfg *config.Config, namespace string) error {
	sqlCfg := cfg.Persistence.DataStores[sqliteplugin.PluginName].SQL
	if _, err := os.Stat(sqlCfg.DatabaseName); errors.Is(err, os.ErrNotExist) {
		if err := sqlite.SetupSchema(sqlCfg); err != nil {
			return fmt.Errorf("temporal: create SQLite schema: %w", err)
		}
	} else if err := forgetMembers(sqlCfg.DatabaseName); err != nil {
		return err
	}
	ns, err := sqlite.NewNamespaceConfig(clusterName, namespace, false,
		map[string]enumspb.IndexedValueType(contract.SearchAttributes()))
	if err != nil {
		return err
	}
	if err := sqlite.CreateNamespaces(sqlCfg, ns); err != nil {
		return fmt.Errorf("temporal: create namespace %s: %w", namespace, err)
	}
	return nil
}

// postgresPersistence is deploy/temporal/config.yaml's persistence: the postgres12 plugin,
// one database per store.
func postgresPersistence(pg TemporalPostgres) (config.Persistence, error) {
	stores, err := temporalschema.Stores(pg.DatabaseURL, pg.VisibilityURL)
	if err != nil {
		return config.Persistence{}, err
	}
	def, err := temporalschema.SQLConfig(stores[0].URL)
	if err != nil {
		return config.Persistence{}, err
	}
	vis, err := temporalschema.SQLConfig(stores[1].URL)
	if err != nil {
		return config.Persistence{}, err
	}
	return config.Persistence{
		DefaultStore: "default", VisibilityStore: "visibility", NumHistoryShards: 1,
		DataStores: map[string]config.DataStore{"default": {SQL: def}, "visibility": {SQL: vis}},
	}, nil
}

// frontendTLS serves the frontend over mTLS and has the server's own workers present the
// same certificate to it.
func frontendTLS(t FrontendTLS) config.RootTLS {
	client := config.ClientTLS{RootCAFiles: []string{t.ClientCAFile}, ServerName: t.ServerName}
	return config.RootTLS{
		Frontend: config.GroupTLS{
			Server: config.ServerTLS{CertFile: t.CertFile, KeyFile: t.KeyFile,
				ClientCAFiles: []string{t.ClientCAFile}, RequireClientAuth: true},
			Client: client,
		},
		SystemWorker: config.WorkerTLS{CertFile: t.CertFile, KeyFile: t.KeyFile, Client: client},
	}
}

// startUI serves the UI on port, or on a free port when port is 0. The UI server exits the
// process if it cannot listen, so the port is checked just before (and a free one picked only
// then, outside the ephemeral range: see freeport).
func (t *Temporal) startUI(port int, namespace string) error {
	if port == 0 {
		var err error
		if port, err = freeport.One(); err != nil {
			return fmt.Errorf("temporal UI port: %w", err)
		}
	} else if err := freeport.Check(port); err != nil {
		return fmt.Errorf("temporal UI port %d: %w", port, err)
	}
	t.UIURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	t.ui = uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
		TemporalGRPCAddress: t.Address,
		Host:                "127.0.0.1",
		Port:                port,
		EnableUI:            true,
		DefaultNamespace:    namespace,
		HideLogs:            true,
		CORS:                uiconfig.CORS{CookieInsecure: true},
	}))
	go func() {
		defer close(t.uiDone)
		_ = t.ui.Start()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return waitHTTP(ctx, t.UIURL+"/healthz")
}

// forgetMembers removes the cluster membership that the previous run left in the file. Only
// this process serves the file, so every recorded host is dead; left in place, they own shards
// until their records expire, which stalls the first seconds of the new run and its shutdown.
func forgetMembers(path string) error {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM cluster_membership`); err != nil {
		return fmt.Errorf("temporal: clear stale cluster membership in %s: %w", path, err)
	}
	return nil
}

// Stop stops the UI and the server.
func (t *Temporal) Stop() error {
	if t.ui != nil {
		t.ui.Stop()
		<-t.uiDone
	}
	return t.server.Stop()
}

func serverConfig(dataDir string, frontendPort int) (*config.Config, error) {
	ports, err := freeport.Pick(8)
	if err != nil {
		return nil, err
	}
	svc := func(grpc, membership int) config.Service {
		return config.Service{RPC: config.RPC{GRPCPort: grpc, MembershipPort: membership, BindOnIP: "127.0.0.1"}}
	}
	return &config.Config{
		Global: config.Global{
			Membership: config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: "127.0.0.1"},
			Metrics: &metrics.Config{Prometheus: &metrics.PrometheusConfig{
				ListenAddress: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[7])), HandlerPath: "/metrics",
			}},
		},
		Persistence: config.Persistence{
			DefaultStore:     sqliteplugin.PluginName,
			VisibilityStore:  sqliteplugin.PluginName,
			NumHistoryShards: 1,
			DataStores: map[string]config.DataStore{sqliteplugin.PluginName: {SQL: &config.SQL{
				PluginName:        sqliteplugin.PluginName,
				DatabaseName:      filepath.Join(dataDir, "temporal.db"),
				ConnectAttributes: map[string]string{"mode": "rwc", "_journal_mode": "wal", "_synchronous": "1"},
			}}},
		},
		ClusterMetadata: &cluster.Config{
			FailoverVersionIncrement: 10,
			MasterClusterName:        clusterName,
			CurrentClusterName:       clusterName,
			ClusterInformation: map[string]cluster.ClusterInformation{clusterName: {
				Enabled: true, InitialFailoverVersion: 1,
				RPCAddress: net.JoinHostPort("127.0.0.1", strconv.Itoa(frontendPort)),
			}},
		},
		DCRedirectionPolicy: config.DCRedirectionPolicy{Policy: "noop"},
		Services: map[string]config.Service{
			"frontend": svc(frontendPort, ports[0]),
			"history":  svc(ports[1], ports[2]),
			"matching": svc(ports[3], ports[4]),
			"worker":   svc(ports[5], ports[6]),
		},
		Archival: config.Archival{
			History:    config.HistoryArchival{State: "disabled"},
			Visibility: config.VisibilityArchival{State: "disabled"},
		},
		NamespaceDefaults: config.NamespaceDefaults{Archival: config.ArchivalNamespaceDefaults{
			History:    config.HistoryArchivalNamespaceDefaults{State: "disabled"},
			Visibility: config.VisibilityArchivalNamespaceDefaults{State: "disabled"},
		}},
		PublicClient: config.PublicClient{HostPort: net.JoinHostPort("127.0.0.1", strconv.Itoa(frontendPort))},
	}, nil
}

// portOrFree returns port after checking it is free, or a free port when port is 0.
func portOrFree(port int) (int, error) {
	if port == 0 {
		return freeport.One()
	}
	return port, freeport.Check(port)
}

// waitHTTP polls url until it answers 200 or ctx ends.
func waitHTTP(ctx context.Context, url string) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer 200: %w", url, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
