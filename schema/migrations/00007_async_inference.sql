-- +goose Up

-- An async request is recorded here before its AsyncRequest workflow is started;
-- workflow_started says the workflow has run (its first activity sets it), so Cleanup can start
-- the workflow of a request whose gateway died between the two. The webhook carries
-- webhook_delivery_id, the same on every retry of the delivery. The output is kept until
-- output_expires_at when there is no webhook or its delivery failed.
ALTER TABLE async_requests
    ADD COLUMN workflow_started     boolean NOT NULL DEFAULT false,
    ADD COLUMN webhook_delivery_id  text NOT NULL DEFAULT '',
    ADD COLUMN output_content_type  text NOT NULL DEFAULT '',
    ADD COLUMN started_at           timestamptz,
    ADD COLUMN finished_at          timestamptz;
CREATE INDEX async_requests_unstarted ON async_requests (created_at)
    WHERE status = 'QUEUED' AND NOT workflow_started;
CREATE INDEX async_requests_running ON async_requests (deployment_id) WHERE status = 'IN_PROGRESS';
CREATE INDEX async_requests_output_expiry ON async_requests (output_expires_at)
    WHERE output_expires_at IS NOT NULL;

-- One try at predict for an async request. The workflow inserts it PENDING; a gateway claims
-- it (RUNNING, gateway_id), calls the model and records the answer (DONE). The call runs in
-- the gateway, not in the worker, so a worker that dies mid-call does not make the model
-- see the request twice: the retried activity finds the attempt and waits for its answer.
CREATE TABLE async_attempts (
    request_id     text NOT NULL REFERENCES async_requests (id) ON DELETE CASCADE,
    attempt        integer NOT NULL CHECK (attempt >= 1),
    deployment_id  text NOT NULL,
    state          text NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'RUNNING', 'DONE')),
    gateway_id     text NOT NULL DEFAULT '',
    status_code    integer NOT NULL DEFAULT 0,
    output         bytea,
    content_type   text NOT NULL DEFAULT '',
    error_code     text NOT NULL DEFAULT '',
    error          text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    PRIMARY KEY (request_id, attempt)
);
CREATE INDEX async_attempts_pending ON async_attempts (created_at) WHERE state = 'PENDING';
CREATE INDEX async_attempts_running ON async_attempts (gateway_id) WHERE state = 'RUNNING';

-- The key that signs a workspace's webhooks. It is shown once, when made or rotated.
CREATE TABLE webhook_secrets (
    workspace_id  text PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    secret        text NOT NULL CHECK (length(secret) >= 32),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Queued requests to an environment follow it: when the environment switches deployment (a
-- promotion, a direct deploy), those still waiting move to the new deployment's queue with
-- their place (priority, created_at) kept, instead of waking the one it left.
-- +goose StatementBegin
CREATE FUNCTION async_requests_follow_environment() RETURNS trigger AS $$
BEGIN
    IF NEW.current_deployment_id IS NOT NULL
       AND NEW.current_deployment_id IS DISTINCT FROM OLD.current_deployment_id THEN
        UPDATE async_requests SET deployment_id = NEW.current_deployment_id
        WHERE deployment_id = OLD.current_deployment_id AND model_id = NEW.model_id
          AND environment = NEW.name AND status = 'QUEUED';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE TRIGGER environments_async_follow
    AFTER UPDATE OF current_deployment_id ON environments
    FOR EACH ROW EXECUTE FUNCTION async_requests_follow_environment();

-- +goose Down
DROP TRIGGER environments_async_follow ON environments;
DROP FUNCTION async_requests_follow_environment();
DROP TABLE webhook_secrets, async_attempts;
DROP INDEX async_requests_unstarted, async_requests_running, async_requests_output_expiry;
ALTER TABLE async_requests
    DROP COLUMN finished_at,
    DROP COLUMN started_at,
    DROP COLUMN output_content_type,
    DROP COLUMN webhook_delivery_id,
    DROP COLUMN workflow_started;
