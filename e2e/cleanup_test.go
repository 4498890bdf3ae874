package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/modelplane/modelplane/workflows/contract"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	tclient "go.temporal.io/sdk/client"
)

// TestCleanup_TheScheduleRunsCleanupToTheEnd triggers the Cleanup schedule the stack created
// and waits for the run it started to finish.
func TestCleanup_TheScheduleRunsCleanupToTheEnd(t *testing.T) {
	h := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	schedule := h.temporal().ScheduleClient().GetHandle(ctx, contract.CleanupScheduleID)
	desc, err := schedule.Describe(ctx)
	require.NoError(t, err)
	before := len(desc.Info.RecentActions)

	require.NoError(t, schedule.Trigger(ctx, tclient.ScheduleTriggerOptions{Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL}))
	var run *tclient.ScheduleWorkflowExecution
	require.Eventually(t, func() bool {
		desc, err := schedule.Describe(ctx)
		if err != nil || len(desc.Info.RecentActions) <= before {
			return false
		}
		run = desc.Info.RecentActions[len(desc.Info.RecentActions)-1].StartWorkflowResult
		return run != nil
	}, 30*time.Second, 100*time.Millisecond, "the triggered schedule started no workflow")
	h.record("cleanup", run.WorkflowID)

	var res contract.CleanupResult
	require.NoError(t, h.temporal().GetWorkflow(ctx, run.WorkflowID, run.FirstExecutionRunID).Get(ctx, &res))
	require.Zero(t, res.ReplicasStopped, "a fresh stack has no replica to stop")
}
