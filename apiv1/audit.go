package apiv1

import (
	"encoding/json"
	"time"
)

// AuditLogEventType is what an audit entry records (Baseten's AuditLogEventTypeV1).
type AuditLogEventType string

// The event types modelplane records, each from one or more of its audit actions.
const (
	AuditModelDeployed                 AuditLogEventType = "MODEL_DEPLOYED"
	AuditDeploymentActivated           AuditLogEventType = "MODEL_DEPLOYMENT_ACTIVATED"
	AuditDeploymentDeactivated         AuditLogEventType = "MODEL_DEPLOYMENT_DEACTIVATED"
	AuditDeploymentRetried             AuditLogEventType = "MODEL_DEPLOYMENT_RETRIED"
	AuditDeploymentPromoted            AuditLogEventType = "MODEL_DEPLOYMENT_PROMOTED"
	AuditDeploymentAutoscalingSettings AuditLogEventType = "MODEL_DEPLOYMENT_AUTOSCALING_SETTINGS_CHANGED"
	AuditDeploymentBackpressure        AuditLogEventType = "MODEL_DEPLOYMENT_REQUEST_BACKPRESSURE_SETTINGS_CHANGED"
	AuditDeploymentDeleted             AuditLogEventType = "MODEL_DEPLOYMENT_DELETED"
	AuditModelDeleted                  AuditLogEventType = "MODEL_DELETED"
	AuditAPIKeyCreated                 AuditLogEventType = "API_KEY_CREATED"
	AuditAPIKeyDeleted                 AuditLogEventType = "API_KEY_DELETED"
	AuditEnvironmentCreated            AuditLogEventType = "ENVIRONMENT_CREATED"
	AuditEnvironmentUpdated            AuditLogEventType = "ENVIRONMENT_UPDATED"
	AuditEnvironmentDeleted            AuditLogEventType = "ENVIRONMENT_DELETED"
	AuditPromotionControl              AuditLogEventType = "MODEL_PROMOTION_CONTROL_ACTION"
	AuditReplicaTerminated             AuditLogEventType = "REPLICA_TERMINATED"
	AuditSecretUpdated                 AuditLogEventType = "SECRET_UPDATED"
	AuditSecretDeleted                 AuditLogEventType = "SECRET_DELETED"
)

// AuditLogEventTypeGroup is a coarse group of event types, for the event_type_groups filter
// (Baseten's AuditLogEventTypeGroupV1).
type AuditLogEventTypeGroup string

// The event type groups of Baseten's spec.
const (
	AuditGroupDeployed                 AuditLogEventTypeGroup = "DEPLOYED"
	AuditGroupPromoted                 AuditLogEventTypeGroup = "PROMOTED"
	AuditGroupActivatedDeactivated     AuditLogEventTypeGroup = "ACTIVATED_DEACTIVATED"
	AuditGroupAutoscalingSettings      AuditLogEventTypeGroup = "AUTOSCALING_SETTINGS"
	AuditGroupBackpressureSettings     AuditLogEventTypeGroup = "REQUEST_BACKPRESSURE_SETTINGS"
	AuditGroupInstanceTypeChanged      AuditLogEventTypeGroup = "INSTANCE_TYPE_CHANGED"
	AuditGroupEnvironmentSettings      AuditLogEventTypeGroup = "ENVIRONMENT_SETTINGS"
	AuditGroupReplicaTerminated        AuditLogEventTypeGroup = "REPLICA_TERMINATED"
	AuditGroupDeleted                  AuditLogEventTypeGroup = "DELETED"
	AuditGroupSecrets                  AuditLogEventTypeGroup = "SECRETS"
	AuditGroupAPIKeys                  AuditLogEventTypeGroup = "API_KEYS"
	AuditGroupGateway                  AuditLogEventTypeGroup = "GATEWAY"
	AuditGroupWebhookSigningSecrets    AuditLogEventTypeGroup = "WEBHOOK_SIGNING_SECRETS"
	AuditGroupUserManagement           AuditLogEventTypeGroup = "USER_MANAGEMENT"
	AuditGroupDirectoryGroupManagement AuditLogEventTypeGroup = "DIRECTORY_GROUP_MANAGEMENT"
	AuditGroupSSH                      AuditLogEventTypeGroup = "SSH"
)

