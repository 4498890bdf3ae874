-- +goose Up

-- The autoscaler's tick reads the deployments it may scale from indexes of their own, so that
-- those idle at zero cost it nothing: the ones not at zero, the ones at zero with a floor
-- above zero in their stored settings (or a min_replica it cannot read), and the live awake
-- leases. The floor's predicate is store's floorAtZeroSQL, spelt the same, and holds where
-- the defaults' min_replica is 0.
CREATE INDEX deployments_autoscaled_awake ON deployments (id)
    WHERE deleted_at IS NULL
      AND status IN ('ACTIVE', 'WAKING_UP', 'LOADING_MODEL', 'DEPLOYING', 'UNHEALTHY', 'UPDATING');
CREATE INDEX deployments_floor_at_zero ON deployments (id)
    WHERE deleted_at IS NULL AND status = 'SCALED_TO_ZERO'
      AND CASE COALESCE(jsonb_typeof(CASE WHEN jsonb_typeof(autoscaling_settings) = 'object'
                                          THEN autoscaling_settings->'min_replica' END), 'null')
          WHEN 'null' THEN false
          WHEN 'number' THEN (autoscaling_settings->>'min_replica')::numeric > 0
          ELSE true END;
CREATE INDEX awake_leases_until ON awake_leases (until);

-- +goose Down
DROP INDEX awake_leases_until, deployments_floor_at_zero, deployments_autoscaled_awake;
