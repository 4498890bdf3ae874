package worker_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporaltest"

	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/worker"
	"github.com/modelplane/modelplane/workflows"
	"github.com/modelplane/modelplane/workflows/contract"
)

var dbURL string

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m, "worker", true, &dbURL)) }

func TestEnsureSearchAttributes_RegistersOnceAndIsIdempotent(t *testing.T) {
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	ctx := context.Background()

	require.NoError(t, worker.EnsureSearchAttributes(ctx, c, ts.GetDefaultNamespace()))
	require.NoError(t, worker.EnsureSearchAttributes(ctx, c, ts.GetDefaultNamespace()), "second registration must be a no-op")

	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ts.GetDefaultNamespace()})
	require.NoError(t, err)
	for name, typ := range contract.SearchAttributes() {
		require.Equal(t, typ, have.GetCustomAttributes()[name], "search attribute %s", name)
	}
}

func TestEnsureSchedules_CreatesCleanupOnce(t *testing.T) {
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	ctx := context.Background()

	require.NoError(t, worker.EnsureSchedules(ctx, c))
	require.NoError(t, worker.EnsureSchedules(ctx, c), "a second worker start must not fail on the existing schedule")

	desc, err := c.ScheduleClient().GetHandle(ctx, contract.CleanupScheduleID).Describe(ctx)
	require.NoError(t, err)
	require.Len(t, desc.Schedule.Spec.Intervals, 1)
	require.Equal(t, contract.CleanupInterval, desc.Schedule.Spec.Intervals[0].Every)
}

func TestCleanupWorkflow_DeletesOldLoadSamplesOnRealServer(t *testing.T) {
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()

	ws, _, err := store.EnsureWorkspace(ctx, db, "cleanup")
	require.NoError(t, err)
	m, err := store.CreateModel(ctx, db, ws.ID, "m")
	require.NoError(t, err)
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: ws.ID})
	require.NoError(t, err)
	now := time.Now().UTC().Truncate(time.Second)
	require.NoError(t, store.InsertLoadSamples(ctx, db, []store.LoadSample{
		{DeploymentID: d.ID, GatewayID: "g1", At: now.Add(-3 * time.Hour), Concurrency: 1},
		{DeploymentID: d.ID, GatewayID: "g1", At: now.Add(-time.Minute), Concurrency: 2},
	}))

	w := worker.New(c, &activities.Activities{DB: db})
	require.NoError(t, w.Start())
	defer w.Stop()

	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: contract.TaskQueue},
		workflows.Cleanup, contract.DefaultCleanupInput())
	require.NoError(t, err)
	var res contract.CleanupResult
	require.NoError(t, run.Get(ctx, &res))
	require.EqualValues(t, 1, res.LoadSamplesDeleted)

	var left int
	require.NoError(t, db.Get(&left, `SELECT count(*) FROM load_samples WHERE deployment_id = $1`, d.ID))
	require.Equal(t, 1, left, "the recent sample must be kept")
}