// AuditLogEventTypeGroups are every group of the spec; groups of things modelplane does not
// have (chains, gateways, users) match no entry.
func AuditLogEventTypeGroups() []AuditLogEventTypeGroup {
	return []AuditLogEventTypeGroup{AuditGroupDeployed, AuditGroupPromoted, AuditGroupActivatedDeactivated,
		AuditGroupAutoscalingSettings, AuditGroupBackpressureSettings, AuditGroupInstanceTypeChanged,
		AuditGroupEnvironmentSettings, AuditGroupReplicaTerminated, AuditGroupDeleted, AuditGroupSecrets,
		AuditGroupAPIKeys, AuditGroupGateway, AuditGroupWebhookSigningSecrets, AuditGroupUserManagement,
		AuditGroupDirectoryGroupManagement, AuditGroupSSH}
}

// AuditLogSortDirection orders an audit listing by time (Baseten's AuditLogSortDirectionV1).
type AuditLogSortDirection string

// The directions of Baseten's spec; DESC (newest first) is the default.
const (
	AuditNewestFirst AuditLogSortDirection = "DESC"
	AuditOldestFirst AuditLogSortDirection = "ASC"
)

// AuditLogSource is the surface an action came from (Baseten's AuditLogSourceV1).
type AuditLogSource string

// The sources of Baseten's spec. Actions taken through modelplane's API are API.
const (
	AuditSourceUI     AuditLogSource = "UI"
	AuditSourceAPI    AuditLogSource = "API"
	AuditSourceMCP    AuditLogSource = "MCP"
	AuditSourceSystem AuditLogSource = "SYSTEM"
	AuditSourceOther  AuditLogSource = "OTHER"
)

// AuditLogSources are every source of the spec.
func AuditLogSources() []AuditLogSource {
	return []AuditLogSource{AuditSourceUI, AuditSourceAPI, AuditSourceMCP, AuditSourceSystem, AuditSourceOther}
}

// AuditLogActorType is who acted (Baseten's AuditLogActorTypeV1); in modelplane, an API key.
type AuditLogActorType string

// The actor types modelplane records.
const (
	AuditActorAPIKey AuditLogActorType = "API_KEY"
)

// AuditLogActorV1 is who did an audited action (Baseten's AuditLogActorV1).
type AuditLogActorV1 struct {
	Type  AuditLogActorType `json:"type"`
	Email *string           `json:"email"`
	// APIKeyPrefix is the acting key's public ID; APIKeyName its name, when it has one.
	APIKeyPrefix *string `json:"api_key_prefix"`
	APIKeyName   *string `json:"api_key_name"`
}

// AuditLogEntryV1 is one audit entry (Baseten's AuditLogEntryV1). EventData is one of the
// AuditEvent*V1 objects below, chosen by EventType.
type AuditLogEntryV1 struct {
	ID              string            `json:"id"`
	Created         time.Time         `json:"created"`
	EventType       AuditLogEventType `json:"event_type"`
	EventData       json.RawMessage   `json:"event_data"`
	Source          *AuditLogSource   `json:"source"`
	Actor           AuditLogActorV1   `json:"actor"`
	ClientName      *string           `json:"client_name"`
	ClientVersion   *string           `json:"client_version"`
	ClientSessionID *string           `json:"client_session_id"`
}

// PaginationV1 says whether a listing goes on and how to ask for the rest (Baseten's
// PaginationResponseV1).
type PaginationV1 struct {
	HasMore bool `json:"has_more"`
	// Cursor is passed as ?cursor= to get the next page; null on the last one.
	Cursor *string `json:"cursor"`
}

// AuditLogsV1 answers GET /v1/audit_logs (Baseten's ListAuditLogsResponseV1).
type AuditLogsV1 struct {
	Items      []AuditLogEntryV1 `json:"items"`
	Pagination PaginationV1      `json:"pagination"`
}

// AuditModelV1 names a model in an event.
type AuditModelV1 struct {
	ModelID   string `json:"model_id"`
	ModelName string `json:"model_name"`
}

// AuditDeploymentV1 names a deployment in an event.
type AuditDeploymentV1 struct {
	AuditModelV1
	DeploymentID   string `json:"deployment_id"`
	DeploymentName string `json:"deployment_name"`
}

