-- +goose Up

-- The Temporal history this database's workflows live in: the namespace's ID, which a new
-- Temporal store draws afresh. dev compares it with its own history at start and refuses a
-- database that holds another history's state (decisions.md, "Reconcile").
CREATE TABLE temporal_history (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    namespace     text NOT NULL,
    namespace_id  text NOT NULL,
    recorded_by   text NOT NULL DEFAULT '',
    recorded_at   timestamptz NOT NULL DEFAULT now()
);

-- How often the reconcile pass restarted the request's workflow after finding it gone: it
-- restarts one at most once, and fails it the next time.
ALTER TABLE async_requests ADD COLUMN workflow_restarts integer NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE async_requests DROP COLUMN workflow_restarts;
DROP TABLE temporal_history;
