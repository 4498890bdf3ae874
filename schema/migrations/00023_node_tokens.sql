-- +goose Up

-- A node's own token, issued by `modelplane nodes token create`: only its SHA-256 is kept.
-- The token is good for heartbeats and archive downloads of node_name alone, until revoked.
CREATE TABLE node_tokens (
    id            text PRIMARY KEY,
    node_name     text NOT NULL,
    token_sha256  bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE INDEX node_tokens_node_name ON node_tokens (node_name) WHERE revoked_at IS NULL;

-- +goose Down
DROP TABLE node_tokens;
