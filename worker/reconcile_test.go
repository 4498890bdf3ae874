package worker_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/server/temporaltest"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/reconcile"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/worker"
	"github.com/modelplane/modelplane/workflows/contract"
)

// TestReconcile_RowsWithoutWorkflowsOnAFreshServer points a fresh Temporal server at a
// database whose rows say a deployment, a promotion and an async request are live: the pass
// restarts the deployment's and the request's workflows, cancels the promotion, leaves the
// deleted deployment alone, and a second pass changes nothing. A request whose restarted
// workflow is lost again fails with WORKFLOW_LOST; two passes at once restart a lost
// deployment workflow once.
func TestReconcile_RowsWithoutWorkflowsOnAFreshServer(t *testing.T) {
	own, drop, err := pgtest.Create("worker")
	require.NoError(t, err)
	t.Cleanup(drop)
	require.NoError(t, pgtest.Migrate(own))
	ctx := context.Background()
	db, err := store.Open(ctx, own)
	require.NoError(t, err)
	defer db.Close()
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	require.NoError(t, worker.EnsureSearchAttributes(ctx, c, ts.GetDefaultNamespace()), "as a worker's start does")

	ws, _, err := store.EnsureWorkspace(ctx, db, "reconcile")
	require.NoError(t, err)
	m, err := store.CreateModel(ctx, db, ws.ID, "m")
	require.NoError(t, err)
	live, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: ws.ID})
	require.NoError(t, err)
	require.NoError(t, store.SetDeploymentStatus(ctx, db, live.ID, modelplane.DeploymentActive, ""))
	gone, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: ws.ID})
	require.NoError(t, err)
	require.NoError(t, store.MarkDeploymentDeleted(ctx, db, m.ID, gone.ID))
	prom, err := store.CreatePromotion(ctx, db, store.NewPromotion{ID: "prom0001", ModelID: m.ID, Environment: "production",
		SourceDeploymentID: live.ID, WorkflowID: contract.PromotionWorkflowID(m.ID, "production")})
	require.NoError(t, err)
	req, err := store.InsertAsyncRequest(ctx, db, store.NewAsyncRequest{WorkspaceID: ws.ID, ModelID: m.ID,
		DeploymentID: live.ID, MaxTimeInQueueSeconds: 600, ModelInput: []byte(`{}`)}, 100)
	require.NoError(t, err)
	_, err = store.MarkAsyncWorkflowStarted(ctx, db, req.ID)
	require.NoError(t, err)

	// No worker polls: what the pass starts stays running, which is all it looks at.
	report, err := reconcile.Run(ctx, db, c, nil)
	require.NoError(t, err)
	require.Equal(t, []string{live.ID}, report.DeploymentsRestarted, "the live deployment, not the deleted one")
	require.Equal(t, []string{prom.ID}, report.PromotionsCanceled)
	require.Equal(t, []string{req.ID}, report.AsyncRestarted)
	require.Empty(t, report.AsyncFailed)
	running := func(id string) bool {
		d, err := c.DescribeWorkflow(ctx, id, "")
		return err == nil && d.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	}
	require.True(t, running(contract.DeploymentWorkflowID(live.ID)))
	require.False(t, running(contract.DeploymentWorkflowID(gone.ID)))
	require.True(t, running(contract.AsyncWorkflowID(req.ID)))
	p, err := store.PromotionByID(ctx, db, prom.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionCanceled, p.Status)
	require.Contains(t, p.ErrorMessage, "no longer in Temporal")
	require.NotNil(t, p.FinishedAt)

	again, err := reconcile.Run(ctx, db, c, nil)
	require.NoError(t, err)
	require.False(t, again.Changed(), "a second pass must change nothing: %+v", again)

	// Lost again after its restart: the request fails rather than restarting forever.
	require.NoError(t, c.TerminateWorkflow(ctx, contract.AsyncWorkflowID(req.ID), "", "lost"))
	report, err = reconcile.Run(ctx, db, c, nil)
	require.NoError(t, err)
	require.Equal(t, []string{req.ID}, report.AsyncFailed)
	require.Empty(t, report.AsyncRestarted)
	got, err := store.GetAsyncRequest(ctx, db, "", req.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncFailed, got.Status)
	require.True(t, slices.ContainsFunc(got.Errors, func(e modelplane.AsyncError) bool { return e.Code == modelplane.CodeWorkflowLost }),
		"errors %+v name WORKFLOW_LOST", got.Errors)
	require.Equal(t, req.WebhookDeliveryID, got.WebhookDeliveryID)

	// Two passes at once restart a lost deployment workflow once.
	require.NoError(t, c.TerminateWorkflow(ctx, contract.DeploymentWorkflowID(live.ID), "", "lost"))
	var wg sync.WaitGroup
	reports := make([]reconcile.Report, 2)
	errs := make([]error, 2)
	for i := range reports {
		wg.Go(func() { reports[i], errs[i] = reconcile.Run(ctx, db, c, nil) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	require.Equal(t, 1, len(reports[0].DeploymentsRestarted)+len(reports[1].DeploymentsRestarted), "%+v", reports)
	require.True(t, running(contract.DeploymentWorkflowID(live.ID)))
}
