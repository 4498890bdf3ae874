package workflows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/workflows"
)

func TestCleanup_PrunesSamplesOlderThanRetention(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	env.SetStartTime(start)
	var a *activities.Activities
	var got activities.PruneLoadSamplesInput
	env.OnActivity(a.PruneLoadSamples, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PruneLoadSamplesInput) (activities.PruneLoadSamplesResult, error) {
			got = in
			return activities.PruneLoadSamplesResult{Deleted: 7}, nil
		})

	env.ExecuteWorkflow(workflows.Cleanup, workflows.CleanupInput{LoadSampleRetention: 30 * time.Minute})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res workflows.CleanupResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.EqualValues(t, 7, res.LoadSamplesDeleted)
	require.True(t, got.Before.Equal(start.Add(-30*time.Minute)), "cutoff %v, want %v", got.Before, start.Add(-30*time.Minute))
}

func TestCleanup_ZeroRetentionUsesDefault(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	env.SetStartTime(start)
	var a *activities.Activities
	var got activities.PruneLoadSamplesInput
	env.OnActivity(a.PruneLoadSamples, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PruneLoadSamplesInput) (activities.PruneLoadSamplesResult, error) {
			got = in
			return activities.PruneLoadSamplesResult{}, nil
		})

	env.ExecuteWorkflow(workflows.Cleanup, workflows.CleanupInput{})
	require.NoError(t, env.GetWorkflowError())
	want := start.Add(-workflows.DefaultCleanupInput().LoadSampleRetention)
	require.True(t, got.Before.Equal(want), "cutoff %v, want %v", got.Before, want)
}

func TestCleanup_RetriesThenFailsWhenDatabaseStaysDown(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var a *activities.Activities
	calls := 0
	env.OnActivity(a.PruneLoadSamples, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _ activities.PruneLoadSamplesInput) (activities.PruneLoadSamplesResult, error) {
			calls++
			return activities.PruneLoadSamplesResult{}, errors.New("connection refused")
		})

	env.ExecuteWorkflow(workflows.Cleanup, workflows.CleanupInput{})
	require.Error(t, env.GetWorkflowError())
	require.Equal(t, 5, calls, "the activity must be retried up to its policy's limit")
}

func TestSearchAttributes_AreKeywords(t *testing.T) {
	sa := workflows.SearchAttributes()
	for _, name := range []string{"ModelId", "DeploymentId", "Environment", "PromotionStatus", "DeploymentStatus"} {
		typ, ok := sa[name]
		require.True(t, ok, "search attribute %s missing", name)
		require.Equal(t, "Keyword", typ.String())
	}
}
