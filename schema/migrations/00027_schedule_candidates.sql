-- +goose Up

-- The autoscaler applies an environment's autoscaling schedules to the deployment it serves
-- (docs/API.md, "Autoscaling schedules"). Each tick reads the environments with an enabled
-- schedule, few, from an index of their own (store's scheduledDeploymentsSQL spells the
-- predicate the same), and for each deployment they serve how long its newest replicas took
-- from creation to READY: the lead time with which a schedule is applied before its window
-- opens.
CREATE INDEX environments_scheduled ON environments (current_deployment_id)
    WHERE autoscaling_schedules @? '$.schedules[*] ? (@.enabled == true)';
CREATE INDEX replicas_cold_starts ON replicas (deployment_id, created_at DESC) WHERE ready_at IS NOT NULL;

-- +goose Down
DROP INDEX replicas_cold_starts, environments_scheduled;
