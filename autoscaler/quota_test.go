package autoscaler

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

func TestFitQuota_HoldsAScaleUpToTheWorkspacesRoom(t *testing.T) {
	up := Decision{Desired: 6, Wanted: 6, Reason: "scale up"}
	for _, tt := range []struct {
		name           string
		d              Decision
		current, gpus  int
		room, roomLeft Room
		desired        int
		reason         string
	}{
		{"room for all", up, 2, 0, Room{Replicas: 10, GPUs: 10}, Room{Replicas: 6, GPUs: 10}, 6, "scale up"},
		{"replicas quota holds", up, 2, 0, Room{Replicas: 3, GPUs: 10}, Room{Replicas: 0, GPUs: 10}, 5,
			"scale up; held at 5 of 6 by the workspace's replicas quota (3 left)"},
		{"gpus quota holds", up, 2, 2, Room{Replicas: 10, GPUs: 5}, Room{Replicas: 8, GPUs: 1}, 4,
			"scale up; held at 4 of 6 by the workspace's gpus quota (5 left, 2 per replica)"},
		{"no room at all", up, 2, 1, Room{Replicas: 0, GPUs: 0}, Room{Replicas: 0, GPUs: 0}, 2,
			"scale up; held at 2 of 6 by the workspace's replicas quota (0 left)"},
		{"a quota lowered below what runs", up, 2, 0, Room{Replicas: -3, GPUs: 10}, Room{Replicas: -3, GPUs: 10}, 2,
			"scale up; held at 2 of 6 by the workspace's replicas quota (0 left)"},
		{"a scale-down is never held", Decision{Desired: 1, Wanted: 1, Reason: "step down"}, 4, 2,
			Room{Replicas: -1, GPUs: -1}, Room{Replicas: -1, GPUs: -1}, 1, "step down"},
		{"steady is never held", Decision{Desired: 4, Wanted: 4, Reason: "steady"}, 4, 2,
			Room{}, Room{}, 4, "steady"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			room := tt.room
			got := FitQuota(tt.d, tt.current, tt.gpus, &room)
			require.Equal(t, tt.desired, got.Desired, "desired")
			require.Equal(t, tt.d.Wanted, got.Wanted, "wanted is what the load asks for, held or not")
			require.Equal(t, tt.reason, got.Reason)
			require.Equal(t, tt.roomLeft, room, "room left for the workspace's other deployments")
		})
	}
}

func TestTick_ScaleUpIsHeldAtTheWorkspacesReplicaAndGPUQuotas(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	ctx := context.Background()
	require.NoError(t, store.SetWorkspaceQuotas(ctx, db, m.WorkspaceID,
		store.Quotas{Replicas: 5, GPUs: 6, AsyncRequests: 10, ArchiveBytes: 1 << 20}))
	// Another deployment of the workspace runs 2 replicas of 1 GPU each, and the busy one 1
	// replica of 2 GPUs: 2 replicas and 2 GPUs are left.
	other := newDeployment(t, db, m, "ACTIVE", linear(2), 2)
	_, err := db.ExecContext(ctx, `UPDATE deployments SET gpus_per_replica = 1 WHERE id = $1`, other.ID)
	require.NoError(t, err)
	busy := newDeployment(t, db, m, "ACTIVE", linear(8), 0)
	_, err = db.ExecContext(ctx, `UPDATE deployments SET gpus_per_replica = 2 WHERE id = $1`, busy.ID)
	require.NoError(t, err)
	addReady(t, db, busy.ID, 1)
	now := time.Now().UTC().Truncate(time.Second)
	load(t, db, busy.ID, now.Add(time.Minute), 70, 3) // 6 in flight: 6 replicas wanted

	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger(), Registerer: prometheus.NewRegistry()})
	require.NoError(t, l.tick(ctx, now))
	require.Equal(t, []scaleCall{{contract.DeploymentWorkflowID(busy.ID), 2}}, tc.takeCalls(busy.ID, other.ID),
		"2 GPUs left hold one more replica of 2 GPUs: 2, not the 6 the load asks for")

	// The operator raises the GPU quota: the replicas quota holds next.
	require.NoError(t, store.SetWorkspaceQuotas(ctx, db, m.WorkspaceID,
		store.Quotas{Replicas: 5, GPUs: 100, AsyncRequests: 10, ArchiveBytes: 1 << 20}))
	require.NoError(t, l.tick(ctx, now.Add(time.Second)))
	require.Equal(t, []scaleCall{{contract.DeploymentWorkflowID(busy.ID), 3}}, tc.takeCalls(busy.ID, other.ID),
		"5 replicas in all: 2 of the other deployment and 3 of this one")
}
