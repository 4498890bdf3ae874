package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// Quotas are what a workspace may hold at once. The operator sets them (modelplane quotas
// set); no API key can.
type Quotas struct {
	// Replicas bounds the replicas the workspace's deployments run at once.
	Replicas int `db:"replicas" json:"replicas"`
	// GPUs bounds the GPUs those replicas hold at once (a MIG instance counts as one).
	GPUs int `db:"gpus" json:"gpus"`
	// AsyncRequests bounds the async requests queued or in progress at once.
	AsyncRequests int `db:"async_requests" json:"async_requests"`
	// ArchiveBytes bounds the bytes of the archives the workspace stores.
	ArchiveBytes int64 `db:"archive_bytes" json:"archive_bytes"`
}

// DefaultQuotas are the quotas of a workspace the operator has set none for: 64 replicas,
// 64 GPUs, 50,000 async requests (the gateway's --async-max-open default) and 100 GiB of
// archives. Generous enough that a team never meets them by accident, small enough that a
// runaway setting or script stops long before it takes a cluster.
func DefaultQuotas() Quotas {
	return Quotas{Replicas: 64, GPUs: 64, AsyncRequests: 50_000, ArchiveBytes: 100 << 30}
}

// Usage is what a workspace holds now, in the terms of Quotas.
type Usage struct {
	// Replicas counts live replicas (PENDING to STOPPING) of the workspace's deployments.
	Replicas int `db:"replicas" json:"replicas"`
	// GPUs counts the GPUs those replicas hold or are placed to hold: per replica, its
	// deployment's GPUs per replica or the GPUs it holds, whichever is more.
	GPUs int `db:"gpus" json:"gpus"`
	// AsyncRequests counts the async requests QUEUED or IN_PROGRESS.
	AsyncRequests int `db:"async_requests" json:"async_requests"`
	// ArchiveBytes sums the sizes of the workspace's archives.
	ArchiveBytes int64 `db:"archive_bytes" json:"archive_bytes"`
}

// QuotaExceeded is the error of a change a workspace's quota refuses: Quota names it
// ("replicas", "gpus", "async_requests", "archive_bytes"), Limit is the quota, Used what the
// workspace holds and Asked what the change would add (or set).
type QuotaExceeded struct {
	Quota string
	Limit int64
	Used  int64
	Asked int64
}

// ErrQuota is what errors.Is finds in a *QuotaExceeded.
var ErrQuota = errors.New("quota exceeded")

func (e *QuotaExceeded) Error() string {
	return fmt.Sprintf("the workspace's %s quota is %d and it holds %d; this would add %d", e.Quota, e.Limit, e.Used, e.Asked)
}

// Is makes errors.Is(err, ErrQuota) true.
func (e *QuotaExceeded) Is(target error) bool { return target == ErrQuota }

// WorkspaceQuotas returns the workspace's quotas: the operator's, or DefaultQuotas.
func WorkspaceQuotas(ctx context.Context, db sqlx.QueryerContext, workspaceID string) (Quotas, error) {
	q, _, err := WorkspaceQuotasSet(ctx, db, workspaceID)
	return q, err
}

// WorkspaceQuotasSet is WorkspaceQuotas, and whether the operator set them (false: the
// defaults).
func WorkspaceQuotasSet(ctx context.Context, db sqlx.QueryerContext, workspaceID string) (Quotas, bool, error) {
	var q Quotas
	err := get(ctx, db, &q, `
		SELECT replicas, gpus, async_requests, archive_bytes FROM workspace_quotas WHERE workspace_id = $1`, workspaceID)
	if errors.Is(err, ErrNotFound) {
		return DefaultQuotas(), false, nil
	}
	return q, err == nil, err
}

// SetWorkspaceQuotas records the workspace's quotas, replacing any it had.
func SetWorkspaceQuotas(ctx context.Context, db sqlx.ExecerContext, workspaceID string, q Quotas) error {
	_, err := db.ExecContext(ctx, `
		INSERT INTO workspace_quotas (workspace_id, replicas, gpus, async_requests, archive_bytes)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (workspace_id) DO UPDATE SET replicas = $2, gpus = $3, async_requests = $4,
		    archive_bytes = $5, updated_at = now()`,
		workspaceID, q.Replicas, q.GPUs, q.AsyncRequests, q.ArchiveBytes)
	return err
}

