-- +goose Up

-- The nodes BuildPythonEnv asked to build a deployment's Python environment. Such a node may
-- download the deployment's archive before any replica of it is placed there; any other node
-- may download only the archives of the replicas placed on it.
CREATE TABLE env_build_nodes (
    deployment_id  text NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    node_id        text NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    asked_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_id, node_id)
);
CREATE INDEX env_build_nodes_node ON env_build_nodes (node_id);

-- +goose Down
DROP TABLE env_build_nodes;