// AuditEventModelDeployedV1 is the data of MODEL_DEPLOYED.
type AuditEventModelDeployedV1 struct {
	EventType AuditLogEventType `json:"event_type"`
	AuditDeploymentV1
	ScalePreviousToZero bool `json:"scale_previous_to_zero"`
	Trusted             bool `json:"trusted"`
	// Publish is false for a development deployment.
	Publish         bool    `json:"publish"`
	EnvironmentName *string `json:"environment_name"`
}

// AuditEventDeploymentV1 is the data of MODEL_DEPLOYMENT_ACTIVATED, _DEACTIVATED and
// _DELETED.
type AuditEventDeploymentV1 struct {
	EventType AuditLogEventType `json:"event_type"`
	AuditDeploymentV1
}

// AuditEventDeploymentRetriedV1 is the data of MODEL_DEPLOYMENT_RETRIED.
type AuditEventDeploymentRetriedV1 struct {
	EventType AuditLogEventType `json:"event_type"`
	AuditDeploymentV1
	// Retried is always true: a deployment that had not failed is not retried, and nothing is
	// recorded.
	Retried bool `json:"retried"`
}

// AuditEventBackpressureChangedV1 is the data of
// MODEL_DEPLOYMENT_REQUEST_BACKPRESSURE_SETTINGS_CHANGED: the policy after the change and the
// one before it, each null for none (PreviousPolicy also where the event did not record it).
type AuditEventBackpressureChangedV1 struct {
	EventType AuditLogEventType `json:"event_type"`
	AuditDeploymentV1
	Policy         *string `json:"policy"`
	PreviousPolicy *string `json:"previous_policy"`
}

// AuditEventReplicaTerminatedV1 is the data of REPLICA_TERMINATED.
type AuditEventReplicaTerminatedV1 struct {
	EventType AuditLogEventType `json:"event_type"`
	AuditDeploymentV1
	ReplicaID string `json:"replica_id"`
}

// AuditEventModelDeletedV1 is the data of MODEL_DELETED.
type AuditEventModelDeletedV1 struct {
	EventType AuditLogEventType `json:"event_type"`
	AuditModelV1
}

// AuditEventPromotedV1 is the data of MODEL_DEPLOYMENT_PROMOTED.
type AuditEventPromotedV1 struct {
	EventType AuditLogEventType `json:"event_type"`
	AuditDeploymentV1
	EnvironmentName *string `json:"environment_name"`
	EnvironmentID   *string `json:"environment_id"`
}

// AuditEventSecretV1 is the data of SECRET_UPDATED and SECRET_DELETED (Baseten's
// AuditLogEventSecretUpdatedV1 and AuditLogEventSecretDeletedV1): the secret, never its value.
type AuditEventSecretV1 struct {
	EventType  AuditLogEventType `json:"event_type"`
	SecretID   string            `json:"secret_id"`
	SecretName string            `json:"secret_name"`
}

// AuditPromotionControlAction is the control sent to a promotion
// (Baseten's AuditLogPromotionControlActionV1).
type AuditPromotionControlAction string

// The controls of Baseten's spec.
const (
	AuditControlPause            AuditPromotionControlAction = "PAUSE"
	AuditControlResume           AuditPromotionControlAction = "RESUME"
	AuditControlForceCancel      AuditPromotionControlAction = "FORCE_CANCEL"
	AuditControlForceRollForward AuditPromotionControlAction = "FORCE_ROLL_FORWARD"
	AuditControlGracefulCancel   AuditPromotionControlAction = "GRACEFUL_CANCEL"
)

// AuditEventPromotionControlV1 is the data of MODEL_PROMOTION_CONTROL_ACTION.
type AuditEventPromotionControlV1 struct {
	EventType AuditLogEventType `json:"event_type"`
	AuditDeploymentV1
	EnvironmentName string                      `json:"environment_name"`
	EnvironmentID   *string                     `json:"environment_id"`
	Action          AuditPromotionControlAction `json:"action"`
}

