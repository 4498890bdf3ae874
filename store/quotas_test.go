package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

// liveReplica records a PENDING replica of the deployment, holding the given GPUs (made on a
// node of its own).
func liveReplica(t *testing.T, db *sqlx.DB, deploymentID string, gpus int) string {
	t.Helper()
	ctx := context.Background()
	id := modelplane.NewID(12)
	var uuids []string
	nodeID := ""
	if gpus > 0 {
		nodeID = modelplane.NewID(8)
		_, err := db.ExecContext(ctx, `INSERT INTO nodes (id, name, agent_url, token_sha256) VALUES ($1, $1, '', $2)`,
			nodeID, make([]byte, 32))
		require.NoError(t, err)
		for i := range gpus {
			u := "GPU-" + modelplane.NewID(12)
			_, err := db.ExecContext(ctx, `INSERT INTO gpus (uuid, node_id, idx) VALUES ($1, $2, $3)`, u, nodeID, i)
			require.NoError(t, err)
			uuids = append(uuids, u)
		}
	}
	_, _, err := store.CreateReplica(ctx, db, store.NewReplica{ID: id, DeploymentID: deploymentID, NodeID: nodeID, GPUUUIDs: uuids})
	require.NoError(t, err)
	return id
}

func TestWorkspaceUsage_CountsLiveReplicasTheirGPUsOpenAsyncAndArchives(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	recorded, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, GPUsPerReplica: 2})
	require.NoError(t, err)
	older, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)

	liveReplica(t, db, recorded.ID, 0) // placed, its GPUs not yet assigned: counts 2
	liveReplica(t, db, older.ID, 3)    // a deployment without gpus_per_replica: counts what it holds
	stopped := liveReplica(t, db, recorded.ID, 0)
	_, err = db.ExecContext(ctx, `UPDATE replicas SET state = 'STOPPED' WHERE id = $1`, stopped)
	require.NoError(t, err)
	_, err = store.InsertAsyncRequest(ctx, db, store.NewAsyncRequest{WorkspaceID: m.WorkspaceID, ModelID: m.ID,
		DeploymentID: recorded.ID, Priority: 1, MaxTimeInQueueSeconds: 600, ModelInput: []byte(`1`)}, 10)
	require.NoError(t, err)
	_, _, err = store.CreateArchive(ctx, db, store.Archive{WorkspaceID: m.WorkspaceID, ID: digest("a" + m.ID), SizeBytes: 1000, Config: []byte(`{}`)})
	require.NoError(t, err)

	u, err := store.WorkspaceUsage(ctx, db, m.WorkspaceID)
	require.NoError(t, err)
	require.Equal(t, store.Usage{Replicas: 2, GPUs: 5, AsyncRequests: 1, ArchiveBytes: 1000}, u)
	others, err := store.WorkspaceUsageExcept(ctx, db, m.WorkspaceID, older.ID)
	require.NoError(t, err)
	require.Equal(t, store.Usage{Replicas: 1, GPUs: 2}, others)

	require.NoError(t, store.SetWorkspaceQuotas(ctx, db, m.WorkspaceID, store.Quotas{Replicas: 1, GPUs: 10, AsyncRequests: 1, ArchiveBytes: 1}))
	idle := newModel(t, db)
	require.NoError(t, store.SetWorkspaceQuotas(ctx, db, idle.WorkspaceID, store.Quotas{Replicas: 7, GPUs: 3}))
	rooms, err := store.ReplicaRoom(ctx, db)
	require.NoError(t, err)
	require.Equal(t, store.Room{Replicas: -1, GPUs: 5}, rooms[m.WorkspaceID], "a quota below what runs leaves negative room")
	require.Equal(t, store.Room{Replicas: 7, GPUs: 3}, rooms[idle.WorkspaceID], "a workspace running nothing has its whole quota")
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestCreateArchiveInQuota_TwoUploadsCannotBothTakeTheLastBytes(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	q := store.DefaultQuotas()
	q.ArchiveBytes = 100
	require.NoError(t, store.SetWorkspaceQuotas(ctx, db, m.WorkspaceID, q))

	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = store.CreateArchiveInQuota(ctx, db, store.Archive{WorkspaceID: m.WorkspaceID,
				ID: digest(m.ID + string(rune('a'+i))), SizeBytes: 60, Config: []byte(`{}`)})
		}()
	}
	wg.Wait()
	refused := 0
	for _, err := range errs {
		var qe *store.QuotaExceeded
		if errors.As(err, &qe) {
			refused++
			require.Equal(t, store.QuotaExceeded{Quota: "archive_bytes", Limit: 100, Used: 60, Asked: 60}, *qe)
			require.ErrorIs(t, err, store.ErrQuota)
			continue
		}
		require.NoError(t, err)
	}
	require.Equal(t, 3, refused, "one of four 60-byte archives fits 100 bytes")
	stored, err := store.ArchiveBytes(ctx, db, m.WorkspaceID)
	require.NoError(t, err)
	require.EqualValues(t, 60, stored)

	// The archive the workspace has is answered whatever the quota.
	var kept string
	require.NoError(t, db.GetContext(ctx, &kept, `SELECT id FROM archives WHERE workspace_id = $1`, m.WorkspaceID))
	a, created, err := store.CreateArchiveInQuota(ctx, db, store.Archive{WorkspaceID: m.WorkspaceID, ID: kept, SizeBytes: 60, Config: []byte(`{}`)})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, kept, a.ID)
}
