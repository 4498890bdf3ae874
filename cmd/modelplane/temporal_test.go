package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/internal/temporalclient"
	"github.com/modelplane/modelplane/internal/temporalschema"
	"github.com/modelplane/modelplane/worker"
)

func TestWorkerConcurrencyFlags_ReachWorkerOptions(t *testing.T) {
	cmd := &cobra.Command{Use: "worker"}
	var c worker.Concurrency
	workerConcurrencyFlags(cmd, &c)
	require.NoError(t, cmd.ParseFlags([]string{
		"--max-concurrent-activities=21", "--max-concurrent-local-activities=22", "--max-concurrent-workflow-tasks=23",
		"--activity-pollers=3", "--workflow-task-pollers=4", "--activities-per-second=2.5", "--task-queue-activities-per-second=9",
	}))
	require.NoError(t, c.Check())
	require.Equal(t, sdkworker.Options{
		MaxConcurrentActivityExecutionSize: 21, MaxConcurrentLocalActivityExecutionSize: 22, MaxConcurrentWorkflowTaskExecutionSize: 23,
		MaxConcurrentActivityTaskPollers: 3, MaxConcurrentWorkflowTaskPollers: 4,
		WorkerActivitiesPerSecond: 2.5, TaskQueueActivitiesPerSecond: 9,
	}, c.Options())
}

func TestWorkerConcurrencyFlags_DefaultToTheSDKs(t *testing.T) {
	cmd := &cobra.Command{Use: "worker"}
	var c worker.Concurrency
	workerConcurrencyFlags(cmd, &c)
	require.NoError(t, cmd.ParseFlags(nil))
	require.Equal(t, worker.DefaultConcurrency(), c)
}

func TestWorkerConcurrencyFlags_ReadTheEnvironment(t *testing.T) {
	t.Setenv("MODELPLANE_MAX_CONCURRENT_ACTIVITIES", "7")
	t.Setenv("MODELPLANE_WORKFLOW_TASK_POLLERS", "6")
	cmd := &cobra.Command{Use: "worker"}
	var c worker.Concurrency
	workerConcurrencyFlags(cmd, &c)
	require.NoError(t, cmd.ParseFlags(nil))
	require.Equal(t, 7, c.MaxConcurrentActivities)
	require.Equal(t, 6, c.WorkflowTaskPollers)
}

func TestTemporalTLSFlags_ReadTheTemporalCLIsVariables(t *testing.T) {
	t.Setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "/ca.pem")
	t.Setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", "/cert.pem")
	t.Setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", "/key.pem")
	t.Setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.internal")
	cmd := &cobra.Command{Use: "api"}
	var tls temporalclient.TLS
	temporalTLSFlags(cmd, &tls)
	require.NoError(t, cmd.ParseFlags(nil))
	require.Equal(t, temporalclient.TLS{CAFile: "/ca.pem", CertFile: "/cert.pem", KeyFile: "/key.pem", ServerName: "temporal.internal"}, tls)
	require.True(t, tls.On(), "naming a file turns TLS on")
}

func TestTemporalTLSFlags_OnEveryRoleThatDialsTemporal(t *testing.T) {
	root := newRootCmd()
	for _, name := range []string{"api", "worker", "gateway", "dev"} {
		cmd, _, err := root.Find([]string{name})
		require.NoError(t, err, name)
		for _, flag := range []string{"temporal-tls", "temporal-tls-ca-file", "temporal-tls-cert-file", "temporal-tls-key-file", "temporal-tls-server-name"} {
			require.NotNil(t, cmd.Flags().Lookup(flag), "%s has no --%s", name, flag)
		}
	}
}

// runRoot runs the command line in this process and returns what it printed.
func runRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestTemporalSetupSchema_CreatesTheStoresThenHasNothingToDo(t *testing.T) {
	defaultURL, drop, err := pgtest.Create("tschema")
	require.NoError(t, err)
	t.Cleanup(drop)
	u, err := url.Parse(defaultURL)
	require.NoError(t, err)
	vis := strings.TrimPrefix(u.Path, "/") + "_vis"
	u.Path = "/" + vis
	t.Cleanup(func() {
		if admin, err := sql.Open("postgres", pgtest.AdminURL()); err == nil {
			_, _ = admin.Exec(`DROP DATABASE IF EXISTS ` + vis + ` WITH (FORCE)`)
			_ = admin.Close()
		}
	})

	out, err := runRoot(t, "temporal", "setup-schema", "--database-url", defaultURL, "--visibility-database-url", u.String())
	require.NoError(t, err, out)
	require.Contains(t, out, fmt.Sprintf("schema from version \"\" to %s", temporalschema.DefaultVersion))
	require.Contains(t, out, fmt.Sprintf("%s: created, schema at version %s", vis, temporalschema.VisibilityVersion))

	out, err = runRoot(t, "temporal", "setup-schema", "--database-url", defaultURL, "--visibility-database-url", u.String())
	require.NoError(t, err, out)
	require.Equal(t, 2, strings.Count(out, "nothing to do"), "a second run changes nothing:\n%s", out)
}

func TestTemporalSetupSchema_WithoutADatabaseURLSaysWhichFlag(t *testing.T) {
	t.Setenv("TEMPORAL_DATABASE_URL", "")
	_, err := runRoot(t, "temporal", "setup-schema")
	require.ErrorContains(t, err, "--database-url")
}

func TestTemporalRegister_UnreachableFrontendFailsWithItsAddress(t *testing.T) {
	addr := freeAddr(t)
	_, err := runRoot(t, "temporal", "register", "--temporal-address", addr, "--timeout", "2s")
	require.Error(t, err)
	require.Contains(t, err.Error(), "temporal at "+addr)
}
