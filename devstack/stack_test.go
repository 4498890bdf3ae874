package devstack_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/internal/proctest"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows"
	"github.com/modelplane/modelplane/workflows/contract"
)

var dbURL string

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m, "devstack", false, &dbURL)) }

func startStack(t *testing.T, opts devstack.Options) *devstack.Stack {
	t.Helper()
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := devstack.Start(ctx, opts)
	require.NoError(t, err)
	return s
}

func closeStack(t *testing.T, s *devstack.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, s.Close(ctx))
	require.Less(t, time.Since(start), 10*time.Second, "stopping the stack must take under 10s")
}

func get(t *testing.T, url, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Api-Key "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// getBearer is get with Authorization: Bearer token.
func getBearer(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReady polls /readyz until it answers 200.
func waitReady(t *testing.T, apiURL string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := get(t, apiURL+"/readyz", "")
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after 60s: %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestStack_ServesAndRestartKeepsDataAndWorkflows(t *testing.T) {
	dir := t.TempDir()
	opts := devstack.Options{DataDir: dir, Postgres: devstack.PostgresOptions{DatabaseURL: dbURL}}
	var out strings.Builder
	opts.Out = &out

	s := startStack(t, opts)
	waitReady(t, s.APIURL)

	// The Temporal UI answers.
	code, body := get(t, s.TemporalUIURL+"/", "")
	require.Equal(t, http.StatusOK, code, "Temporal UI: %.200s", body)
	require.Contains(t, strings.ToLower(body), "<html")

	// First start: an admin key, in a 0600 file, printed once, that the API accepts.
	require.NotEmpty(t, s.NewAPIKey)
	require.Contains(t, out.String(), s.NewAPIKey)
	st, err := os.Stat(filepath.Join(dir, devstack.KeyFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	code, body = get(t, s.APIURL+"/v1/models", s.NewAPIKey)
	require.Equal(t, http.StatusOK, code, body)
	// And the workspace's webhook secret, in a 0600 file.
	st, err = os.Stat(filepath.Join(dir, devstack.WebhookSecretFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	webhookSecret, err := os.ReadFile(filepath.Join(dir, devstack.WebhookSecretFile))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(webhookSecret), "whsec_"), "webhook secret file: %q", webhookSecret)
	code, body = get(t, s.APIURL+"/v1/webhook_secret", s.NewAPIKey)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"exists":true`)
	// And the key that seals workspace secrets, in a 0600 file: the secrets routes answer.
	st, err = os.Stat(filepath.Join(dir, devstack.SecretsKeyFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	secretsKey, err := os.ReadFile(filepath.Join(dir, devstack.SecretsKeyFile))
	require.NoError(t, err)
	code, body = get(t, s.APIURL+"/v1/secrets", s.NewAPIKey)
	require.Equal(t, http.StatusOK, code, body)
	// And the metrics token, in a 0600 file: /metrics, which names every workspace's models
	// and deployments, answers it and nothing else, not even an admin key.
	st, err = os.Stat(filepath.Join(dir, devstack.MetricsTokenFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	metricsToken, err := os.ReadFile(filepath.Join(dir, devstack.MetricsTokenFile))
	require.NoError(t, err)
	require.Equal(t, s.MetricsToken, strings.TrimSpace(string(metricsToken)))
	code, _ = get(t, s.APIURL+"/metrics", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = get(t, s.APIURL+"/metrics", s.NewAPIKey)
	require.Equal(t, http.StatusUnauthorized, code)
	code, body = getBearer(t, s.APIURL+"/metrics", s.MetricsToken)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "modelplane_api_requests_total")

	// Search attributes are registered on the namespace.
	tc, err := client.Dial(client.Options{HostPort: s.TemporalAddress})
	require.NoError(t, err)
	sa, err := tc.OperatorService().ListSearchAttributes(context.Background(),
		&operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	require.NoError(t, err)
	for name := range contract.SearchAttributes() {
		require.Contains(t, sa.GetCustomAttributes(), name)
	}

	// A workflow that waits on a queue nobody polls: it must survive the restart.
	run, err := tc.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: "survives-restart", TaskQueue: "nobody-polls-this",
	}, workflows.Cleanup, contract.DefaultCleanupInput())
	require.NoError(t, err)
	tc.Close()
	closeStack(t, s)

	out.Reset()
	s2 := startStack(t, opts)
	defer closeStack(t, s2)
	waitReady(t, s2.APIURL)
	require.Empty(t, s2.NewAPIKey, "restart must keep the existing key")
	require.NotContains(t, out.String(), "mp_", "the key must be printed only on first start")
	b, err := os.ReadFile(filepath.Join(dir, devstack.KeyFile))
	require.NoError(t, err)
	code, _ = get(t, s2.APIURL+"/v1/models", strings.TrimSpace(string(b)))
	require.Equal(t, http.StatusOK, code, "the saved key must still work after a restart")
	b, err = os.ReadFile(filepath.Join(dir, devstack.WebhookSecretFile))
	require.NoError(t, err)
	require.Equal(t, string(webhookSecret), string(b), "restart must keep the webhook secret")
	b, err = os.ReadFile(filepath.Join(dir, devstack.SecretsKeyFile))
	require.NoError(t, err)
	require.Equal(t, string(secretsKey), string(b), "restart must keep the secrets key")
	require.Equal(t, s.MetricsToken, s2.MetricsToken, "restart must keep the metrics token")

	tc2, err := client.Dial(client.Options{HostPort: s2.TemporalAddress})
	require.NoError(t, err)
	defer tc2.Close()
	desc, err := tc2.DescribeWorkflowExecution(context.Background(), "survives-restart", run.GetRunID())
	require.NoError(t, err, "workflow started before the restart must still exist")
	require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.WorkflowExecutionInfo.Status)
}

func TestStack_PrivatePostgresClusterAndCleanShutdown(t *testing.T) {
	if _, err := exec.LookPath("pg_ctl"); err != nil {
		if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl"); len(m) == 0 {
			t.Fatal("the PostgreSQL server binaries (initdb, pg_ctl) must be installed for this test")
		}
	}
	dir := t.TempDir()
	// The cluster runs as the postgres user when the test runs as root: it must be able to
	// pass through the test's temporary directory.
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o711))
	opts := devstack.Options{DataDir: dir, Postgres: devstack.PostgresOptions{LocalURL: closedPortURL(t)}}
	s := startStack(t, opts)
	require.Equal(t, "private cluster", s.Postgres.Source)
	waitReady(t, s.APIURL)
	require.NotEmpty(t, processesMentioning(filepath.Join(dir, "postgres")), "the private cluster should be running")
	closeStack(t, s)

	require.Empty(t, processesMentioning(dir), "processes left running after Close")
	require.Empty(t, childrenOf(os.Getpid()), "child processes left after Close")

	// The cluster keeps its data: a second start finds the admin key's workspace again.
	s2 := startStack(t, opts)
	require.Empty(t, s2.NewAPIKey)
	closeStack(t, s2)
	require.Empty(t, processesMentioning(dir))
}

func TestStartPostgres_SaysWhatWasTriedWhenNothingWorks(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notADir, nil, 0o600))
	local := closedPortURL(t)
	_, err := devstack.StartPostgres(context.Background(), devstack.PostgresOptions{LocalURL: local, DataDir: notADir})
	require.Error(t, err)
	msg := err.Error()
	require.NotContains(t, msg, "\n", "one line")
	require.Contains(t, msg, "DATABASE_URL is unset")
	require.Contains(t, msg, strings.TrimPrefix(strings.Split(local, "@")[1], ""))
	require.Contains(t, msg, "private cluster in "+filepath.Join(notADir, "postgres"))
}

func TestStartPostgres_BadDatabaseURLIsAnError(t *testing.T) {
	_, err := devstack.StartPostgres(context.Background(), devstack.PostgresOptions{DatabaseURL: closedPortURL(t)})
	require.ErrorContains(t, err, "DATABASE_URL")
}

// closedPortURL is a PostgreSQL URL on a port nothing listens on.
func closedPortURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(port) + "/modelplane?sslmode=disable"
}

// processesMentioning lists the processes whose command line contains s.
func processesMentioning(s string) []proctest.Process {
	return proctest.Where(func(p proctest.Process) bool { return strings.Contains(p.Cmdline, s) })
}

// childrenOf lists the live children of pid.
func childrenOf(pid int) []proctest.Process {
	return proctest.Where(func(p proctest.Process) bool { return p.PPID == pid })
}

func TestStack_ExternalTemporalStartsNoServerOrUI(t *testing.T) {
	embedded := startStack(t, devstack.Options{DataDir: t.TempDir(), Postgres: devstack.PostgresOptions{DatabaseURL: dbURL}})
	defer closeStack(t, embedded)

	dir := t.TempDir()
	s := startStack(t, devstack.Options{DataDir: dir, TemporalAddress: embedded.TemporalAddress,
		Postgres: devstack.PostgresOptions{DatabaseURL: dbURL}})
	require.Equal(t, embedded.TemporalAddress, s.TemporalAddress)
	require.Empty(t, s.TemporalUIURL, "no UI is started for an external cluster")
	waitReady(t, s.APIURL)
	closeStack(t, s)
	_, err := os.Stat(filepath.Join(dir, "temporal.db"))
	require.ErrorIs(t, err, os.ErrNotExist, "no embedded server history may be created")

	// The external cluster is still serving after the second stack stopped.
	waitReady(t, embedded.APIURL)
}

// TestStack_LocalAgentRegistersAndItsReplicasStopWithTheStack also checks, run as root, that
// the agent's replicas run as users of their own and that everything of the stack's in the
// data directory is closed to them.
func TestStack_LocalAgentRegistersAndItsReplicasStopWithTheStack(t *testing.T) {
	dir := t.TempDir()
	// Replica users must pass through the directories above the data directory.
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o711))
	s := startStack(t, devstack.Options{DataDir: dir, GPUProfile: "h200", Postgres: devstack.PostgresOptions{DatabaseURL: dbURL}})
	stopped := false
	defer func() {
		if !stopped {
			closeStack(t, s)
		}
	}()

	// The agent reports to the stack's API: the node and its GPU are listed.
	require.Eventually(t, func() bool {
		code, body := get(t, s.APIURL+"/v1/nodes", s.NewAPIKey)
		return code == http.StatusOK && strings.Contains(body, `"name":"dev"`) && strings.Contains(body, "NVIDIA H200")
	}, 20*time.Second, 100*time.Millisecond)

	// A model server started through the agent...
	pkgDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(pkgDir, "config.yaml"),
		[]byte("model_name: sleeper\ncommand: [\"/bin/sh\", \"-c\", \"exec sleep 299.123\"]\n"), 0o644))
	archive := filepath.Join(t.TempDir(), "p.tar.gz")
	f, err := os.Create(archive)
	require.NoError(t, err)
	sum, err := modelpkg.Pack(pkgDir, f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	token, err := os.ReadFile(filepath.Join(dir, devstack.NodeTokenFile))
	require.NoError(t, err)
	c := agentproto.NewClient(s.AgentURL, strings.TrimSpace(string(token)))
	_, err = c.StartReplica(context.Background(), agentproto.StartRequest{ReplicaID: "sleeper-1", DeploymentID: "dep00001",
		ArchiveURL: "file://" + archive, ArchiveSHA256: sum, Resources: modelplane.GPURequest{GPUCount: 1}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return len(processesMentioning("sleep 299.123")) > 0
	}, 10*time.Second, 50*time.Millisecond)
	if os.Geteuid() == 0 {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", processesMentioning("sleep 299.123")[0].PID))
		require.NoError(t, err)
		require.Regexp(t, `(?m)^Uid:\s+7\d{4}\s`, string(status), "the model server runs as a replica user")
		_, body := get(t, s.APIURL+"/v1/nodes", s.NewAPIKey)
		require.Contains(t, body, `"isolation":{"mode":"replica-users","uids":"70000-79999"}`)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // SQLite's journal, gone meanwhile
			}
			require.NoError(t, err)
			if e.Name() != "agent" {
				require.Zero(t, info.Mode().Perm()&0o077, "%s is the stack's alone", e.Name())
			}
		}
		info, err := os.Stat(dir)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o711), info.Mode().Perm(), "the data directory is passable, not listable")
	}

	// ...ends with the stack.
	closeStack(t, s)
	stopped = true
	require.Empty(t, processesMentioning("sleep 299.123"), "dev's model servers must stop with it")
}

// TestStack_RefusesADatabaseThatAnotherTemporalHistoryRuns starts dev on a second data
// directory over a database: accepted while the database holds nothing a workflow carries,
// refused (naming the data directory that goes with it) once it holds a deployment that
// another history runs, and accepted again with the data directory whose history it is.
func TestStack_RefusesADatabaseThatAnotherTemporalHistoryRuns(t *testing.T) {
	own, drop, err := pgtest.Create("devstack")
	require.NoError(t, err)
	t.Cleanup(drop)
	first, second := t.TempDir(), t.TempDir()
	opts := func(dir string) devstack.Options {
		return devstack.Options{DataDir: dir, Listen: "127.0.0.1:0", Postgres: devstack.PostgresOptions{DatabaseURL: own}}
	}
	closeStack(t, startStack(t, opts(first)))
	// Nothing of the first history's to lose: the second takes the database.
	closeStack(t, startStack(t, opts(second)))

	ctx := context.Background()
	db, err := store.Open(ctx, own)
	require.NoError(t, err)
	defer db.Close()
	ws, _, err := store.EnsureWorkspace(ctx, db, devstack.DefaultWorkspace)
	require.NoError(t, err)
	m, err := store.CreateModel(ctx, db, ws.ID, "kept")
	require.NoError(t, err)
	_, err = store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: ws.ID})
	require.NoError(t, err)

	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	_, err = devstack.Start(sctx, opts(first))
	require.ErrorIs(t, err, devstack.ErrOtherHistory, "the first data directory's history no longer goes with the database")
	require.Contains(t, err.Error(), "--data-dir "+second, "the refusal names the data directory that goes with the database")

	s := startStack(t, opts(second))
	closeStack(t, s)
}
