-- +goose Up

-- Autoscaling settings have one truth: the deployment's row. Until now the settings of the
-- environment that serves a deployment overrode the deployment's own, field by field
-- (production first when several served it). Those effective settings become the
-- deployment's, so the autoscaler does exactly what it did before; from here on an
-- environment shows and changes the settings of the deployment it serves, and its own
-- column only holds what a deployment promoted into it gets while it serves none.
UPDATE deployments d
SET autoscaling_settings = jsonb_strip_nulls(CASE WHEN jsonb_typeof(d.autoscaling_settings) = 'object'
                                                  THEN d.autoscaling_settings ELSE '{}' END)
                        || jsonb_strip_nulls(CASE WHEN jsonb_typeof(e.autoscaling_settings) = 'object'
                                                  THEN e.autoscaling_settings ELSE '{}' END),
    updated_at = now()
FROM (
    SELECT DISTINCT ON (current_deployment_id) current_deployment_id, autoscaling_settings
    FROM environments WHERE current_deployment_id IS NOT NULL
    ORDER BY current_deployment_id, name <> 'production', name
) e
WHERE e.current_deployment_id = d.id AND d.deleted_at IS NULL;

-- Request backpressure (Baseten's request_backpressure_settings, {"policy": null |
-- "QUEUE_ON_FULL" | "REJECT_ON_FULL"}): a deployment's, acted on by the gateways, and an
-- environment's for the deployment first promoted into it, like autoscaling settings.
ALTER TABLE deployments ADD COLUMN request_backpressure_settings jsonb NOT NULL DEFAULT '{}';
ALTER TABLE environments ADD COLUMN request_backpressure_settings jsonb NOT NULL DEFAULT '{}';

-- Gateways read a deployment's concurrency target and backpressure policy, so changing
-- either is a routing change.
DROP TRIGGER deployments_notify_routes ON deployments;
CREATE TRIGGER deployments_notify_routes
    AFTER INSERT OR DELETE OR UPDATE OF status, deleted_at, is_development, autoscaling_settings,
        request_backpressure_settings ON deployments
    FOR EACH STATEMENT EXECUTE FUNCTION notify_routes();

-- A presigned download of a deployment's model package (GET .../download answers its URL):
-- only the token's SHA-256 is kept, and it expires.
CREATE TABLE download_tokens (
    token_sha256  text PRIMARY KEY,
    workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    archive_id    text NOT NULL,
    filename      text NOT NULL,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX download_tokens_expiry ON download_tokens (expires_at);

-- +goose Down
DROP TABLE download_tokens;
DROP TRIGGER deployments_notify_routes ON deployments;
CREATE TRIGGER deployments_notify_routes
    AFTER INSERT OR DELETE OR UPDATE OF status, deleted_at, is_development ON deployments
    FOR EACH STATEMENT EXECUTE FUNCTION notify_routes();
ALTER TABLE environments DROP COLUMN request_backpressure_settings;
ALTER TABLE deployments DROP COLUMN request_backpressure_settings;
