package store_test

import (
	"context"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

// newNode registers a node with one GPU through a heartbeat.
func newNode(t *testing.T, db *sqlx.DB) store.Node {
	t.Helper()
	name := "node-" + modelplane.NewID(6)
	n, err := store.RecordHeartbeat(context.Background(), db, store.NodeReport{
		Name: name, AgentID: "agent-" + name, AgentURL: "http://" + name + ":7070", GPUProfile: "fake",
		TokenSHA256: make([]byte, 32),
		GPUs:        []store.GPU{{UUID: "GPU-" + name, Index: 0, Name: "H100", Healthy: true}},
	})
	require.NoError(t, err)
	return n
}

func newDeployment(t *testing.T, db *sqlx.DB) store.Deployment {
	t.Helper()
	m := newModel(t, db)
	d, err := store.CreateDeployment(context.Background(), db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	return d
}

func gpuAssignment(t *testing.T, db *sqlx.DB, uuid string) *string {
	t.Helper()
	var id *string
	require.NoError(t, db.Get(&id, `SELECT assigned_replica_id FROM gpus WHERE uuid = $1`, uuid))
	return id
}

func TestCreateReplica_IsIdempotentAndAssignsGPUs(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	n := newNode(t, db)
	d := newDeployment(t, db)
	id := modelplane.NewID(12)
	in := store.NewReplica{ID: id, DeploymentID: d.ID, NodeID: n.ID, GPUUUIDs: []string{"GPU-" + n.Name}}

	r, created, err := store.CreateReplica(ctx, db, in)
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, modelplane.ReplicaPending, r.State)
	require.Equal(t, n.ID, *r.NodeID)
	require.Equal(t, n.AgentURL, r.AgentURL)
	got := gpuAssignment(t, db, "GPU-"+n.Name)
	require.NotNil(t, got, "the placed GPU should be assigned to the replica")
	require.Equal(t, id, *got)

	again, created, err := store.CreateReplica(ctx, db, in)
	require.NoError(t, err)
	require.False(t, created, "creating the same replica twice must not create a second")
	require.Equal(t, r.CreatedAt, again.CreatedAt)
}

func TestReplicaByID_UnknownIsNotFound(t *testing.T) {
	db := openDB(t)
	_, err := store.ReplicaByID(context.Background(), db, modelplane.NewID(12))
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestSetReplicaState_ReadyThenStoppedFreesGPUsAndLeavesLiveList(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	n := newNode(t, db)
	d := newDeployment(t, db)
	a, b := modelplane.NewID(12), modelplane.NewID(12)
	_, _, err := store.CreateReplica(ctx, db, store.NewReplica{ID: a, DeploymentID: d.ID, NodeID: n.ID, GPUUUIDs: []string{"GPU-" + n.Name}})
	require.NoError(t, err)
	_, _, err = store.CreateReplica(ctx, db, store.NewReplica{ID: b, DeploymentID: d.ID, NodeID: n.ID})
	require.NoError(t, err)

	require.NoError(t, store.SetReplicaState(ctx, db, a, modelplane.ReplicaReady, "10.0.0.1:9000", ""))
	r, err := store.ReplicaByID(ctx, db, a)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaReady, r.State)
	require.Equal(t, "10.0.0.1:9000", r.Address)
	require.NotNil(t, r.ReadyAt)

	live, err := store.ListLiveReplicas(ctx, db, d.ID)
	require.NoError(t, err)
	require.Len(t, live, 2)
	all, mine, err := store.LiveReplicaCounts(ctx, db, d.ID)
	require.NoError(t, err)
	require.Equal(t, 2, all[n.ID])
	require.Equal(t, 2, mine[n.ID])

	require.NoError(t, store.SetReplicaState(ctx, db, a, modelplane.ReplicaStopped, "", ""))
	r, err = store.ReplicaByID(ctx, db, a)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopped, r.State)
	require.NotNil(t, r.StoppedAt)
	require.Nil(t, gpuAssignment(t, db, "GPU-"+n.Name), "a stopped replica gives its GPU back")

	live, err = store.ListLiveReplicas(ctx, db, d.ID)
	require.NoError(t, err)
	require.Len(t, live, 1)
	require.Equal(t, b, live[0].ID)

	require.ErrorIs(t, store.SetReplicaState(ctx, db, modelplane.NewID(12), modelplane.ReplicaReady, "", ""), store.ErrNotFound)
}

func TestSetDeploymentStatus_WritesStatusAndReason(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	d := newDeployment(t, db)

	require.NoError(t, store.SetDeploymentStatus(ctx, db, d.ID, "DEPLOY_FAILED", "no node has a free H100"))
	got, err := store.DeploymentByID(ctx, db, d.ModelID, d.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.DeploymentDeployFailed, got.Status)
	require.Equal(t, "no node has a free H100", got.StatusReason)

	require.ErrorIs(t, store.SetDeploymentStatus(ctx, db, d.ID, "NOT_A_STATUS", ""), store.ErrConstraint)
	require.ErrorIs(t, store.SetDeploymentStatus(ctx, db, "zzzzzzzz", "ACTIVE", ""), store.ErrNotFound)
}
