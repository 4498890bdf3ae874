-- +goose Up

-- One row per gateway process, rewritten every second. Stopping a replica waits until every
-- live gateway has read routes without it and has no request in flight on it.
CREATE TABLE gateway_reports (
    gateway_id   text PRIMARY KEY,
    routes_at    timestamptz NOT NULL,  -- database time at which the gateway read its current routing table
    reported_at  timestamptz NOT NULL DEFAULT now(),
    in_flight    jsonb NOT NULL DEFAULT '{}'  -- replica id -> requests in flight there (only those > 0)
);

-- When a replica was taken out of the routes, so that a gateway's routes_at says whether its
-- routing table still has it.
ALTER TABLE replicas ADD COLUMN draining_at timestamptz;

-- +goose Down
ALTER TABLE replicas DROP COLUMN draining_at;
DROP TABLE gateway_reports;
