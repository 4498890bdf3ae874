-- +goose Up

-- What the requests that ended in a sample's second came to, for canary analysis: how many
-- ended, how many of them answered 5xx (the gateway's own 502 and 504 included; a client that
-- left first is no error), and how long they took end to end, counted by the fixed upper
-- bounds of store.LatencyBounds (one more count for everything above the last bound). An
-- empty latency_buckets means no request ended.
ALTER TABLE load_samples
    ADD COLUMN completed integer NOT NULL DEFAULT 0 CHECK (completed >= 0),
    ADD COLUMN errors integer NOT NULL DEFAULT 0 CHECK (errors >= 0),
    ADD COLUMN latency_buckets integer[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE load_samples
    DROP COLUMN latency_buckets,
    DROP COLUMN errors,
    DROP COLUMN completed;
