package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/workflows"
	"github.com/modelplane/modelplane/workflows/contract"
)

var cleanupStart = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// asyncRetention is the AsyncRequestRetention the tests that set one ask for.
const asyncRetention = 48 * time.Hour

// runCleanup runs Cleanup with PruneLoadSamples answered by prune, and returns the inputs the
// activity was called with.
func runCleanup(t *testing.T, in contract.CleanupInput, prune func() (activities.PruneLoadSamplesResult, error)) (
	*testsuite.TestWorkflowEnvironment, []activities.PruneLoadSamplesInput) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(cleanupStart)
	var a *activities.Activities
	var calls []activities.PruneLoadSamplesInput
	env.OnActivity(a.PruneLoadSamples, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PruneLoadSamplesInput) (activities.PruneLoadSamplesResult, error) {
			calls = append(calls, in)
			return prune()
		})
	env.OnActivity(a.StopUnwantedReplicas, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.StopUnwantedReplicasInput) (activities.StopUnwantedReplicasResult, error) {
			if in.QuietFor <= 0 {
				return activities.StopUnwantedReplicasResult{}, errors.New("no quiet period")
			}
			return activities.StopUnwantedReplicasResult{Stopped: 2}, nil
		})
	env.OnActivity(a.PruneArchives, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PruneArchivesInput) (activities.PruneArchivesResult, error) {
			if want := cleanupStart.Add(-24 * time.Hour); !in.Before.Equal(want) {
				return activities.PruneArchivesResult{}, errors.New("archive cutoff is " + in.Before.String())
			}
			return activities.PruneArchivesResult{Archives: 3, Blobs: 1}, nil
		})
	env.OnActivity(a.PruneGatewayReports, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PruneGatewayReportsInput) (activities.PruneGatewayReportsResult, error) {
			if want := cleanupStart.Add(-activities.GatewayReportRetention); !in.Before.Equal(want) {
				return activities.PruneGatewayReportsResult{}, errors.New("gateway report cutoff is " + in.Before.String())
			}
			return activities.PruneGatewayReportsResult{Deleted: 4}, nil
		})
	env.OnActivity(a.StartUnstartedAsync, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.StartUnstartedAsyncInput) (activities.StartUnstartedAsyncResult, error) {
			want := activities.StartUnstartedAsyncInput{Before: cleanupStart.Add(-30 * time.Second),
				WorkflowType: "AsyncRequest", TaskQueue: contract.TaskQueue, WorkflowIDPrefix: "async:"}
			if !in.Before.Equal(want.Before) || in.WorkflowType != want.WorkflowType || in.TaskQueue != want.TaskQueue ||
				in.WorkflowIDPrefix != want.WorkflowIDPrefix {
				return activities.StartUnstartedAsyncResult{}, fmt.Errorf("start unstarted async got %+v, want %+v", in, want)
			}
			return activities.StartUnstartedAsyncResult{Started: 5}, nil
		})
	env.OnActivity(a.PurgeAsync, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PurgeAsyncInput) (activities.PurgeAsyncResult, error) {
			if !in.Now.Equal(cleanupStart) {
				return activities.PurgeAsyncResult{}, errors.New("async purge now is " + in.Now.String())
			}
			retention := in.Now.Sub(in.FinishedBefore)
			if want := contract.DefaultCleanupInput().AsyncRequestRetention; retention != want && retention != asyncRetention {
				return activities.PurgeAsyncResult{}, fmt.Errorf("async requests kept %s", retention)
			}
			return activities.PurgeAsyncResult{Outputs: 6, Requests: int64(retention / time.Hour)}, nil
		})
	env.ExecuteWorkflow(workflows.Cleanup, in)
	require.True(t, env.IsWorkflowCompleted())
	return env, calls
}

func TestCleanup_PrunesSamplesOlderThanRetention(t *testing.T) {
	env, calls := runCleanup(t, contract.CleanupInput{LoadSampleRetention: 30 * time.Minute},
		func() (activities.PruneLoadSamplesResult, error) {
			return activities.PruneLoadSamplesResult{Deleted: 7}, nil
		})
	require.NoError(t, env.GetWorkflowError())
	var res contract.CleanupResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.EqualValues(t, 7, res.LoadSamplesDeleted)
	require.Equal(t, 2, res.ReplicasStopped)
	require.Equal(t, 3, res.ArchivesDeleted)
	require.Equal(t, 1, res.BlobsDeleted)
	require.EqualValues(t, 4, res.GatewayReportsDeleted, "reports of dead gateways are pruned")
	require.Equal(t, 5, res.AsyncWorkflowsStarted, "async requests whose gateway did not start their workflow are started")
	require.EqualValues(t, 6, res.AsyncOutputsPurged)
	require.EqualValues(t, 7*24, res.AsyncRequestsDeleted, "finished async requests are kept a week by default")
	require.Len(t, calls, 1)
	want := cleanupStart.Add(-30 * time.Minute)
	require.True(t, calls[0].Before.Equal(want), "cutoff %v, want %v", calls[0].Before, want)
}

func TestCleanup_AsyncRequestRetentionIsHonoured(t *testing.T) {
	env, _ := runCleanup(t, contract.CleanupInput{AsyncRequestRetention: asyncRetention},
		func() (activities.PruneLoadSamplesResult, error) { return activities.PruneLoadSamplesResult{}, nil })
	require.NoError(t, env.GetWorkflowError())
	var res contract.CleanupResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.EqualValues(t, 48, res.AsyncRequestsDeleted, "requests finished before now - AsyncRequestRetention go")
}

func TestCleanup_ZeroRetentionUsesDefault(t *testing.T) {
	env, calls := runCleanup(t, contract.CleanupInput{},
		func() (activities.PruneLoadSamplesResult, error) { return activities.PruneLoadSamplesResult{}, nil })
	require.NoError(t, env.GetWorkflowError())
	want := cleanupStart.Add(-contract.DefaultCleanupInput().LoadSampleRetention)
	require.True(t, calls[0].Before.Equal(want), "cutoff %v, want %v", calls[0].Before, want)
}

func TestCleanup_RetriesThenFailsWhenDatabaseStaysDown(t *testing.T) {
	env, calls := runCleanup(t, contract.CleanupInput{},
		func() (activities.PruneLoadSamplesResult, error) {
			return activities.PruneLoadSamplesResult{}, errors.New("connection refused")
		})
	require.Error(t, env.GetWorkflowError())
	require.Len(t, calls, 5, "the activity must be retried up to its policy's limit")
}

func TestSearchAttributes_AreKeywords(t *testing.T) {
	sa := contract.SearchAttributes()
	for _, name := range []string{"ModelId", "DeploymentId", "Environment", "PromotionStatus", "DeploymentStatus"} {
		typ, ok := sa[name]
		require.True(t, ok, "search attribute %s missing", name)
		require.Equal(t, "Keyword", typ.String())
	}
}
