package workflows_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/patch"
	"github.com/modelplane/modelplane/workflows/contract"
)

// patchSync sends contract.UpdateApplyPatch at the given workflow time and records its answer.
type patchSync struct {
	done     bool
	rejected error
	err      error
	res      contract.PatchSyncResult
}

func (h *harness) syncPatches(at time.Duration) *patchSync {
	r := &patchSync{}
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(contract.UpdateApplyPatch, "sync", &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { r.done, r.rejected = true, err },
			OnComplete: func(v any, err error) {
				r.done, r.err = true, err
				if res, ok := v.(contract.PatchSyncResult); ok {
					r.res = res
				}
			},
		})
	}, at)
	return r
}

// onApplyPatches fakes the ApplyPatches activity and records the replicas it was given.
func onApplyPatches(h *harness, res contract.ApplyPatchesResult) *[][]string {
	var mu sync.Mutex
	var calls [][]string
	var a *activities.Activities
	h.env.OnActivity(a.ApplyPatches, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.ApplyPatchesInput) (contract.ApplyPatchesResult, error) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, append([]string{}, in.ReplicaIDs...))
			return res, nil
		})
	return &calls
}

func TestDeployment_ApplyPatchBringsTheRunningReplicaInPlace(t *testing.T) {
	h := newHarness(t, &cluster{development: true})
	calls := onApplyPatches(h, contract.ApplyPatchesResult{PatchHash: "h1", How: patch.HowHotReload})
	var before contract.DeploymentStatus
	h.at(time.Minute, func() { before = h.query() })
	got := h.syncPatches(2 * time.Minute)
	h.run(1, time.Hour)

	require.True(t, got.done)
	require.NoError(t, got.rejected)
	require.NoError(t, got.err)
	require.Equal(t, patch.HowHotReload, got.res.How)
	require.Equal(t, "h1", got.res.PatchHash)
	require.Len(t, before.Replicas, 1)
	require.Equal(t, [][]string{{before.Replicas[0].ID}}, *calls, "the patches go to the replica that runs")
	require.Len(t, h.c.started, 1, "a patch taken in place starts no replica")
}

func TestDeployment_ApplyPatchAtZeroWakesTheDeployment(t *testing.T) {
	h := newHarness(t, &cluster{development: true})
	calls := onApplyPatches(h, contract.ApplyPatchesResult{PatchHash: "h1", How: contract.HowUnchanged})
	h.update(time.Minute, contract.UpdateScale, contract.ScaleRequest{Replicas: 0})
	got := h.syncPatches(2 * time.Minute)
	var after contract.DeploymentStatus
	h.at(3*time.Minute, func() { after = h.query() })
	h.run(1, time.Hour)

	require.NoError(t, got.err)
	require.Equal(t, contract.HowWoken, got.res.How)
	require.Equal(t, [][]string{{}}, *calls, "at zero there is no replica to patch")
	require.Len(t, h.c.started, 2, "the sync starts a replica, which takes the patches as it starts")
	require.Equal(t, modelplane.DeploymentActive, after.Status)
	require.Equal(t, 1, after.Ready)
}

func TestDeployment_ApplyPatchNeedingAFullDeployChangesNothing(t *testing.T) {
	h := newHarness(t, &cluster{development: true})
	onApplyPatches(h, contract.ApplyPatchesResult{FullDeployReason: "resources changed (accelerator none → H100:1)"})
	h.update(time.Minute, contract.UpdateScale, contract.ScaleRequest{Replicas: 0})
	got := h.syncPatches(2 * time.Minute)
	h.run(1, time.Hour)

	require.NoError(t, got.err)
	require.Equal(t, "resources changed (accelerator none → H100:1)", got.res.FullDeployReason)
	require.Len(t, h.c.started, 1, "a patch that needs a full deploy does not wake the deployment")
}

func TestDeployment_ApplyPatchToAPublishedDeploymentIsRejected(t *testing.T) {
	h := newHarness(t, &cluster{})
	calls := onApplyPatches(h, contract.ApplyPatchesResult{})
	got := h.syncPatches(2 * time.Minute)
	h.run(1, time.Hour)

	require.ErrorContains(t, got.rejected, "development deployment only")
	require.Empty(t, *calls)
}
