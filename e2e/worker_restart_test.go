package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/worker"
	"github.com/modelplane/modelplane/workflows/contract"
)

// TestPromotion_WorkerRestartedMidwayFinishesWithOneNewDeployment stops the only worker while
// a promotion from development is waiting for its new deployment, starts another, and checks
// that the promotion completes with exactly one new deployment.
func TestPromotion_WorkerRestartedMidwayFinishesWithOneNewDeployment(t *testing.T) {
	h, tc, newWorker := startWithoutWorker(t)
	ctx := context.Background()
	w := newWorker()

	archive := echoArchive(t, h)
	modelID, dev := h.createModel("echo-restart", archive, true)

	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/development/promote", map[string]any{})
	require.Equal(t, http.StatusOK, code, "%v", body)
	// Stop the worker once the promotion has made its candidate, before it switched.
	require.Eventually(t, func() bool {
		e, err := h.api.Environment(context.Background(), modelID, "production")
		return err == nil && e.CandidateDeployment != nil
	}, 60*time.Second, 50*time.Millisecond, "the promotion never made its candidate")
	w.Stop()
	e, err := h.api.Environment(context.Background(), modelID, "production")
	require.NoError(t, err)
	require.Nil(t, e.CurrentDeployment, "the switch must not have happened before the restart")

	w = newWorker()
	defer w.Stop()
	prod := h.waitCurrent(modelID, "production", "", dev)
	ds, err := h.api.Deployments(context.Background(), modelID)
	require.NoError(t, err)
	require.Len(t, ds, 2, "development and exactly one new deployment")

	// The model's workflows are found by its ID, as the Temporal UI finds them.
	ids := map[string]bool{}
	require.Eventually(t, func() bool {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: "ModelId = '" + modelID + "'"})
		if err != nil {
			return false
		}
		for _, ex := range resp.Executions {
			ids[ex.Execution.WorkflowId] = true
		}
		return ids[contract.DeploymentWorkflowID(prod)] && ids[contract.PromotionWorkflowID(modelID, "production")]
	}, 20*time.Second, 200*time.Millisecond, "the model's deployment and promotion workflows are found by ModelId: %v", ids)
}

// TestCanary_WorkerRestartedMidRampContinuesAtTheSameStage stops the only worker while a
// canary ramp is at 30% or more and starts another later: the ramp goes on from its stage,
// each stage once, to the switch.
func TestCanary_WorkerRestartedMidRampContinuesAtTheSameStage(t *testing.T) {
	h, _, newWorker := startWithoutWorker(t)
	ctx := context.Background()
	w := newWorker()
	modelID, first, second := canaryModel(t, h, map[string]any{"ramp_up_while_promoting": true, "ramp_up_duration_seconds": 30})
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+second+"/promote", map[string]any{})
	require.Equal(t, http.StatusOK, code, "%v", body)
	var at int
	require.Eventually(t, func() bool {
		e, err := h.api.Environment(ctx, modelID, "production")
		if err != nil || e.InProgressPromotion == nil {
			return false
		}
		at = e.InProgressPromotion.PercentTrafficToNewVersion
		return at >= 30
	}, 60*time.Second, 50*time.Millisecond)
	w.Stop()
	time.Sleep(4 * time.Second) // longer than a stage: its timer fires with no worker to see it
	e, err := h.api.Environment(ctx, modelID, "production")
	require.NoError(t, err)
	require.NotNil(t, e.InProgressPromotion)
	require.Equal(t, first, e.CurrentDeployment.ID)
	stopped := e.InProgressPromotion.PercentTrafficToNewVersion

	w = newWorker()
	defer w.Stop()
	h.waitCurrent(modelID, "production", second, "")
	var got []int
	for _, s := range h.stages(modelID) {
		got = append(got, s.percent)
	}
	require.Equal(t, []int{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}, got,
		"every stage once, in order: the ramp went on from %d%% after the restart", stopped)
}

// startWithoutWorker runs a dev stack whose worker the test starts and stops itself: it
// returns the stack, a Temporal client of it and a function that starts a worker.
func startWithoutWorker(t *testing.T) (*harness, client.Client, func() sdkworker.Worker) {
	t.Helper()
	h := startWith(t, devstack.Options{ExternalWorker: true})
	db, err := store.Open(context.Background(), h.stack.Postgres.URL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	tc, err := client.Dial(client.Options{HostPort: h.stack.TemporalAddress})
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	blobs, err := blob.NewDir(filepath.Join(h.dir, "blobs"))
	require.NoError(t, err)
	return h, tc, func() sdkworker.Worker {
		w := worker.New(tc, &activities.Activities{DB: db, NodeToken: h.token, ArchiveBaseURL: h.stack.APIURL, Temporal: tc, Blobs: blobs})
		require.NoError(t, w.Start())
		return w
	}
}
