-- +goose Up

-- Where a replica's model server takes predictions (the runtime's or config.yaml's
-- predict_path), recorded with its address when it becomes READY.
ALTER TABLE replicas ADD COLUMN predict_path text NOT NULL DEFAULT '';

-- Gateways keep a routing table in memory and re-read it when told. Announcing every write
-- that changes routing from the database itself means no code path can forget to: models
-- appearing or going, environments and where they point, deployments' status, replicas
-- becoming READY or leaving it, and promotions' traffic split. PostgreSQL delivers the
-- notification at commit and folds identical ones of one transaction into one.
-- +goose StatementBegin
CREATE FUNCTION notify_routes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('modelplane_routes', TG_TABLE_NAME);
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER models_notify_routes AFTER INSERT OR DELETE ON models
    FOR EACH STATEMENT EXECUTE FUNCTION notify_routes();
CREATE TRIGGER environments_notify_routes AFTER INSERT OR UPDATE OR DELETE ON environments
    FOR EACH STATEMENT EXECUTE FUNCTION notify_routes();
CREATE TRIGGER deployments_notify_routes
    AFTER INSERT OR DELETE OR UPDATE OF status, deleted_at, is_development ON deployments
    FOR EACH STATEMENT EXECUTE FUNCTION notify_routes();
CREATE TRIGGER replicas_notify_routes AFTER INSERT OR DELETE OR UPDATE OF state, address, predict_path ON replicas
    FOR EACH STATEMENT EXECUTE FUNCTION notify_routes();
CREATE TRIGGER promotions_notify_routes
    AFTER INSERT OR DELETE OR UPDATE OF status, percent_traffic_to_new_version, candidate_deployment_id ON promotions
    FOR EACH STATEMENT EXECUTE FUNCTION notify_routes();

-- +goose Down
DROP TRIGGER promotions_notify_routes ON promotions;
DROP TRIGGER replicas_notify_routes ON replicas;
DROP TRIGGER deployments_notify_routes ON deployments;
DROP TRIGGER environments_notify_routes ON environments;
DROP TRIGGER models_notify_routes ON models;
DROP FUNCTION notify_routes();
ALTER TABLE replicas DROP COLUMN predict_path;
