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
}

// UpdatePromotionSettingsRequest is the promotion_settings of an environment's create or
// update: the fields to change, nil ones keep their values.
type UpdatePromotionSettingsRequest struct {
	RedeployOnPromotion      *bool                        `json:"redeploy_on_promotion,omitempty"`
	PromotionCleanupStrategy *modelplane.CleanupStrategy  `json:"promotion_cleanup_strategy,omitempty"`
	RampUpWhilePromoting     *bool                        `json:"ramp_up_while_promoting,omitempty"`
	RampUpDurationSeconds    *int                         `json:"ramp_up_duration_seconds,omitempty"`
	CanaryAnalysis           *UpdateCanaryAnalysisRequest `json:"canary_analysis,omitempty"`
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
	// PreserveEnvInstanceType is accepted as in PromoteDeploymentRequest.
	PreserveEnvInstanceType *bool `json:"preserve_env_instance_type,omitempty"`
}

// CancelPromotionV1 answers POST .../environments/{env}/cancel_promotion: CANCELED when
// traffic went back at once, RAMPING_DOWN while it goes back stage by stage.
type CancelPromotionV1 struct {
	Status  modelplane.PromotionStatus `json:"status"`
	Message string                     `json:"message"`
}
