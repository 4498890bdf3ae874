-- +goose Up

-- What a workspace may hold at once, set by the operator (modelplane quotas set). A workspace
-- without a row has the built-in defaults (store.DefaultQuotas, API.md "Quotas").
CREATE TABLE workspace_quotas (
    workspace_id    text PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    replicas        integer NOT NULL CHECK (replicas >= 0),
    gpus            integer NOT NULL CHECK (gpus >= 0),
    async_requests  integer NOT NULL CHECK (async_requests >= 0),
    archive_bytes   bigint NOT NULL CHECK (archive_bytes >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The GPUs one replica of the deployment holds (a MIG instance counts as one), from the
-- config it was created with; 0 for a CPU-only deployment and for those made before this
-- column, which count the GPUs their replicas hold instead.
ALTER TABLE deployments ADD COLUMN gpus_per_replica integer NOT NULL DEFAULT 0 CHECK (gpus_per_replica >= 0);

-- +goose Down
ALTER TABLE deployments DROP COLUMN gpus_per_replica;
DROP TABLE workspace_quotas;
