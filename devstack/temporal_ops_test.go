package devstack_test

import (
	"context"
	"database/sql"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/common/config"
	tlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/temporal"

	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/internal/freeport"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/internal/temporalclient"
	"github.com/modelplane/modelplane/internal/temporalschema"
	"github.com/modelplane/modelplane/internal/tlsfiles/tlstest"
	"github.com/modelplane/modelplane/worker"
	"github.com/modelplane/modelplane/workflows/contract"
)

// greet is the workflow the round trips run: one timer, so the history has more than a start.
func greet(ctx workflow.Context, name string) (string, error) {
	if err := workflow.Sleep(ctx, time.Millisecond); err != nil {
		return "", err
	}
	return "hello " + name, nil
}

// roundTrip runs greet on a worker of tc's and waits for its result.
func roundTrip(t *testing.T, tc client.Client) {
	t.Helper()
	const queue = "ops-round-trip"
	w := sdkworker.New(tc, queue, sdkworker.Options{})
	w.RegisterWorkflow(greet)
	require.NoError(t, w.Start())
	defer w.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: queue}, greet, "operator")
	require.NoError(t, err)
	var got string
	require.NoError(t, run.Get(ctx, &got))
	require.Equal(t, "hello operator", got)
}

// visibilityURLBeside returns the URL of a database that does not exist yet on the server of
// dbURL, and drops it when the test ends.
func visibilityURLBeside(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	name := strings.TrimPrefix(u.Path, "/") + "_vis"
	u.Path = "/" + name
	t.Cleanup(func() {
		admin, err := sql.Open("postgres", pgtest.AdminURL())
		if err == nil {
			_, _ = admin.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`)
			_ = admin.Close()
		}
	})
	return u.String()
}

func TestTemporal_PostgresSchemaByTheSQLToolServesAWorkflowAndSetupAgainIsANoOp(t *testing.T) {
	defaultURL, drop, err := pgtest.Create("temporal")
	require.NoError(t, err)
	t.Cleanup(drop)
	visibilityURL := visibilityURLBeside(t, defaultURL)
	stores, err := temporalschema.Stores(defaultURL, visibilityURL)
	require.NoError(t, err)

	results, err := temporalschema.Setup(stores, true)
	require.NoError(t, err)
	require.Len(t, results, 2)
	require.False(t, results[0].Created, "the default store's database existed")
	require.Equal(t, temporalschema.DefaultVersion, results[0].To)
	require.True(t, results[1].Created, "the visibility store's database is created")
	require.Equal(t, temporalschema.VisibilityVersion, results[1].To)

	again, err := temporalschema.Setup(stores, true)
	require.NoError(t, err)
	for i, r := range again {
		require.False(t, r.Created, "%s: a second setup creates nothing", r.Database)
		require.Equal(t, results[i].To, r.From, "%s: a second setup starts where the first ended", r.Database)
		require.Equal(t, r.From, r.To, "%s: a second setup changes no version", r.Database)
	}

	srv, err := devstack.StartTemporal(devstack.TemporalOptions{DataDir: t.TempDir(), Namespace: "modelplane",
		Postgres: &devstack.TemporalPostgres{DatabaseURL: defaultURL, VisibilityURL: visibilityURL}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })

	cfg := temporalclient.Config{Address: srv.Address, Namespace: "modelplane"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tc, err := temporalclient.Dial(ctx, cfg, slog.Default())
	require.NoError(t, err)
	defer tc.Close()
	r, err := worker.Register(ctx, tc, "modelplane", 48*time.Hour)
	require.NoError(t, err)
	require.True(t, r.Created, "the namespace is registered through the frontend")
	have, err := tc.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "modelplane"})
	require.NoError(t, err)
	for name, typ := range contract.SearchAttributes() {
		require.Equal(t, typ, have.GetCustomAttributes()[name], "search attribute %s in PostgreSQL visibility", name)
	}
	roundTrip(t, tc)
}

func TestTemporal_MTLSFrontendAdmitsOnlyClientsWithCertificates(t *testing.T) {
	f := tlstest.MutualTLS(t, "temporal.test")
	srv, err := devstack.StartTemporal(devstack.TemporalOptions{DataDir: t.TempDir(), Namespace: "default",
		FrontendTLS: &devstack.FrontendTLS{CertFile: f.ServerCert, KeyFile: f.ServerKey, ClientCAFile: f.CA, ServerName: "temporal.test"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	dial := func(tls temporalclient.TLS) (client.Client, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return temporalclient.Dial(ctx, temporalclient.Config{Address: srv.Address, Namespace: "default", TLS: tls}, slog.Default())
	}

	tc, err := dial(temporalclient.TLS{CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey, ServerName: "temporal.test"})
	require.NoError(t, err, "a client with a certificate signed by the CA connects")
	roundTrip(t, tc)
	tc.Close()

	for _, tc := range []struct {
		name string
		tls  temporalclient.TLS
		want string
	}{
		{"plain", temporalclient.TLS{}, "set --temporal-tls"},
		{"TLS without a client certificate", temporalclient.TLS{CAFile: f.CA, ServerName: "temporal.test"}, "set --temporal-tls-cert-file"},
		{"a CA that did not sign the frontend", temporalclient.TLS{CAFile: tlstest.MutualTLS(t, "x").CA, CertFile: f.ClientCert, KeyFile: f.ClientKey, ServerName: "temporal.test"}, "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dial(tc.tls)
			if err == nil {
				c.Close()
			}
			require.Error(t, err, "the frontend must refuse a client without a valid certificate")
			require.Contains(t, err.Error(), "temporal at "+srv.Address)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestTemporal_DeployConfigServesOnPostgresWithMTLS starts the official server's code from
// deploy/temporal/config.yaml, as operators run it, with only the ports moved to free ones.
func TestTemporal_DeployConfigServesOnPostgresWithMTLS(t *testing.T) {
	defaultURL, drop, err := pgtest.Create("temporal")
	require.NoError(t, err)
	t.Cleanup(drop)
	visibilityURL := visibilityURLBeside(t, defaultURL)
	stores, err := temporalschema.Stores(defaultURL, visibilityURL)
	require.NoError(t, err)
	_, err = temporalschema.Setup(stores, true)
	require.NoError(t, err)

	def, err := temporalschema.SQLConfig(defaultURL)
	require.NoError(t, err)
	vis, err := temporalschema.SQLConfig(visibilityURL)
	require.NoError(t, err)
	host, port, err := net.SplitHostPort(def.ConnectAddr)
	require.NoError(t, err)
	ports, err := freeport.Pick(10)
	require.NoError(t, err)
	f := tlstest.MutualTLS(t, "temporal.test")
	for k, v := range map[string]string{
		"POSTGRES_SEEDS": host, "DB_PORT": port, "POSTGRES_USER": def.User, "POSTGRES_PWD": def.Password,
		"DBNAME": def.DatabaseName, "VISIBILITY_DBNAME": vis.DatabaseName, "NUM_HISTORY_SHARDS": "1",
		"BIND_ON_IP": "127.0.0.1", "TEMPORAL_BROADCAST_ADDRESS": "127.0.0.1",
		"FRONTEND_GRPC_PORT": strconv.Itoa(ports[0]), "PROMETHEUS_PORT": strconv.Itoa(ports[1]),
		"DYNAMIC_CONFIG_FILE_PATH": "../deploy/temporal/dynamicconfig.yaml", "LOG_LEVEL": "warn",
		"TEMPORAL_FRONTEND_TLS_CERT": f.ServerCert, "TEMPORAL_FRONTEND_TLS_KEY": f.ServerKey,
		"TEMPORAL_FRONTEND_TLS_CLIENT_CA": f.CA, "TEMPORAL_FRONTEND_TLS_CA": f.CA,
		"TEMPORAL_FRONTEND_TLS_SERVER_NAME": "temporal.test",
	} {
		t.Setenv(k, v)
	}
	cfg, err := config.Load(config.WithConfigFile("../deploy/temporal/config.yaml"))
	require.NoError(t, err)
	require.Equal(t, def.DatabaseName, cfg.Persistence.DataStores[cfg.Persistence.DefaultStore].SQL.DatabaseName)
	require.True(t, cfg.Global.TLS.Frontend.Server.RequireClientAuth, "a client CA turns mTLS on")
	// Other tests on this machine may hold the fixed internal ports.
	for i, name := range []string{"history", "matching", "worker"} {
		svc := cfg.Services[name]
		svc.RPC.GRPCPort, svc.RPC.MembershipPort = ports[2+2*i], ports[3+2*i]
		cfg.Services[name] = svc
	}
	fe := cfg.Services["frontend"]
	fe.RPC.MembershipPort = ports[8]
	cfg.Services["frontend"] = fe
	cfg.Global.PProf.Port = 0

	srv, err := temporal.NewServer(temporal.WithConfig(cfg), temporal.ForServices(temporal.DefaultServices),
		temporal.WithLogger(tlog.NewZapLogger(tlog.BuildZapLogger(tlog.Config{Level: "warn", OutputFile: filepath.Join(t.TempDir(), "temporal.log")}))))
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() { _ = srv.Stop() })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tc, err := temporalclient.Dial(ctx, temporalclient.Config{Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), Namespace: "modelplane",
		TLS: temporalclient.TLS{CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey, ServerName: "temporal.test"}}, slog.Default())
	require.NoError(t, err)
	defer tc.Close()
	_, err = worker.Register(ctx, tc, "modelplane", 24*time.Hour)
	require.NoError(t, err)
	roundTrip(t, tc)
}
