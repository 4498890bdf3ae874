-- +goose Up

-- A dashboard sign-in: the browser holds a random session ID in a cookie; only its SHA-256 is
-- kept here. The session acts as the API key it was exchanged for: revoking or deleting the
-- key ends it (the auth check joins api_keys), as does its expiry or a sign-out.
CREATE TABLE dashboard_sessions (
    id_sha256     bytea PRIMARY KEY,
    api_key_id    text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    workspace_id  text NOT NULL,
    csrf_token    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dashboard_sessions_api_key ON dashboard_sessions (api_key_id);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);

-- +goose Down
DROP TABLE dashboard_sessions;
