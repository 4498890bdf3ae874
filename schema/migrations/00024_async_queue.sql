-- +goose Up

-- Async requests run without a workflow of their own while they need no durable wait: a
-- gateway starts a queued request and records how its attempt ended. A request is given its
-- AsyncRequest workflow only when it needs one (an attempt to retry, a webhook to deliver, a
-- gateway lost mid-attempt): workflow_wanted_at says since when, so a sweep can start the
-- workflows a gateway asked for but did not get.
ALTER TABLE async_requests
    ADD COLUMN workflow_wanted_at timestamptz,
    ADD COLUMN expires_at         timestamptz;
UPDATE async_requests SET expires_at = created_at + max_time_in_queue_seconds * interval '1 second';
-- Requests queued before this change had their workflow started when they were accepted.
UPDATE async_requests SET workflow_wanted_at = created_at WHERE status = 'QUEUED';
-- A row written without it keeps max_time_in_queue_seconds' default of 600.
ALTER TABLE async_requests ALTER COLUMN expires_at SET NOT NULL,
    ALTER COLUMN expires_at SET DEFAULT now() + interval '600 seconds';
DROP INDEX async_requests_unstarted;
CREATE INDEX async_requests_unstarted ON async_requests (workflow_wanted_at)
    WHERE workflow_wanted_at IS NOT NULL AND NOT workflow_started;
CREATE INDEX async_requests_expiry ON async_requests (expires_at) WHERE status = 'QUEUED';

-- +goose Down
DROP INDEX async_requests_expiry, async_requests_unstarted;
CREATE INDEX async_requests_unstarted ON async_requests (created_at)
    WHERE status = 'QUEUED' AND NOT workflow_started;
ALTER TABLE async_requests DROP COLUMN expires_at, DROP COLUMN workflow_wanted_at;
