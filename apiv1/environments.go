package apiv1

import (
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
)

// EnvironmentV1 is API.md's environment object.
type EnvironmentV1 struct {
	Name                string        `json:"name"`
	CreatedAt           time.Time     `json:"created_at"`
	ModelID             string        `json:"model_id"`
	CurrentDeployment   *DeploymentV1 `json:"current_deployment"`
	CandidateDeployment *DeploymentV1 `json:"candidate_deployment"`
	InProgressPromotion *PromotionV1  `json:"in_progress_promotion"`
	// AutoscalingSettings and RequestBackpressureSettings are those of the deployment the
	// environment serves; while it serves none, those a deployment promoted into it gets.
	AutoscalingSettings         settings.AutoscalingSettings         `json:"autoscaling_settings"`
	PromotionSettings           settings.PromotionSettings           `json:"promotion_settings"`
	RequestBackpressureSettings settings.RequestBackpressureSettings `json:"request_backpressure_settings"`
	// InstanceType is what the deployment the environment serves runs on, named as GET
	// /v1/instance_types names it (docs/API.md).
	InstanceType InstanceTypeV1 `json:"instance_type"`
	// AutoscalingSchedules are the environment's schedules and the settings they leave its
	// deployment with now.
	AutoscalingSchedules *EnvironmentAutoscalingSchedulesV1 `json:"autoscaling_schedules"`
	// ShadowSettings (modelplane's own) name the deployment gateways copy a share of the
	// environment's requests to; deployment_id is null when there is none.
	ShadowSettings settings.ShadowSettings `json:"shadow_settings"`
}

// ShadowStatsV1 answers GET /v1/models/{model_id}/environments/{env}/shadow (modelplane's
// own): the environment's shadow deployment and what its copies came to since the shadow
// settings last changed, summed over every gateway. Copied counts the copies sent, each of
// which ends equal, different or in error; dropped counts the requests chosen for a copy that
// were not sent. The p99s are the upper bounds of the latency buckets holding the 99th
// percentiles of the compared pairs, 0 while none was compared.
type ShadowStatsV1 struct {
	DeploymentID *string `json:"deployment_id"`
	Percent      int     `json:"percent"`
	Copied       int64   `json:"copied"`
	Equal        int64   `json:"equal"`
	Different    int64   `json:"different"`
	Errors       int64   `json:"errors"`
	Dropped      int64   `json:"dropped"`
	PrimaryP99Ms float64 `json:"primary_p99_ms"`
	ShadowP99Ms  float64 `json:"shadow_p99_ms"`
}

// EnvironmentAutoscalingSchedulesV1 is an environment's autoscaling schedules and the state
// they leave the deployment it serves in.
type EnvironmentAutoscalingSchedulesV1 struct {
	// Timezone is null while there are no schedules.
	Timezone  *string                        `json:"timezone"`
	Schedules []settings.AutoscalingSchedule `json:"schedules"`
	// AppliedState is null while the environment serves no deployment.
	AppliedState *AutoscalingScheduleStateV1 `json:"applied_state"`
}

// AutoscalingScheduleStateV1 is the schedule in force now on the deployment an environment
// serves, null when none is (its own settings are), and the settings the autoscaler applies
// to it: its own with the schedule's in their place (docs/API.md, "Autoscaling schedules").
type AutoscalingScheduleStateV1 struct {
	ScheduleID          *string                      `json:"schedule_id"`
	AutoscalingSettings settings.AutoscalingSettings `json:"autoscaling_settings"`
}

// UpdateEnvironmentV1 answers PATCH /v1/models/{model_id}/environments/{env}: the
// environment after the update, as GET answers it, and the spec's legacy status: UNCHANGED
// when the request changed nothing, ACCEPTED when it changed something (QUEUED is never
// answered).
type UpdateEnvironmentV1 struct {
	Environment EnvironmentV1        `json:"environment"`
	Status      SettingsUpdateStatus `json:"status"`
	Message     string               `json:"message"`
}

