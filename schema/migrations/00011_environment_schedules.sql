-- +goose Up

-- An environment's autoscaling schedules (Baseten's autoscaling_schedules: a shared IANA
-- timezone and recurring windows with autoscaling overrides), as PATCH .../environments/{env}
-- sets them with autoscaling_schedule_settings. They are kept and answered back; nothing
-- applies them yet. The spec's other kept-but-not-acted-on fields (target_in_flight_tokens,
-- rolling_deploy, rolling_deploy_config) live in the existing settings JSON columns.
ALTER TABLE environments ADD COLUMN autoscaling_schedules jsonb NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE environments DROP COLUMN autoscaling_schedules;
