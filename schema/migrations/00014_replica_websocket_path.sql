-- +goose Up

-- Where a replica's model server takes websocket connections: /websocket, or a custom
-- server's predict_endpoint when its transport is websocket (Baseten's convention),
-- recorded with its address and predict_path when it becomes READY. Empty is /websocket.
ALTER TABLE replicas ADD COLUMN websocket_path text NOT NULL DEFAULT '';

-- Gateways re-read their routes when the path changes, as they do for predict_path.
DROP TRIGGER replicas_notify_routes ON replicas;
CREATE TRIGGER replicas_notify_routes
    AFTER INSERT OR DELETE OR UPDATE OF state, address, predict_path, websocket_path ON replicas
    FOR EACH STATEMENT EXECUTE FUNCTION notify_routes();

-- +goose Down
DROP TRIGGER replicas_notify_routes ON replicas;
CREATE TRIGGER replicas_notify_routes AFTER INSERT OR DELETE OR UPDATE OF state, address, predict_path ON replicas
    FOR EACH STATEMENT EXECUTE FUNCTION notify_routes();
ALTER TABLE replicas DROP COLUMN websocket_path;
