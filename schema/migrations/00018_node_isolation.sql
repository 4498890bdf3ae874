-- +goose Up

-- How a node keeps model servers away from its agent and from each other, as its agent last
-- reported it: mode 'replica-users' or 'none' (with a warning saying why); '' for an agent
-- that does not report it.
ALTER TABLE nodes
    ADD COLUMN isolation          text NOT NULL DEFAULT '' CHECK (isolation IN ('', 'replica-users', 'none')),
    ADD COLUMN isolation_uids     text NOT NULL DEFAULT '',
    ADD COLUMN isolation_warning  text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE nodes DROP COLUMN isolation, DROP COLUMN isolation_uids, DROP COLUMN isolation_warning;
