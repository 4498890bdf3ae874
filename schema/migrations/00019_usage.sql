-- +goose Up

-- Usage: one interval per replica from its placement (when it is given its GPUs) until it
-- stops, fails, or its model is deleted, with what it held copied on. The rows keep IDs and
-- names, not references, so that a deleted deployment or model keeps its usage (API.md,
-- "Usage"). An interval is open (ended_at NULL) exactly while its replica is live.
CREATE TABLE usage_intervals (
    id               bigserial PRIMARY KEY,
    replica_id       text NOT NULL,
    workspace_id     text NOT NULL,
    model_id         text NOT NULL,
    model_name       text NOT NULL,
    deployment_id    text NOT NULL,
    deployment_name  text NOT NULL,
    node_id          text NOT NULL DEFAULT '',
    gpu_count        integer NOT NULL DEFAULT 0 CHECK (gpu_count >= 0),
    gpu_type         text NOT NULL DEFAULT '',
    mig_profile      text NOT NULL DEFAULT '',
    started_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE UNIQUE INDEX usage_intervals_open ON usage_intervals (replica_id) WHERE ended_at IS NULL;
CREATE INDEX usage_intervals_workspace ON usage_intervals (workspace_id, started_at);

-- Replicas live when this migration runs are counted from their placement on.
INSERT INTO usage_intervals (replica_id, workspace_id, model_id, model_name, deployment_id, deployment_name,
                             node_id, gpu_count, gpu_type, mig_profile, started_at)
SELECT r.id, d.workspace_id, m.id, m.name, d.id, d.name, COALESCE(r.node_id, ''),
       count(g.uuid), COALESCE(min(g.name), ''), COALESCE(min(g.mig_profile), ''), r.created_at
FROM replicas r
JOIN deployments d ON d.id = r.deployment_id
JOIN models m ON m.id = d.model_id
LEFT JOIN gpus g ON g.assigned_replica_id = r.id
WHERE r.state NOT IN ('STOPPED', 'FAILED')
GROUP BY r.id, d.id, m.id;

-- +goose Down
DROP TABLE usage_intervals;