// PromotionV1 is an environment's promotion in flight.
type PromotionV1 struct {
	Status                     modelplane.PromotionStatus `json:"status"`
	PercentTrafficToNewVersion int                        `json:"percent_traffic_to_new_version"`
	ErrorMessage               string                     `json:"error_message"`
}

// EnvironmentListV1 answers GET /v1/models/{model_id}/environments.
type EnvironmentListV1 struct {
	Environments []EnvironmentV1 `json:"environments"`
}

// CreateEnvironmentRequest is the body of POST /v1/models/{model_id}/environments. Settings
// left out, whole or field by field, take the defaults.
type CreateEnvironmentRequest struct {
	// Name is 1-63 lowercase letters, digits, - or _; production is refused.
	Name                        string                                    `json:"name"`
	AutoscalingSettings         *UpdateAutoscalingSettingsRequest         `json:"autoscaling_settings,omitempty"`
	PromotionSettings           *UpdatePromotionSettingsRequest           `json:"promotion_settings,omitempty"`
	RequestBackpressureSettings *UpdateRequestBackpressureSettingsRequest `json:"request_backpressure_settings,omitempty"`
}

// UpdateEnvironmentRequest is the body of PATCH /v1/models/{model_id}/environments/{env}:
// fields left out keep their values. Autoscaling and request backpressure settings change
// the deployment the environment serves (its own while it serves none).
type UpdateEnvironmentRequest struct {
	AutoscalingSettings         *UpdateAutoscalingSettingsRequest         `json:"autoscaling_settings,omitempty"`
	PromotionSettings           *UpdatePromotionSettingsRequest           `json:"promotion_settings,omitempty"`
	RequestBackpressureSettings *UpdateRequestBackpressureSettingsRequest `json:"request_backpressure_settings,omitempty"`
	// AutoscalingScheduleSettings change the environment's autoscaling schedules, which the
	// autoscaler applies to the deployment it serves.
	AutoscalingScheduleSettings *UpdateAutoscalingScheduleSettingsRequest `json:"autoscaling_schedule_settings,omitempty"`
	// ShadowSettings (modelplane's own) change the environment's shadow.
	ShadowSettings *UpdateShadowSettingsRequest `json:"shadow_settings,omitempty"`
}

// UpdateShadowSettingsRequest is the shadow_settings of an environment's update: the fields
// to change, nil ones keep their values. The raw body's deployment_id null stops shadowing.
type UpdateShadowSettingsRequest struct {
	DeploymentID     *string                 `json:"deployment_id,omitempty"`
	Percent          *int                    `json:"percent,omitempty"`
	Compare          *settings.ShadowCompare `json:"compare,omitempty"`
	NumericTolerance *float64                `json:"numeric_tolerance,omitempty"`
}

// UpdateAutoscalingScheduleSettingsRequest changes an environment's autoscaling schedules:
// DeleteSchedules are removed, each of Schedules replaces the schedule with its ID or, with
// none, is added; schedules not named are unchanged. Timezone nil keeps the timezone (the
// raw body's null clears it, which only a collection left without schedules may).
type UpdateAutoscalingScheduleSettingsRequest struct {
	Timezone        *string                     `json:"timezone,omitempty"`
	Schedules       []AutoscalingScheduleUpsert `json:"schedules,omitempty"`
	DeleteSchedules []string                    `json:"delete_schedules,omitempty"`
}

// AutoscalingScheduleUpsert is a complete schedule to create (ID nil) or replace.
// StartHour and EndHour are required for DAILY; nil on HOURLY runs every hour.
type AutoscalingScheduleUpsert struct {
	ID                  *string                              `json:"id,omitempty"`
	Name                string                               `json:"name"`
	Enabled             bool                                 `json:"enabled"`
	Cadence             settings.ScheduleCadence             `json:"cadence"`
	Weekdays            []settings.Weekday                   `json:"weekdays"`
	StartHour           *int                                 `json:"start_hour,omitempty"`
	StartMinute         int                                  `json:"start_minute"`
	EndHour             *int                                 `json:"end_hour,omitempty"`
	EndMinute           int                                  `json:"end_minute"`
	AutoscalingSettings settings.ScheduleAutoscalingSettings `json:"autoscaling_settings"`
}

