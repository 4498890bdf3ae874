-- +goose Up

-- A workspace's secrets (Baseten's /v1/secrets): a name and its value sealed with
-- AES-256-GCM (nonce then ciphertext and tag), the workspace and name as additional data.
-- The plain value is never stored; the key lives outside the database.
CREATE TABLE workspace_secrets (
    id            text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{12}$'),
    workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (name ~ '^[A-Za-z0-9._-]{1,253}$' AND name NOT IN ('.', '..')),
    sealed_value  bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

-- +goose Down
DROP TABLE workspace_secrets;
