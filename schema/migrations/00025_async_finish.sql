-- +goose Up

-- A queue is taken from in its whole order (priority, then arrival, then ID): with the ID in
-- the index, the head is the index's first unlocked entry, read without sorting the queue.
DROP INDEX async_requests_queue;
CREATE INDEX async_requests_queue ON async_requests (deployment_id, priority, created_at, id)
    WHERE status = 'QUEUED';

-- async_capacity is what deployment dep's async queue may start: its status, whether it was
-- deleted, its READY replicas, its concurrency target (its settings' concurrency_target, at
-- least 1) and its async requests in progress. No row when there is no such deployment.
-- +goose StatementBegin
CREATE FUNCTION async_capacity(dep text)
RETURNS TABLE (deployment_status text, deployment_deleted boolean, ready_replicas bigint,
               concurrency_target integer, in_progress bigint)
LANGUAGE sql STABLE AS $$
    SELECT d.status, d.deleted_at IS NOT NULL,
           (SELECT count(*) FROM replicas r WHERE r.deployment_id = d.id AND r.state = 'READY'),
           GREATEST(COALESCE((jsonb_strip_nulls(CASE WHEN jsonb_typeof(d.autoscaling_settings) = 'object'
                                                     THEN d.autoscaling_settings ELSE '{}' END)
                              ->>'concurrency_target')::int, 1), 1),
           (SELECT count(*) FROM async_requests a WHERE a.deployment_id = d.id AND a.status = 'IN_PROGRESS')
    FROM deployments d WHERE d.id = dep
$$;
-- +goose StatementEnd

-- async_start_heads takes up to p_limit of deployment p_dep's queued requests off its queue,
-- in queue order, skipping those past their max_time_in_queue and those another transaction
-- holds, and records their first attempts: PENDING for any gateway when p_gateway is empty,
-- else RUNNING on p_gateway. Whether the deployment has room for them is the caller's to
-- check. Its plan is kept, so, as for async_finish_attempt, sorting is off: the head is read
-- from async_requests_queue in queue order, never by sorting a queue read whole.
-- +goose StatementBegin
CREATE FUNCTION async_start_heads(p_dep text, p_limit integer, p_gateway text)
RETURNS TABLE (request_id text, model_id text, model_input bytea, created_at timestamptz,
               started_at timestamptz)
LANGUAGE plpgsql
SET enable_sort = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH h AS (
        SELECT a.id FROM async_requests a
        WHERE a.deployment_id = p_dep AND a.status = 'QUEUED' AND a.expires_at > now()
        ORDER BY a.priority, a.created_at, a.id LIMIT p_limit FOR UPDATE SKIP LOCKED),
    u AS (
        UPDATE async_requests a SET status = 'IN_PROGRESS', status_at = now(), started_at = now(),
            attempts = GREATEST(a.attempts, 1)
        FROM h WHERE a.id = h.id
        RETURNING a.id, a.model_id, a.model_input, a.created_at, a.started_at),
    i AS (
        INSERT INTO async_attempts (request_id, attempt, deployment_id, state, gateway_id, started_at)
        SELECT u.id, 1, p_dep, CASE WHEN p_gateway = '' THEN 'PENDING' ELSE 'RUNNING' END, p_gateway,
               CASE WHEN p_gateway = '' THEN NULL ELSE now() END
        FROM u
        ON CONFLICT (request_id, attempt) DO NOTHING
        RETURNING async_attempts.request_id)
    SELECT u.id, u.model_id, u.model_input, u.created_at, u.started_at
    FROM u JOIN i ON i.request_id = u.id;
END
$$;
-- +goose StatementEnd

-- async_finish_attempt records how attempt p_attempt of request p_request, RUNNING on gateway
-- p_gateway, ended, in one statement: the gateways' hot path, so one round trip and one
-- commit. The caller classifies the answer (p_succeeded, p_retryable, p_errors: the error to
-- append when it fails the request). A request without a workflow is concluded here: a
-- success, or a failure no retry can mend or on its last attempt, ends it (a webhook to
-- deliver marks it as wanting its workflow); a retry due marks it as wanting its workflow.
-- One with a workflow is left to it, which is told. With p_next, a request that ended passes
-- its slot to its deployment's next queued request, started RUNNING on the same gateway;
-- queue_unserved says the deployment will not serve (deleted, or its status is one of
-- p_unserved) and its queue was left for the caller to end.
-- +goose StatementBegin
CREATE FUNCTION async_finish_attempt(
    p_request text, p_attempt integer, p_gateway text,
    p_status_code integer, p_output bytea, p_content_type text, p_error_code text, p_error text,
    p_succeeded boolean, p_retryable boolean, p_errors jsonb, p_default_max_attempts integer,
    p_keep_output_seconds double precision, p_next boolean, p_unserved text[])
