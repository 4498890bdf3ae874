package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	tclient "go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/reconcile"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// startOn runs a dev stack on the data directory and database given; the caller closes it.
func startOn(t *testing.T, dir, dbURL string, adopt bool) (*harness, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := devstack.Start(ctx, devstack.Options{DataDir: dir, Listen: "127.0.0.1:0", GPUProfile: "h200",
		Postgres: devstack.PostgresOptions{DatabaseURL: dbURL}, AdoptDatabase: adopt})
	if err != nil {
		return nil, err
	}
	token, err := os.ReadFile(filepath.Join(dir, devstack.NodeTokenFile))
	require.NoError(t, err)
	key, err := os.ReadFile(filepath.Join(dir, devstack.KeyFile))
	require.NoError(t, err)
	k := strings.TrimSpace(string(key))
	tok := strings.TrimSpace(string(token))
	return &harness{t: t, stack: s, api: client.New(s.APIURL, k), key: k, dir: dir, token: tok,
		agent: agentproto.NewClient(s.AgentURL, tok)}, nil
}

func closeOn(t *testing.T, h *harness) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, h.stack.Close(ctx))
}

// workflowRunning reports whether the stack's Temporal runs the workflow.
func workflowRunning(t *testing.T, tc tclient.Client, id string) bool {
	t.Helper()
	d, err := tc.DescribeWorkflow(context.Background(), id, "")
	return err == nil && d.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
}

