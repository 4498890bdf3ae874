package activities_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/temporaltest"

	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/workflows/contract"
)

// fakeScale and fakeStatus have the wire shape of the Deployment workflow's scale request and
// status, which this package cannot import.
type fakeScale struct{ Replicas int }

type fakeStatus struct {
	Status string
	Reason string
	Ready  int
}

// FakeDeployment stands in for the Deployment workflow: a scale update makes that many
// replicas ready at once, unless it asks for 7, which fails the deployment.
func FakeDeployment(ctx workflow.Context, in fakeScale) error {
	st := fakeStatus{Status: "DEPLOYING"}
	if err := workflow.SetQueryHandler(ctx, "status", func() (fakeStatus, error) { return st, nil }); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, "scale", func(ctx workflow.Context, req fakeScale) (fakeStatus, error) {
		st.Ready, st.Status = req.Replicas, "ACTIVE"
		if req.Replicas == 7 {
			st.Ready, st.Status, st.Reason = 0, "DEPLOY_FAILED", "model crashed"
		}
		return st, nil
	}, workflow.UpdateHandlerOptions{Validator: func(req fakeScale) error {
		if req.Replicas < 0 {
			return errors.New("replicas must not be negative")
		}
		return nil
	}}); err != nil {
		return err
	}
	// drain takes an hour, as a scale-down waiting out its drain timeout may.
	if err := workflow.SetUpdateHandlerWithOptions(ctx, "drain", func(ctx workflow.Context, _ fakeScale) error {
		return workflow.Sleep(ctx, time.Hour)
	}, workflow.UpdateHandlerOptions{Validator: func(req fakeScale) error {
		if req.Replicas < 0 {
			return errors.New("replicas must not be negative")
		}
		return nil
	}}); err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return false })
}

func TestPromotionDeploymentActivities_OnRealServer(t *testing.T) {
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	ctx := context.Background()
	w := sdkworker.New(c, "fake-deployments", sdkworker.Options{})
	w.RegisterWorkflowWithOptions(FakeDeployment, workflow.RegisterOptions{Name: "FakeDeployment"})
	require.NoError(t, w.Start())
	defer w.Stop()

	acts := &activities.Activities{Temporal: c}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)

	start := contract.StartDeploymentWorkflowInput{WorkflowID: "deployment:abc", WorkflowType: "FakeDeployment",
		TaskQueue: "fake-deployments", Input: fakeScale{Replicas: 1}}
	_, err := env.ExecuteActivity(acts.StartDeploymentWorkflow, start)
	require.NoError(t, err)
	first, err := c.DescribeWorkflowExecution(ctx, "deployment:abc", "")
	require.NoError(t, err)
	_, err = env.ExecuteActivity(acts.StartDeploymentWorkflow, start)
	require.NoError(t, err, "starting a running deployment workflow again must use it")
	again, err := c.DescribeWorkflowExecution(ctx, "deployment:abc", "")
	require.NoError(t, err)
	require.Equal(t, first.GetWorkflowExecutionInfo().GetExecution().GetRunId(),
		again.GetWorkflowExecutionInfo().GetExecution().GetRunId(), "a second run must not start")

	_, err = env.ExecuteActivity(acts.ScaleDeployment, contract.DeploymentUpdateInput{
		WorkflowID: "deployment:abc", UpdateName: "scale", UpdateID: "p1:scale", Request: fakeScale{Replicas: 3}})
	require.NoError(t, err)
	v, err := env.ExecuteActivity(acts.WaitDeploymentReady, contract.WaitDeploymentReadyInput{
		WorkflowID: "deployment:abc", QueryName: "status", Target: 3, PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	var ready contract.WaitDeploymentReadyResult
	require.NoError(t, v.Get(&ready))
	require.Equal(t, 3, ready.Ready)

	_, err = env.ExecuteActivity(acts.ScaleDeployment, contract.DeploymentUpdateInput{
		WorkflowID: "deployment:abc", UpdateName: "scale", UpdateID: "p1:bad", Request: fakeScale{Replicas: -1}})
	require.Equal(t, contract.ErrTypeDeploymentRefused, appErrType(err), "a refused update must not be retried: %v", err)

	_, err = env.ExecuteActivity(acts.ScaleDeployment, contract.DeploymentUpdateInput{
		WorkflowID: "deployment:none", UpdateName: "scale", UpdateID: "p1:none", Request: fakeScale{Replicas: 1}})
	require.Equal(t, contract.ErrTypeDeploymentRefused, appErrType(err), "a missing workflow must not be retried: %v", err)

	_, err = env.ExecuteActivity(acts.ScaleDeployment, contract.DeploymentUpdateInput{
		WorkflowID: "deployment:abc", UpdateName: "scale", UpdateID: "p1:crash", Request: fakeScale{Replicas: 7}})
	require.NoError(t, err)
	_, err = env.ExecuteActivity(acts.WaitDeploymentReady, contract.WaitDeploymentReadyInput{
		WorkflowID: "deployment:abc", QueryName: "status", Target: 7, PollInterval: 10 * time.Millisecond})
	require.Equal(t, contract.ErrTypeDeploymentFailed, appErrType(err), "got %v", err)
	require.ErrorContains(t, err, "model crashed")

	// AcceptedOnly returns once the workflow took the update, however long it then takes,
	// and still reports a refusal.
	began := time.Now()
	_, err = env.ExecuteActivity(acts.ScaleDeployment, contract.DeploymentUpdateInput{
		WorkflowID: "deployment:abc", UpdateName: "drain", UpdateID: "p1:drain", Request: fakeScale{Replicas: 0}, AcceptedOnly: true})
	require.NoError(t, err)
	require.Less(t, time.Since(began), 10*time.Second, "an accepted update is not waited for")
	_, err = env.ExecuteActivity(acts.ScaleDeployment, contract.DeploymentUpdateInput{
		WorkflowID: "deployment:abc", UpdateName: "drain", UpdateID: "p1:drain-bad", Request: fakeScale{Replicas: -1}, AcceptedOnly: true})
	require.Equal(t, contract.ErrTypeDeploymentRefused, appErrType(err), "a refused update is still an error: %v", err)

	_ = c.TerminateWorkflow(ctx, "deployment:abc", "", "test over")
}
