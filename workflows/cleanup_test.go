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
func runCleanup(t *testing.T, in contract.CleanupInput, prune func() (contract.PruneLoadSamplesResult, error)) (
	*testsuite.TestWorkflowEnvironment, []contract.PruneLoadSamplesInput) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(cleanupStart)
	var a *activities.Activities
	var calls []contract.PruneLoadSamplesInput
	env.OnActivity(a.PruneLoadSamples, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.PruneLoadSamplesInput) (contract.PruneLoadSamplesResult, error) {
			calls = append(calls, in)
			return prune()
		})
	env.OnActivity(a.StopUnwantedReplicas, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.StopUnwantedReplicasInput) (contract.StopUnwantedReplicasResult, error) {
			if in.QuietFor <= 0 {
				return contract.StopUnwantedReplicasResult{}, errors.New("no quiet period")
			}
			return contract.StopUnwantedReplicasResult{Stopped: 2}, nil
		})
	env.OnActivity(a.PruneArchives, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.PruneArchivesInput) (contract.PruneArchivesResult, error) {
			if want := cleanupStart.Add(-24 * time.Hour); !in.Before.Equal(want) {
				return contract.PruneArchivesResult{}, errors.New("archive cutoff is " + in.Before.String())
			}
			return contract.PruneArchivesResult{Archives: 3, Blobs: 1}, nil
		})
	env.OnActivity(a.PruneGatewayReports, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.PruneGatewayReportsInput) (contract.PruneGatewayReportsResult, error) {
			if want := cleanupStart.Add(-contract.GatewayReportRetention); !in.Before.Equal(want) {
				return contract.PruneGatewayReportsResult{}, errors.New("gateway report cutoff is " + in.Before.String())
			}
			return contract.PruneGatewayReportsResult{Deleted: 4}, nil
		})
	env.OnActivity(a.StartUnstartedAsync, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.StartUnstartedAsyncInput) (contract.StartUnstartedAsyncResult, error) {
			want := contract.StartUnstartedAsyncInput{Before: cleanupStart.Add(-30 * time.Second)}
			if !in.Before.Equal(want.Before) {
				return contract.StartUnstartedAsyncResult{}, fmt.Errorf("start unstarted async got %+v, want %+v", in, want)
			}
			return contract.StartUnstartedAsyncResult{Started: 5}, nil
		})
	env.OnActivity(a.PurgeAsync, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.PurgeAsyncInput) (contract.PurgeAsyncResult, error) {
			if !in.Now.Equal(cleanupStart) {
				return contract.PurgeAsyncResult{}, errors.New("async purge now is " + in.Now.String())
			}
			retention := in.Now.Sub(in.FinishedBefore)
			if want := contract.DefaultCleanupInput().AsyncRequestRetention; retention != want && retention != asyncRetention {
				return contract.PurgeAsyncResult{}, fmt.Errorf("async requests kept %s", retention)
			}
			return contract.PurgeAsyncResult{Outputs: 6, Requests: int64(retention / time.Hour)}, nil
		})
	env.OnActivity(a.PruneOrphanBlobs, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.PruneOrphanBlobsInput) (contract.PruneOrphanBlobsResult, error) {
			if want := cleanupStart.Add(-time.Hour); !in.Before.Equal(want) {
				return contract.PruneOrphanBlobsResult{}, errors.New("orphan blob cutoff is " + in.Before.String())
			}
			return contract.PruneOrphanBlobsResult{Blobs: 8}, nil
		})
	env.ExecuteWorkflow(workflows.Cleanup, in)
	require.True(t, env.IsWorkflowCompleted())
	return env, calls
}

func TestCleanup_PrunesSamplesOlderThanRetention(t *testing.T) {
	env, calls := runCleanup(t, contract.CleanupInput{LoadSampleRetention: 30 * time.Minute},
		func() (contract.PruneLoadSamplesResult, error) {
			return contract.PruneLoadSamplesResult{Deleted: 7}, nil
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
	require.Equal(t, 8, res.OrphanBlobsDeleted, "blobs nothing refers to go an hour after they were last stored")
	require.Len(t, calls, 1)
	want := cleanupStart.Add(-30 * time.Minute)
	require.True(t, calls[0].Before.Equal(want), "cutoff %v, want %v", calls[0].Before, want)
}

func TestCleanup_AsyncRequestRetentionIsHonoured(t *testing.T) {
	env, _ := runCleanup(t, contract.CleanupInput{AsyncRequestRetention: asyncRetention},
		func() (contract.PruneLoadSamplesResult, error) { return contract.PruneLoadSamplesResult{}, nil })
	require.NoError(t, env.GetWorkflowError())
	var res contract.CleanupResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.EqualValues(t, 48, res.AsyncRequestsDeleted, "requests finished before now - AsyncRequestRetention go")
}

func TestCleanup_ZeroRetentionUsesDefault(t *testing.T) {
	env, calls := runCleanup(t, contract.CleanupInput{},
		func() (contract.PruneLoadSamplesResult, error) { return contract.PruneLoadSamplesResult{}, nil })
	require.NoError(t, env.GetWorkflowError())
	want := cleanupStart.Add(-contract.DefaultCleanupInput().LoadSampleRetention)
	require.True(t, calls[0].Before.Equal(want), "cutoff %v, want %v", calls[0].Before, want)
}

func TestCleanup_RetriesThenFailsWhenDatabaseStaysDown(t *testing.T) {
	env, calls := runCleanup(t, contract.CleanupInput{},
		func() (contract.PruneLoadSamplesResult, error) {
			return contract.PruneLoadSamplesResult{}, errors.New("connection refused")
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