// UpdatePromotionSettingsRequest is the promotion_settings of an environment's create or
// update: the fields to change, nil ones keep their values.
type UpdatePromotionSettingsRequest struct {
	RedeployOnPromotion *bool `json:"redeploy_on_promotion,omitempty"`
	// RollingDeploy and RollingDeployConfig are kept and answered back but not yet acted on.
	RollingDeploy            *bool                             `json:"rolling_deploy,omitempty"`
	RollingDeployConfig      *UpdateRollingDeployConfigRequest `json:"rolling_deploy_config,omitempty"`
	PromotionCleanupStrategy *modelplane.CleanupStrategy       `json:"promotion_cleanup_strategy,omitempty"`
	RampUpWhilePromoting     *bool                             `json:"ramp_up_while_promoting,omitempty"`
	RampUpDurationSeconds    *int                              `json:"ramp_up_duration_seconds,omitempty"`
	CanaryAnalysis           *UpdateCanaryAnalysisRequest      `json:"canary_analysis,omitempty"`
	// ShadowMinAgreement and ShadowMinCopies (modelplane's own) gate the promotion of the
	// environment's shadow deployment; the raw body's null turns the gate off.
	ShadowMinAgreement *float64 `json:"shadow_min_agreement,omitempty"`
	ShadowMinCopies    *int     `json:"shadow_min_copies,omitempty"`
}

// UpdateRollingDeployConfigRequest is the rolling_deploy_config of a promotion settings
// update: the fields to change, nil ones keep their values.
type UpdateRollingDeployConfigRequest struct {
	RollingDeployStrategy    *settings.RollingDeployStrategy `json:"rolling_deploy_strategy,omitempty"`
	MaxSurgePercent          *int                            `json:"max_surge_percent,omitempty"`
	MaxUnavailablePercent    *int                            `json:"max_unavailable_percent,omitempty"`
	StabilizationTimeSeconds *int                            `json:"stabilization_time_seconds,omitempty"`
	ReplicaOverheadPercent   *int                            `json:"replica_overhead_percent,omitempty"`
}

// UpdateCanaryAnalysisRequest is the canary_analysis of a promotion settings update: the
// fields to change, nil ones keep their values.
type UpdateCanaryAnalysisRequest struct {
	Enabled              *bool    `json:"enabled,omitempty"`
	MaxErrorRateIncrease *float64 `json:"max_error_rate_increase,omitempty"`
	MaxP99LatencyRatio   *float64 `json:"max_p99_latency_ratio,omitempty"`
	MinRequestsPerStage  *int     `json:"min_requests_per_stage,omitempty"`
}

// DeletedEnvironmentV1 answers DELETE /v1/models/{model_id}/environments/{env}.
type DeletedEnvironmentV1 struct {
	Name    string `json:"name"`
	ModelID string `json:"model_id"`
	Deleted bool   `json:"deleted"`
}

// PromoteRequest is the body of POST .../environments/{env}/promote.
type PromoteRequest struct {
	// DeploymentID is the deployment to promote: an ID, or development or production.
	DeploymentID string `json:"deployment_id"`
	// ScaleDownPreviousDeployment scales down the deployment the environment served before;
	// the API takes true when the field is left out.
	ScaleDownPreviousDeployment bool `json:"scale_down_previous_deployment"`
	// PreserveEnvInstanceType is recorded in the audit log but not acted on: a deployment
	// always runs on what its own config.yaml asks for. Nil is the spec's default, true.
	PreserveEnvInstanceType *bool `json:"preserve_env_instance_type,omitempty"`
}

// CancelPromotionV1 answers POST .../environments/{env}/cancel_promotion: CANCELED when
// traffic went back at once, RAMPING_DOWN while it goes back stage by stage.
type CancelPromotionV1 struct {
	Status  modelplane.PromotionStatus `json:"status"`
	Message string                     `json:"message"`
}
