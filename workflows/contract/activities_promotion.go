package contract

import (
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
)

// Error types of the non-retryable failures of promotion activities.
const (
	// ErrTypePromotionRefused: the promotion cannot go ahead as asked (inactive source, another
	// promotion running, missing environment or deployment).
	ErrTypePromotionRefused = "PromotionRefused"
	// ErrTypeDeploymentFailed: the candidate deployment failed while it was brought up.
	ErrTypeDeploymentFailed = "DeploymentFailed"
	// ErrTypeDeploymentRefused: a Deployment workflow refused or failed an update, or is gone.
	ErrTypeDeploymentRefused = "DeploymentRefused"
)

// BeginPromotionInput names the promotion to record. PromotionID is drawn by the workflow, so
// a retry finds the row the first attempt wrote.
type BeginPromotionInput struct {
	PromotionID        string
	ModelID            string
	WorkspaceID        string
	Environment        string
	SourceDeploymentID string
	WorkflowID         string
}

// BeginPromotionResult is what the workflow decides the promotion's course from.
type BeginPromotionResult struct {
	Settings            settings.PromotionSettings
	SourceIsDevelopment bool
	// PreviousDeploymentID is the deployment the environment served when the promotion began;
	// empty when it served none.
	PreviousDeploymentID string
	// PreviousAutoscaling is the previous deployment's autoscaling settings; nil when there is
	// no previous deployment.
	PreviousAutoscaling *settings.AutoscalingSettings
	// PreviousReady is the previous deployment's READY replica count.
	PreviousReady int
}

// CreateCandidateDeploymentInput says which deployment the promotion brings up. With Copy the
// candidate is a new deployment with ID CandidateID made from the source's archive and
// config; without, the source itself is the candidate.
type CreateCandidateDeploymentInput struct {
	PromotionID        string
	ModelID            string
	WorkspaceID        string
	SourceDeploymentID string
	Copy               bool
	CandidateID        string
	// AutoscalingSettings are the new deployment's; unused without Copy.
	AutoscalingSettings settings.AutoscalingSettings
}

// CreateCandidateDeploymentResult names the candidate.
type CreateCandidateDeploymentResult struct {
	DeploymentID string
	Name         string
}

// StartDeploymentWorkflowInput says which workflow to start; Input is its argument, passed
// through as it came.
type StartDeploymentWorkflowInput struct {
	WorkflowID   string
	WorkflowType string
	TaskQueue    string
	Input        any
}

// DeploymentUpdateInput is an update to send to a Deployment workflow. UpdateID makes a
// retried send the same update; Request is the update's argument, nil for none.
type DeploymentUpdateInput struct {
	WorkflowID string
	UpdateName string
	UpdateID   string
	Request    any
	// AcceptedOnly returns once the Deployment workflow accepted the update, which it then
	// carries out durably by itself, instead of waiting until it is done.
	AcceptedOnly bool
	// DropFloorOf, a deployment ID, has its min_replica set to 0 before the update is sent:
	// a deployment a promotion scaled down stays at zero until a request wakes it, rather
	// than being brought back to its floor by the autoscaler.
	DropFloorOf string
}

// WaitDeploymentReadyInput says which Deployment workflow to watch and for what.
type WaitDeploymentReadyInput struct {
	WorkflowID string
	// QueryName answers a status with at least the fields of WaitDeploymentReadyResult.
	QueryName    string
	Target       int
	PollInterval time.Duration
}

// WaitDeploymentReadyResult is the deployment's status when the wait ended.
type WaitDeploymentReadyResult struct {
	Status modelplane.DeploymentStatus
	Reason string
	Ready  int
}

// SwitchEnvironmentInput names the environment to point at its candidate.
type SwitchEnvironmentInput struct {
	PromotionID           string
	ModelID               string
	Environment           string
	CandidateDeploymentID string
}

// FinishPromotionInput ends a promotion that did not switch.
type FinishPromotionInput struct {
	PromotionID           string
	ModelID               string
	Environment           string
	CandidateDeploymentID string
	Status                modelplane.PromotionStatus
	ErrorMessage          string
}

// SetPromotionProgressInput records a promotion's stage.
type SetPromotionProgressInput struct {
	PromotionID string
	WorkspaceID string
	ModelID     string
	Environment string
	Status      modelplane.PromotionStatus // RAMPING_UP or PAUSED
	Percent     int
	Stage       int // 1 to 10; 0 when the status alone changes
	Event       string
}

// AnalyzeStageInput names a canary stage to judge: the two deployments and its time range.
type AnalyzeStageInput struct {
	CandidateID string
	CurrentID   string
	From, To    time.Time
	Analysis    settings.CanaryAnalysis
}

// AnalyzeStageResult is the stage's figures and the verdict.
type AnalyzeStageResult struct {
	Candidate, Current modelplane.Figures
	// Enough says both deployments answered at least MinRequestsPerStage requests.
	Enough bool
	// Breach says the candidate did worse than allowed; Reason says how, with the figures.
	Breach bool
	Reason string
}

// ScaleDownCandidateInput names a rolled-back promotion's candidate and the scale update
// that takes it to zero.
type ScaleDownCandidateInput struct {
	DeploymentUpdateInput
	ModelID      string
	DeploymentID string
}
