package contract

import "github.com/modelplane/modelplane"

// ErrTypePromotionFailed is the type of the error a failed promotion ends with.
const ErrTypePromotionFailed = "PromotionFailed"

// Controls of a running promotion, as Updates on its workflow; each answers a
// PromotionControlResult, and a control that does not apply now is refused by its validator.
const (
	// UpdatePromotionCancel moves all traffic back to the current deployment at once, ends
	// the promotion CANCELED and scales the candidate to zero (it is kept).
	UpdatePromotionCancel = "cancel"
	// UpdatePromotionPause holds the ramp at its percentage (autoscaling goes on).
	UpdatePromotionPause = "pause"
	// UpdatePromotionResume continues a paused ramp from its stage.
	UpdatePromotionResume = "resume"
	// UpdatePromotionForceRollForward sends all traffic to the candidate now and finishes.
	UpdatePromotionForceRollForward = "force_roll_forward"
	// UpdatePromotionForceCancel is cancel; the API also ends a stuck promotion by itself.
	UpdatePromotionForceCancel = "force_cancel"
)

// RampStages is how many equal steps a canary ramp takes, each adding 100/RampStages percent.
const RampStages = 10

// PromotionControlResult answers a control.
type PromotionControlResult struct {
	Success bool
	Status  modelplane.PromotionStatus
	Percent int
	Message string
}

// PromotionWorkflowID is the ID of the environment's promotion. The API starts it with
// conflict policy FAIL, so a second promotion of the same environment is refused.
func PromotionWorkflowID(modelID, env string) string { return "promotion:" + modelID + ":" + env }

// PromotionIDMemo names the memo field in which the API starts a promotion workflow with its
// promotion ID, so that whoever describes the workflow knows which promotion it carries.
const PromotionIDMemo = "promotion_id"

// PromotionInput starts the Promotion workflow.
type PromotionInput struct {
	PromotionID        string
	ModelID            string
	WorkspaceID        string
	Environment        string
	SourceDeploymentID string
	// ScaleDownPrevious lets the environment's cleanup strategy act on the deployment the
	// promotion replaces; without it the previous deployment is kept as it is.
	ScaleDownPrevious bool
}

// PromotionResult says how the promotion ended.
type PromotionResult struct {
	Status                modelplane.PromotionStatus
	CandidateDeploymentID string
	PreviousDeploymentID  string
}
