-- +goose Up

-- An environment may name a shadow deployment that gateways copy a share of its requests to
-- (settings.ShadowSettings; '{}' reads as the defaults, no shadow). shadow_changed_at is
-- when those settings last changed: the comparison figures count from then.
ALTER TABLE environments
    ADD COLUMN shadow_settings jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN shadow_changed_at timestamptz NOT NULL DEFAULT now();

-- Each gateway run's running totals of the copies it made for an environment under the
-- settings of shadow_changed_at = changed_at; the environment's figures are the sum over
-- gateway runs. A run rewrites its own row with its totals, so a retried write counts once.
-- Latencies are counted by store.LatencyBounds, as in load_samples.
CREATE TABLE shadow_stats (
    model_id        text NOT NULL,
    environment     text NOT NULL,
    changed_at      timestamptz NOT NULL,
    gateway_run     text NOT NULL,
    copied          bigint NOT NULL DEFAULT 0 CHECK (copied >= 0),
    equal           bigint NOT NULL DEFAULT 0 CHECK (equal >= 0),
    different       bigint NOT NULL DEFAULT 0 CHECK (different >= 0),
    errors          bigint NOT NULL DEFAULT 0 CHECK (errors >= 0),
    dropped         bigint NOT NULL DEFAULT 0 CHECK (dropped >= 0),
    primary_latency_buckets bigint[] NOT NULL DEFAULT '{}',
    shadow_latency_buckets  bigint[] NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, environment, changed_at, gateway_run),
    FOREIGN KEY (model_id, environment) REFERENCES environments (model_id, name)
        ON DELETE CASCADE
);

-- +goose Down
DROP TABLE shadow_stats;
ALTER TABLE environments DROP COLUMN shadow_changed_at, DROP COLUMN shadow_settings;
