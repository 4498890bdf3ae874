-- +goose Up

-- The live-reload state of a development deployment, made on its first patch request: the
-- patch point of its archive (base), the point its staged patches lead to (head), and how far
-- its replicas have been brought (applied). seq 0 is the base.
CREATE TABLE patch_states (
    deployment_id  text PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    base_point     jsonb NOT NULL,
    base_hash      text NOT NULL,
    head_point     jsonb NOT NULL,
    head_hash      text NOT NULL,
    head_seq       bigint NOT NULL DEFAULT 0,
    applied_seq    bigint NOT NULL DEFAULT 0 CHECK (applied_seq <= head_seq),
    applied_hash   text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Staged patches, in order. Each keeps the config.yaml text of the point it leads to, so a
-- replica's config at any seq is one row away.
CREATE TABLE patches (
    deployment_id  text NOT NULL REFERENCES patch_states (deployment_id) ON DELETE CASCADE,
    seq            bigint NOT NULL CHECK (seq >= 1),
    prev_hash      text NOT NULL,
    next_hash      text NOT NULL,
    config         text NOT NULL,
    ops            jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_id, seq)
);
CREATE INDEX patches_next_hash ON patches (deployment_id, next_hash);

-- A lease that keeps a deployment from scaling to zero while someone works on it
-- (`modelplane watch` renews it).
CREATE TABLE awake_leases (
    deployment_id  text PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    until          timestamptz NOT NULL
);

-- +goose Down
DROP TABLE awake_leases;
DROP TABLE patches;
DROP TABLE patch_states;
