-- +goose Up

-- The output of a deployment's build (pip installing its requirements on the nodes), kept
-- bounded: appends keep the last 262144 characters (256 KiB of ASCII), so a chatty or
-- retried build cannot grow the row without end.
CREATE TABLE deployment_build_logs (
    deployment_id text PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    log           text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE deployment_build_logs;
