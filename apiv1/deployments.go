package apiv1

import (
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
)

// DeploymentV1 is API.md's deployment object.
type DeploymentV1 struct {
	ID                  string                       `json:"id"`
	CreatedAt           time.Time                    `json:"created_at"`
	Name                string                       `json:"name"`
	ModelID             string                       `json:"model_id"`
	IsProduction        bool                         `json:"is_production"`
	IsDevelopment       bool                         `json:"is_development"`
	Status              modelplane.DeploymentStatus  `json:"status"`
	ActiveReplicaCount  int                          `json:"active_replica_count"`
	AutoscalingSettings settings.AutoscalingSettings `json:"autoscaling_settings"`
	InstanceTypeName    string                       `json:"instance_type_name"`
	Environment         *string                      `json:"environment"`
	Labels              map[string]any               `json:"labels"`
	// RequestBackpressureSettings say what the gateway does when every replica is at its
	// concurrency target.
	RequestBackpressureSettings settings.RequestBackpressureSettings `json:"request_backpressure_settings"`
	// Region is where the deployment runs, null when unknown; modelplane's nodes do not
	// report a region, so it is null (docs/API.md).
	Region *RegionV1 `json:"region"`
	// StatusReason says why a failed or unhealthy deployment is so (a missing secret, no
	// node with room, the deploy timeout...); null otherwise. modelplane's field.
	StatusReason *string `json:"status_reason"`
}

// RegionV1 is a region deployments can be placed in (Baseten's RegionV1).
type RegionV1 struct {
	Slug        string `json:"slug"`
	DisplayName string `json:"display_name"`
}

// DeploymentListV1 answers GET /v1/models/{model_id}/deployments.
type DeploymentListV1 struct {
	Deployments []DeploymentV1 `json:"deployments"`
}

// RenameDeploymentRequest is the body of PATCH /v1/models/{model_id}/deployments/{id}.
type RenameDeploymentRequest struct {
	// Name is 1-255 of [A-Za-z0-9._-], unique in the model.
	Name string `json:"name"`
}

// DeletedDeploymentV1 answers DELETE /v1/models/{model_id}/deployments/{id}.
type DeletedDeploymentV1 struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
	ModelID string `json:"model_id"`
}

// SuccessV1 answers the routes that only say whether they did it: activate and deactivate
// (of a deployment or an environment), and the promotion controls pause, resume,
// force_cancel and force_roll_forward, whose Message says why not, or what was done.
type SuccessV1 struct {
	Success bool   `json:"success"`
	Message string `json:"message,omitempty"`
}

// PromoteDeploymentRequest is the body of POST .../deployments/{id}/promote, a promotion to
// production.
type PromoteDeploymentRequest struct {
	// ScaleDownPreviousProduction scales down the deployment that served production before;
	// the API takes true when the field is left out.
	ScaleDownPreviousProduction bool `json:"scale_down_previous_production"`
	// PreserveEnvInstanceType is recorded in the audit log but not acted on (see
	// PromoteRequest).
	PreserveEnvInstanceType *bool `json:"preserve_env_instance_type,omitempty"`
}

// UpdateAutoscalingSettingsRequest is the body of PATCH .../deployments/{id}/
// autoscaling_settings, and the autoscaling_settings of an environment's create or update:
// the fields to change, nil ones keep their values.
type UpdateAutoscalingSettingsRequest struct {
	MinReplica                  *int `json:"min_replica,omitempty"`
	MaxReplica                  *int `json:"max_replica,omitempty"`
	AutoscalingWindow           *int `json:"autoscaling_window,omitempty"`            // seconds
	ScaleDownDelay              *int `json:"scale_down_delay,omitempty"`              // seconds
	ConcurrencyTarget           *int `json:"concurrency_target,omitempty"`            // requests per replica
	TargetUtilizationPercentage *int `json:"target_utilization_percentage,omitempty"` // of concurrency_target
	MaxScaleDownRate            *int `json:"max_scale_down_rate,omitempty"`           // percent of replicas per step
	// TargetInFlightTokens is kept and answered back but not yet acted on.
	TargetInFlightTokens *int `json:"target_in_flight_tokens,omitempty"`
}

// SettingsUpdateStatus says whether a settings update changed anything.
type SettingsUpdateStatus string

// The answers to an autoscaling settings update, and the status of an environment's update.
const (
	// SettingsAccepted: the settings changed; the autoscaler applies them on its next tick.
	SettingsAccepted SettingsUpdateStatus = "ACCEPTED"
	// SettingsUnchanged: the settings already had these values.
	SettingsUnchanged SettingsUpdateStatus = "UNCHANGED"
)

// UpdateAutoscalingSettingsV1 answers PATCH .../deployments/{id}/autoscaling_settings.
type UpdateAutoscalingSettingsV1 struct {
	Status  SettingsUpdateStatus `json:"status"`
	Message string               `json:"message"`
}

// UpdateRequestBackpressureSettingsRequest is the body of PATCH .../deployments/{id}/
// request_backpressure_settings, and the request_backpressure_settings of an environment's
// create or update. A nil Policy is sent as null, which clears the policy; a body without
// the field keeps it.
type UpdateRequestBackpressureSettingsRequest struct {
	Policy *settings.BackpressurePolicy `json:"policy"`
}

// RetryDeploymentV1 answers POST .../deployments/{id}/retry. Retried is false, with the
// reason, for a deployment that has not failed.
type RetryDeploymentV1 struct {
	Retried    bool         `json:"retried"`
	Reason     *string      `json:"reason"`
	Deployment DeploymentV1 `json:"deployment"`
}

// TerminateReplicaV1 answers DELETE .../deployments/{id}/replicas/{replica_id}.
type TerminateReplicaV1 struct {
	Success bool `json:"success"`
}

// BuildLogsV1 answers GET .../deployments/{id}/build_logs (modelplane's own route): the
// deployment's status and the output of its build, oldest line first (the last 256 KiB of it).
type BuildLogsV1 struct {
	DeploymentID string                      `json:"deployment_id"`
	Status       modelplane.DeploymentStatus `json:"status"`
	StatusReason string                      `json:"status_reason"`
	Lines        []string                    `json:"lines"`
}

// DeploymentConfigV1 answers GET .../deployments/{id}/config: the parsed config with the
// defaults applied, and the config.yaml text, each present as ?output_format= asks (both by
// default).
type DeploymentConfigV1 struct {
	Config    map[string]any `json:"config"`
	RawConfig *string        `json:"raw_config"`
}

// The output formats of GET .../deployments/{id}/config.
const (
	ConfigFormatRaw    = "raw"
	ConfigFormatParsed = "parsed"
	ConfigFormatBoth   = "both"
)

// DownloadDeploymentV1 answers GET .../deployments/{id}/download: a URL that serves the
// deployment's model package (tar.gz) without an API key until it expires.
type DownloadDeploymentV1 struct {
	DownloadURL string `json:"download_url"`
}