// replicaGPUsSQL is the GPUs live replica r (of deployment d) counts for: its deployment's
// GPUs per replica, or the GPUs it holds when that is more (a deployment made before
// gpus_per_replica was recorded has 0 there).
const replicaGPUsSQL = `GREATEST(d.gpus_per_replica, (SELECT count(*) FROM gpus g WHERE g.assigned_replica_id = r.id))`

// WorkspaceUsage returns what the workspace holds now.
func WorkspaceUsage(ctx context.Context, db sqlx.QueryerContext, workspaceID string) (Usage, error) {
	var u Usage
	err := get(ctx, db, &u, `
		SELECT COALESCE(rr.replicas, 0) AS replicas, COALESCE(rr.gpus, 0) AS gpus,
		       (SELECT count(*) FROM async_requests a
		        WHERE a.workspace_id = $1 AND a.status IN `+sqlOpenAsyncStatuses+`) AS async_requests,
		       (SELECT COALESCE(sum(size_bytes), 0) FROM archives WHERE workspace_id = $1) AS archive_bytes
		FROM (SELECT count(*) AS replicas, sum(`+replicaGPUsSQL+`) AS gpus
		      FROM replicas r JOIN deployments d ON d.id = r.deployment_id
		      WHERE d.workspace_id = $1 AND r.state IN `+sqlLiveReplicaStates+`) rr`, workspaceID)
	return u, err
}

// WorkspaceUsageExcept returns the replicas and GPUs the workspace's live replicas count for,
// less those of deployment deploymentID; the other fields are zero.
func WorkspaceUsageExcept(ctx context.Context, db sqlx.QueryerContext, workspaceID, deploymentID string) (Usage, error) {
	var u Usage
	err := get(ctx, db, &u, `
		SELECT count(*) AS replicas, COALESCE(sum(`+replicaGPUsSQL+`), 0) AS gpus,
		       0 AS async_requests, 0 AS archive_bytes
		FROM replicas r JOIN deployments d ON d.id = r.deployment_id
		WHERE d.workspace_id = $1 AND d.id <> $2 AND r.state IN `+sqlLiveReplicaStates, workspaceID, deploymentID)
	return u, err
}

// Room is what a workspace may still start: replicas and GPUs under its quotas, less those
// its live replicas count for. Either may be negative when the quota was lowered below
// what runs.
type Room struct {
	Replicas int
	GPUs     int
}

// ReplicaRoom returns the room of every workspace that has a live replica or a quota row;
// a workspace not in the map has DefaultQuotas and runs nothing.
func ReplicaRoom(ctx context.Context, db sqlx.QueryerContext) (map[string]Room, error) {
	def := DefaultQuotas()
	var rows []struct {
		WorkspaceID string `db:"workspace_id"`
		Replicas    int    `db:"replicas"`
		GPUs        int    `db:"gpus"`
	}
	err := list(ctx, db, &rows, `
		WITH used AS (
			SELECT d.workspace_id, count(*) AS replicas, sum(`+replicaGPUsSQL+`) AS gpus
			FROM replicas r JOIN deployments d ON d.id = r.deployment_id
			WHERE r.state IN `+sqlLiveReplicaStates+`
			GROUP BY d.workspace_id
		)
		SELECT COALESCE(u.workspace_id, q.workspace_id) AS workspace_id,
		       COALESCE(q.replicas, $1) - COALESCE(u.replicas, 0) AS replicas,
		       COALESCE(q.gpus, $2) - COALESCE(u.gpus, 0) AS gpus
		FROM used u FULL JOIN workspace_quotas q ON q.workspace_id = u.workspace_id`,
		def.Replicas, def.GPUs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Room, len(rows))
	for _, r := range rows {
		out[r.WorkspaceID] = Room{Replicas: r.Replicas, GPUs: r.GPUs}
	}
	return out, nil
}