RETURNS TABLE (attempt_recorded boolean, attempt_deployment text, request_ended text,
               wants_workflow boolean, queue_unserved boolean,
               next_request text, next_model text, next_input bytea,
               next_created timestamptz, next_started timestamptz)
LANGUAGE plpgsql
AS $$
DECLARE
    v_status text;
    v_workflow boolean;
    v_retry jsonb;
    v_max integer := p_default_max_attempts;
    v_end text;
    v_hook text;
    v_cap record;
BEGIN
    attempt_recorded := false;
    wants_workflow := false;
    queue_unserved := false;
    UPDATE async_attempts t SET state = 'DONE', status_code = p_status_code, output = p_output,
        content_type = p_content_type, error_code = p_error_code, error = p_error, finished_at = now()
    FROM async_requests r
    WHERE t.request_id = p_request AND t.attempt = p_attempt AND t.state = 'RUNNING'
      AND t.gateway_id = p_gateway AND r.id = t.request_id
    RETURNING t.deployment_id, r.status, r.workflow_started, r.retry_config
    INTO attempt_deployment, v_status, v_workflow, v_retry;
    IF NOT FOUND THEN
        RETURN NEXT; -- not running there: nothing changed
        RETURN;
    END IF;
    attempt_recorded := true;
    IF v_workflow OR v_status <> 'IN_PROGRESS' THEN
        -- The workflow's activity waits for this attempt; nobody else does.
        PERFORM pg_notify('modelplane_async_done', p_request || '/' || p_attempt);
        RETURN NEXT;
        RETURN;
    END IF;
    IF jsonb_typeof(v_retry->'max_attempts') = 'number' AND (v_retry->>'max_attempts')::numeric >= 1 THEN
        v_max := (v_retry->>'max_attempts')::integer;
    END IF;
    IF p_succeeded THEN
        v_end := 'SUCCEEDED';
    ELSIF NOT p_retryable OR p_attempt >= v_max THEN
        v_end := 'FAILED';
    ELSE
        UPDATE async_requests SET workflow_wanted_at = now() WHERE id = p_request AND NOT workflow_started;
        wants_workflow := true;
        RETURN NEXT;
        RETURN;
    END IF;
    -- Ended only if no workflow took the request meanwhile (its row was not locked).
    UPDATE async_requests SET status = v_end, status_at = now(), finished_at = now(),
        output = CASE WHEN p_succeeded THEN COALESCE(p_output, ''::bytea) END,
        output_content_type = CASE WHEN p_succeeded THEN p_content_type ELSE '' END,
        errors = errors || CASE WHEN p_succeeded THEN '[]'::jsonb ELSE p_errors END,
        output_expires_at = CASE WHEN p_succeeded THEN now() + p_keep_output_seconds * interval '1 second' END,
        workflow_wanted_at = CASE WHEN webhook_status = 'PENDING' THEN now() ELSE workflow_wanted_at END
    WHERE id = p_request AND status = 'IN_PROGRESS' AND NOT workflow_started
    RETURNING status, webhook_status INTO request_ended, v_hook;
    IF NOT FOUND THEN
        PERFORM pg_notify('modelplane_async_done', p_request || '/' || p_attempt);
        RETURN NEXT;
        RETURN;
    END IF;
    wants_workflow := v_hook = 'PENDING';
    IF NOT p_next THEN
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT * INTO v_cap FROM async_capacity(attempt_deployment);
    IF v_cap.deployment_deleted OR v_cap.deployment_status = ANY (p_unserved) THEN
        queue_unserved := true;
    ELSIF v_cap.ready_replicas * v_cap.concurrency_target > v_cap.in_progress THEN
        -- The slot this request left needs no lock: it adds none to those running.
        SELECT s.request_id, s.model_id, s.model_input, s.created_at, s.started_at
        INTO next_request, next_model, next_input, next_created, next_started
        FROM async_start_heads(attempt_deployment, 1, p_gateway) s;
    END IF;
    RETURN NEXT;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION async_finish_attempt;
DROP FUNCTION async_start_heads;
DROP FUNCTION async_capacity;
DROP INDEX async_requests_queue;
CREATE INDEX async_requests_queue ON async_requests (deployment_id, priority, created_at)
    WHERE status = 'QUEUED';