// TestReconcile_NewHistoryOnTheSameDatabase is what a user met with `make run` in a second
// directory: a database whose deployments, promotion and async requests ran in one data
// directory's Temporal, started with another's. dev refuses it and says both ways out; with
// --adopt-database the reconcile pass restarts the deployments' workflows on their replicas,
// cancels the promotion in flight with traffic left on the deployment that served, restarts
// an async request once and fails one whose workflow was lost after its restart. A second
// pass changes nothing, and two passes at once restart a lost workflow once.
func TestReconcile_NewHistoryOnTheSameDatabase(t *testing.T) {
	dbURL, drop, err := pgtest.Create("e2e")
	require.NoError(t, err)
	t.Cleanup(drop)
	ctx := context.Background()
	first := t.TempDir()
	h, err := startOn(t, first, dbURL, false)
	require.NoError(t, err)
	closed := false
	defer func() {
		if !closed {
			closeOn(t, h)
		}
	}()

	modelID, served, candidate := canaryModel(t, h, map[string]any{"ramp_up_while_promoting": true, "ramp_up_duration_seconds": 3600})
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+candidate+"/promote", map[string]any{})
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Eventually(t, func() bool {
		e, err := h.api.Environment(ctx, modelID, "production")
		return err == nil && e.InProgressPromotion != nil && e.InProgressPromotion.PercentTrafficToNewVersion >= 10
	}, 90*time.Second, 100*time.Millisecond, "the promotion never began its ramp")

	// Two async requests whose workflows ran in the first history: one never restarted, and
	// one the reconcile pass had restarted once already (its workflow lost again since).
	db, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()
	var workspaceID string
	require.NoError(t, db.Get(&workspaceID, `SELECT workspace_id FROM models WHERE id = $1`, modelID))
	newAsync := func(webhook string) store.AsyncRequest {
		r, err := store.InsertAsyncRequest(ctx, db, store.NewAsyncRequest{WorkspaceID: workspaceID, ModelID: modelID,
			DeploymentID: served, Environment: "production", WebhookEndpoint: webhook, MaxTimeInQueueSeconds: 600,
			RetryConfig: modelplane.RetryConfig{MaxAttempts: 1}, ModelInput: []byte(`{"n":1}`)}, 100)
		require.NoError(t, err)
		_, err = store.MarkAsyncWorkflowStarted(ctx, db, r.ID)
		require.NoError(t, err)
		return r
	}
	restartable := newAsync("")
	lost := newAsync("http://127.0.0.1:9/hook")
	_, err = db.Exec(`UPDATE async_requests SET workflow_restarts = 1 WHERE id = $1`, lost.ID)
	require.NoError(t, err)

	closeOn(t, h)
	closed = true

	// A second data directory, a new Temporal history: refused, naming both ways out.
	second := t.TempDir()
	_, err = startOn(t, second, dbURL, false)
	require.Error(t, err, "a new history on a database of another's must be refused")
	require.True(t, errors.Is(err, devstack.ErrOtherHistory), "want ErrOtherHistory, got %v", err)
	for _, want := range []string{"--data-dir " + first, "--database-url", "--adopt-database"} {
		require.Contains(t, err.Error(), want, "the refusal must say the way out %q", want)
	}

	// Taken over: the reconcile pass ran at start. The packages live in the data directory
	// they were pushed to; the operator copies them over, as the refusal says.
	require.NoError(t, os.CopyFS(filepath.Join(second, "blobs"), os.DirFS(filepath.Join(first, "blobs"))))
	h2, err := startOn(t, second, dbURL, true)
	require.NoError(t, err)
	defer closeOn(t, h2)
	tc := h2.temporal()

	var p store.Promotion
	require.NoError(t, db.Get(&p, `SELECT * FROM promotions WHERE model_id = $1 ORDER BY created_at DESC LIMIT 1`, modelID))
	require.Equal(t, modelplane.PromotionCanceled, p.Status, "the promotion whose workflow is gone ends CANCELED")
	require.Contains(t, p.ErrorMessage, "reconcile")
	require.Zero(t, p.PercentTrafficToNew)
	e, err := h2.api.Environment(ctx, modelID, "production")
	require.NoError(t, err)
	require.Nil(t, e.InProgressPromotion)
	require.Equal(t, served, e.CurrentDeployment.ID, "traffic stays on the deployment that served")
	require.Nil(t, e.CandidateDeployment)

	// The replicas died with the first stack's agent; the restarted workflows bring the same
	// ones up again on this stack's, each deployment one and no more.
	for _, dep := range []string{served, candidate} {
		require.True(t, workflowRunning(t, tc, contract.DeploymentWorkflowID(dep)), "deployment %s has its workflow again", dep)
		require.Eventually(t, func() bool { return h2.replicas(dep) == 1 }, 90*time.Second, 200*time.Millisecond,
			"deployment %s never ran its replica again", dep)
		h2.waitStatus(modelID, dep, modelplane.DeploymentActive)
	}
	time.Sleep(2 * time.Second)
	for _, dep := range []string{served, candidate} {
		require.Equal(t, 1, h2.replicas(dep), "deployment %s runs one replica, not one beside another", dep)
		var live int
		require.NoError(t, db.Get(&live, `SELECT count(*) FROM replicas WHERE deployment_id = $1 AND state NOT IN ('STOPPED', 'FAILED')`, dep))
		require.Equal(t, 1, live, "deployment %s has one live replica row", dep)
	}
	_, err = h2.predictEcho(modelID, client.ProductionTarget(), `{"n":1}`)
	require.NoError(t, err, "production serves again")

	var restarts int
	require.NoError(t, db.Get(&restarts, `SELECT workflow_restarts FROM async_requests WHERE id = $1`, restartable.ID))
	require.Equal(t, 1, restarts)
	// The restarted workflow takes the request to its end from where its row was (its outcome
	// is the model's and the replicas' affair), with the delivery ID it was accepted with.
	h2.waitAsync(restartable.ID, 60*time.Second)
	ended, err := store.GetAsyncRequest(ctx, db, "", restartable.ID)
	require.NoError(t, err)
	require.Equal(t, restartable.WebhookDeliveryID, ended.WebhookDeliveryID)

	got, err := store.GetAsyncRequest(ctx, db, "", lost.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncFailed, got.Status, "a request lost after its restart fails")
	require.Equal(t, modelplane.WebhookFailed, got.WebhookStatus)
	require.NotEmpty(t, got.Errors)
	require.Equal(t, modelplane.CodeWorkflowLost, got.Errors[0].Code)

	// A second pass changes nothing.
	report, err := reconcile.Run(ctx, db, tc, nil)
	require.NoError(t, err)
	require.False(t, report.Changed(), "a second pass must change nothing: %+v", report)

	// A deployment workflow lost while its replica runs: two passes at once restart it once,
	// and it takes the replica over.
	before, ok := h2.replica(served)
	require.True(t, ok)
	require.NoError(t, tc.TerminateWorkflow(ctx, contract.DeploymentWorkflowID(served), "", "lost"))
	var wg sync.WaitGroup
	reports := make([]reconcile.Report, 2)
	errs := make([]error, 2)
	for i := range reports {
		wg.Go(func() { reports[i], errs[i] = reconcile.Run(ctx, db, tc, nil) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	require.Equal(t, 1, len(reports[0].DeploymentsRestarted)+len(reports[1].DeploymentsRestarted),
		"two passes at once restart the workflow once: %+v", reports)
	require.True(t, workflowRunning(t, tc, contract.DeploymentWorkflowID(served)))
	h2.waitStatus(modelID, served, modelplane.DeploymentActive)
	after, ok := h2.replica(served)
	require.True(t, ok)
	require.Equal(t, before.ID, after.ID, "the restarted workflow keeps the replica it found")
	require.Equal(t, 1, h2.replicas(served))
}
