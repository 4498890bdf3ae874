package agent_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
)

func TestClient_StartsListsAndStopsReplicas(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "h200")
	c := agentproto.NewClient(n.url, token)
	ctx := context.Background()
	url, sum := testmodelPackage(t)
	id := newID()

	r, err := c.StartReplica(ctx, startReq(id, url, sum, 1))
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStarting, r.State)
	again, err := c.StartReplica(ctx, startReq(id, url, sum, 1))
	require.NoError(t, err, "starting the same replica again is not an error")
	require.Equal(t, r.GPUUUIDs, again.GPUUUIDs)

	inv, err := c.Inventory(ctx)
	require.NoError(t, err)
	require.Equal(t, id, inv.GPUs[0].AssignedReplicaID)
	require.Eventually(t, func() bool {
		got, err := c.Replica(ctx, id)
		return err == nil && got.State == modelplane.ReplicaReady
	}, 20*time.Second, 50*time.Millisecond)
	list, err := c.Replicas(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)

	stopped, err := c.StopReplica(ctx, id, 3*time.Second)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopped, stopped.State)
	require.Empty(t, replicaProcesses(id))
}

func TestClient_ErrorsSayWhatTheAgentSaid(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "h200")
	ctx := context.Background()
	c := agentproto.NewClient(n.url, token)

	_, err := c.Replica(ctx, "nosuch")
	require.ErrorIs(t, err, agentproto.ErrUnknownReplica)
	_, err = c.StopReplica(ctx, "nosuch", time.Second)
	require.ErrorIs(t, err, agentproto.ErrUnknownReplica)

	url, sum := testmodelPackage(t)
	_, err = c.StartReplica(ctx, startReq(newID(), url, sum, 2))
	var apiErr *agentproto.APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusConflict, apiErr.Status)
	require.Contains(t, apiErr.Message, "GPU")
	require.False(t, apiErr.Retryable(), "a node without the GPUs will not grow them")

	_, err = agentproto.NewClient(n.url, "wrong-token-wrong-token").Inventory(ctx)
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusUnauthorized, apiErr.Status)
	require.False(t, errors.Is(err, agentproto.ErrUnknownReplica))

	_, err = agentproto.NewClient("http://127.0.0.1:1", token).Inventory(ctx)
	require.Error(t, err, "an agent that does not answer is an error")
}
