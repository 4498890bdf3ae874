package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// openUsage opens the replica's usage interval with the GPUs it holds and the names of its
// deployment and model copied on: from its placement (created_at) for its first interval,
// from now for one that comes back after it ended. A replica whose interval is open
// already keeps it.
func openUsage(ctx context.Context, tx sqlx.ExtContext, replicaID string) error {
	return exec(ctx, tx, false, `
		INSERT INTO usage_intervals (replica_id, workspace_id, model_id, model_name, deployment_id, deployment_name,
		                             node_id, gpu_count, gpu_type, mig_profile, started_at)
		SELECT r.id, d.workspace_id, m.id, m.name, d.id, d.name, COALESCE(r.node_id, ''),
		       count(g.uuid), COALESCE(min(g.name), ''), COALESCE(min(g.mig_profile), ''),
		       CASE WHEN EXISTS (SELECT 1 FROM usage_intervals o WHERE o.replica_id = r.id) THEN now() ELSE r.created_at END
		FROM replicas r
		JOIN deployments d ON d.id = r.deployment_id
		JOIN models m ON m.id = d.model_id
		LEFT JOIN gpus g ON g.assigned_replica_id = r.id
		WHERE r.id = $1
		GROUP BY r.id, d.id, m.id
		ON CONFLICT (replica_id) WHERE ended_at IS NULL DO NOTHING`, replicaID)
}

// closeUsage ends the replica's open usage interval.
func closeUsage(ctx context.Context, tx sqlx.ExtContext, replicaID string) error {
	return exec(ctx, tx, false, usageEnd+` AND r.id = $2`, NodeDownAfter.Seconds(), replicaID)
}

// usageEnd ends open usage intervals ($1 is NodeDownAfter in seconds; the caller adds which
// replicas r): now, or, when the replica's node has sent no heartbeat for NodeDownAfter, at
// the node's last heartbeat, since the replica is not known to have run past it.
const usageEnd = `
	UPDATE usage_intervals u SET ended_at = GREATEST(u.started_at, CASE
		WHEN n.last_heartbeat_at < now() - $1 * interval '1 second' THEN n.last_heartbeat_at
		ELSE now() END)
	FROM replicas r LEFT JOIN nodes n ON n.id = r.node_id
	WHERE u.replica_id = r.id AND u.ended_at IS NULL`

// UsageGrouping is what usage rows are summed by, besides the hour.
type UsageGrouping string

// The groupings of usage.
const (
	UsageByModel      UsageGrouping = "model"
	UsageByDeployment UsageGrouping = "deployment"
	UsageByGPUType    UsageGrouping = "gpu_type"
)

// UsageQuery asks for a workspace's usage in [Start, End), summed by hour and GroupBy.
type UsageQuery struct {
	WorkspaceID string
	Start, End  time.Time
	GroupBy     UsageGrouping
}

// UsageRow is a workspace's usage in one hour (UTC) of one group. The fields its grouping
// folds away are empty: GPU type and MIG profile by model or deployment, the model and
// deployment by GPU type, the deployment by model.
type UsageRow struct {
	Hour           time.Time `db:"hour"`
	ModelID        string    `db:"model_id"`
	ModelName      string    `db:"model_name"`
	DeploymentID   string    `db:"deployment_id"`
	DeploymentName string    `db:"deployment_name"`
	GPUType        string    `db:"gpu_type"`
	MIGProfile     string    `db:"mig_profile"`
	ReplicaSeconds float64   `db:"replica_seconds"`
	GPUSeconds     float64   `db:"gpu_seconds"`
}

// usageGroupColumns are the select list and the GROUP BY of each grouping. A name is that of
// the group's latest interval, so a renamed deployment reads under its newest name.
var usageGroupColumns = map[UsageGrouping][2]string{
	UsageByModel: {`
		p.model_id, (array_agg(p.model_name ORDER BY p.started_at DESC, p.id DESC))[1] AS model_name,
		'' AS deployment_id, '' AS deployment_name, '' AS gpu_type, '' AS mig_profile`,
		`p.model_id`},
	UsageByDeployment: {`
		p.model_id, (array_agg(p.model_name ORDER BY p.started_at DESC, p.id DESC))[1] AS model_name,
		p.deployment_id, (array_agg(p.deployment_name ORDER BY p.started_at DESC, p.id DESC))[1] AS deployment_name,
		'' AS gpu_type, '' AS mig_profile`,
		`p.model_id, p.deployment_id`},
	UsageByGPUType: {`
		'' AS model_id, '' AS model_name, '' AS deployment_id, '' AS deployment_name, p.gpu_type, p.mig_profile`,
		`p.gpu_type, p.mig_profile`},
}

// UsageReport answers the workspace's replica-seconds and GPU-seconds in [Start, End), each
// interval cut at the range's ends and at every hour (UTC), summed by hour and group and
// ordered by hour, then by group. An interval still open counts up to now.
func UsageReport(ctx context.Context, db sqlx.QueryerContext, q UsageQuery) ([]UsageRow, error) {
	cols, ok := usageGroupColumns[q.GroupBy]
	if !ok {
		return nil, fmt.Errorf("usage grouping %q is not one of model, deployment, gpu_type", q.GroupBy)
	}
	out := []UsageRow{}
	err := list(ctx, db, &out, `
		WITH clipped AS (
			SELECT u.*, GREATEST(u.started_at, $2) AS s, LEAST(COALESCE(u.ended_at, now()), $3) AS e
			FROM usage_intervals u
			WHERE u.workspace_id = $1 AND u.started_at < $3 AND (u.ended_at IS NULL OR u.ended_at > $2)
		), p AS (
			SELECT c.*, h.hour,
			       extract(epoch FROM LEAST(c.e, h.hour + interval '1 hour') - GREATEST(c.s, h.hour))::float8 AS seconds
			FROM clipped c,
			     LATERAL (SELECT generate_series(date_trunc('hour', c.s AT TIME ZONE 'UTC'),
			                                     c.e AT TIME ZONE 'UTC', interval '1 hour') AT TIME ZONE 'UTC' AS hour) h
			WHERE c.e > c.s
		)
		SELECT p.hour, `+cols[0]+`,
		       sum(p.seconds) AS replica_seconds, sum(p.seconds * p.gpu_count) AS gpu_seconds
		FROM p WHERE p.seconds > 0
		GROUP BY p.hour, `+cols[1]+`
		ORDER BY p.hour, `+cols[1], q.WorkspaceID, q.Start, q.End)
	for i := range out {
		out[i].Hour = out[i].Hour.UTC()
	}
	return out, err
}