// AuditAutoscalingSettingsV1 are autoscaling settings as an event records them
// (Baseten's AuditLogEventAutoscalingSettingsV1).
type AuditAutoscalingSettingsV1 struct {
	MinReplica                  int      `json:"min_replica"`
	MaxReplica                  int      `json:"max_replica"`
	ConcurrencyTarget           int      `json:"concurrency_target"`
	AutoscalingWindow           *int     `json:"autoscaling_window"`
	ScaleDownDelay              *int     `json:"scale_down_delay"`
	TargetUtilizationPercentage *int     `json:"target_utilization_percentage"`
	TargetInFlightTokens        *int     `json:"target_in_flight_tokens"`
	MaxScaleDownRate            *float64 `json:"max_scale_down_rate"`
}

// AuditEventAutoscalingChangedV1 is the data of MODEL_DEPLOYMENT_AUTOSCALING_SETTINGS_CHANGED:
// the new settings, beside the deployment.
type AuditEventAutoscalingChangedV1 struct {
	EventType AuditLogEventType `json:"event_type"`
	// Schedules is always null: modelplane has no autoscaling schedules.
	Schedules *[]json.RawMessage `json:"schedules"`
	AuditAutoscalingSettingsV1
	AuditDeploymentV1
	DeploymentType *string `json:"deployment_type"`
	// PreviousSettings is null: modelplane records the settings a change made.
	PreviousSettings *AuditAutoscalingSettingsV1 `json:"previous_settings"`
}

// AuditEnvironmentSettingsV1 are an environment's settings as an event records them
// (Baseten's AuditLogEventEnvironmentSettingsV1); what modelplane does not have is null.
type AuditEnvironmentSettingsV1 struct {
	AuditAutoscalingSettingsV1
	RedeployOnPromotion      *bool   `json:"redeploy_on_promotion"`
	RollingDeploy            *bool   `json:"rolling_deploy"`
	RollingDeployStrategy    *string `json:"rolling_deploy_strategy"`
	MaxUnavailablePercent    *int    `json:"max_unavailable_percent"`
	MaxSurgePercent          *int    `json:"max_surge_percent"`
	StabilizationTimeSeconds *int    `json:"stabilization_time_seconds"`
	ReplicaOverheadPercent   *int    `json:"replica_overhead_percent"`
	PromotionCleanupStrategy *string `json:"promotion_cleanup_strategy"`
	RampUpWhilePromoting     *bool   `json:"ramp_up_while_promoting"`
	RampUpDurationSeconds    *int    `json:"ramp_up_duration_seconds"`
	RampUpStepSize           *int    `json:"ramp_up_step_size"`
}

// AuditEventEnvironmentCreatedV1 is the data of ENVIRONMENT_CREATED: the environment's
// settings.
type AuditEventEnvironmentCreatedV1 struct {
	EventType AuditLogEventType `json:"event_type"`
	AuditEnvironmentSettingsV1
	AuditModelV1
	EnvironmentName string  `json:"environment_name"`
	DeploymentType  *string `json:"deployment_type"`
}

// AuditEventEnvironmentUpdatedV1 is the data of ENVIRONMENT_UPDATED: the settings after the
// change.
type AuditEventEnvironmentUpdatedV1 struct {
	AuditEventEnvironmentCreatedV1
	Schedules        *[]json.RawMessage          `json:"schedules"`
	PreviousSettings *AuditEnvironmentSettingsV1 `json:"previous_settings"`
}

// AuditEventEnvironmentDeletedV1 is the data of ENVIRONMENT_DELETED.
type AuditEventEnvironmentDeletedV1 struct {
	EventType AuditLogEventType `json:"event_type"`
	AuditModelV1
	EnvironmentName string `json:"environment_name"`
}

// AuditLogAPIKeyType is a key's type as API-key events record it (Baseten's
// AuditLogApiKeyTypeV1): an admin key is a CREATOR_SERVICE_ACCOUNT, any other a PERSONAL key.
type AuditLogAPIKeyType string

// The API-key types modelplane records.
const (
	AuditAPIKeyPersonal       AuditLogAPIKeyType = "PERSONAL"
	AuditAPIKeyServiceAccount AuditLogAPIKeyType = "CREATOR_SERVICE_ACCOUNT"
)

// AuditEventAPIKeyV1 is the data of API_KEY_CREATED and API_KEY_DELETED.
type AuditEventAPIKeyV1 struct {
	EventType  AuditLogEventType  `json:"event_type"`
	APIKeyID   string             `json:"api_key_id"`
	APIKeyType AuditLogAPIKeyType `json:"api_key_type"`
	Prefix     string             `json:"prefix"`
}
