package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/store"
)

// Cleanup strategies for the deployment a promotion replaces (promotion_cleanup_strategy).
const (
	CleanupScaleToZero = "SCALE_TO_ZERO"
	CleanupKeep        = "KEEP"
	CleanupDeactivate  = "DEACTIVATE"
)

// DeploymentWorkflowType is the type name the Deployment workflow is registered under; the
// promotion starts candidates' workflows by it.
const DeploymentWorkflowType = "Deployment"

// DeploymentPollInterval is how often a promotion asks its candidate how many replicas are
// ready.
const DeploymentPollInterval = 5 * time.Second

// ErrTypePromotionFailed is the type of the error a failed promotion ends with.
const ErrTypePromotionFailed = "PromotionFailed"

// PromotionWorkflowID is the ID of the environment's promotion. The API starts it with
// conflict policy FAIL, so a second promotion of the same environment is refused.
func PromotionWorkflowID(modelID, env string) string { return "promotion:" + modelID + ":" + env }

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
	Status                string
	CandidateDeploymentID string
	PreviousDeploymentID  string
}

// failedDeploymentStatuses end a promotion's wait for its candidate.
var failedDeploymentStatuses = []string{StatusBuildFailed, StatusDeployFailed, StatusUnhealthy}

// Promotion moves an environment to a new deployment: it records the promotion, makes the
// candidate deployment when one is needed, brings it to the previous deployment's ready
// replica count, switches the environment to it at once, then demotes the previous
// deployment per the cleanup strategy. A failure before the switch leaves the environment
// on its previous deployment and the promotion FAILED with the reason.
//
// Traffic moves in one step: ramp_up_while_promoting and the canary stages are not
// implemented yet and are ignored.
func Promotion(ctx workflow.Context, in PromotionInput) (PromotionResult, error) {
	p := &promotion{in: in, res: PromotionResult{Status: store.PromotionReleasing}}
	return p.run(ctx)
}

type promotion struct {
	in  PromotionInput
	res PromotionResult
}

// candidatePlan is how a promotion gets its candidate.
type candidatePlan struct {
	// Copy: a new deployment from the source's archive and config; else the source itself.
	Copy        bool
	Autoscaling store.AutoscalingSettings
}

// planCandidate decides the candidate: always a new deployment from development, a new one
// from a published deployment only when the environment redeploys on promotion. A new one
// takes the previous deployment's autoscaling settings, or the defaults when there is none.
func planCandidate(b activities.BeginPromotionResult) candidatePlan {
	plan := candidatePlan{Copy: b.SourceIsDevelopment || b.Settings.RedeployOnPromotion}
	if b.PreviousAutoscaling != nil {
		plan.Autoscaling = *b.PreviousAutoscaling
	} else {
		plan.Autoscaling = store.DefaultAutoscalingSettings()
	}
	return plan
}

// targetReplicas is how many replicas the candidate must have ready before the switch.
func targetReplicas(previousReady int) int { return max(1, previousReady) }

func (p *promotion) run(ctx workflow.Context) (PromotionResult, error) {
	ctx = workflow.WithActivityOptions(ctx, shortActivity)
	var a *activities.Activities
	p.setStatus(ctx, store.PromotionReleasing)
	_ = workflow.UpsertTypedSearchAttributes(ctx,
		ModelIDAttr.ValueSet(p.in.ModelID), EnvironmentAttr.ValueSet(p.in.Environment))

	var begin activities.BeginPromotionResult
	if err := workflow.ExecuteActivity(ctx, a.BeginPromotion, activities.BeginPromotionInput{
		PromotionID: p.in.PromotionID, ModelID: p.in.ModelID, WorkspaceID: p.in.WorkspaceID,
		Environment: p.in.Environment, SourceDeploymentID: p.in.SourceDeploymentID,
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
	}).Get(ctx, &begin); err != nil {
		return p.fail(ctx, err)
	}
	p.res.PreviousDeploymentID = begin.PreviousDeploymentID
	plan := planCandidate(begin)
	target := targetReplicas(begin.PreviousReady)

	candidateID := p.in.SourceDeploymentID
	if plan.Copy {
		candidateID = newDeploymentID(ctx)
	}
	var cand activities.CreateCandidateDeploymentResult
	if err := workflow.ExecuteActivity(ctx, a.CreateCandidateDeployment, activities.CreateCandidateDeploymentInput{
		PromotionID: p.in.PromotionID, ModelID: p.in.ModelID, WorkspaceID: p.in.WorkspaceID,
		SourceDeploymentID: p.in.SourceDeploymentID, Copy: plan.Copy, CandidateID: candidateID,
		AutoscalingSettings: plan.Autoscaling,
	}).Get(ctx, &cand); err != nil {
		return p.fail(ctx, err)
	}
	p.res.CandidateDeploymentID = cand.DeploymentID
	_ = workflow.UpsertTypedSearchAttributes(ctx, DeploymentIDAttr.ValueSet(cand.DeploymentID))
	workflow.GetLogger(ctx).Info("promotion candidate", "model_id", p.in.ModelID, "environment", p.in.Environment,
		"deployment_id", cand.DeploymentID, "new", plan.Copy, "target", target)

	candWF := DeploymentWorkflowID(cand.DeploymentID)
	if err := workflow.ExecuteActivity(ctx, a.StartDeploymentWorkflow, activities.StartDeploymentWorkflowInput{
		WorkflowID: candWF, WorkflowType: DeploymentWorkflowType, TaskQueue: TaskQueue,
		Input: DeploymentInput{DeploymentID: cand.DeploymentID, ModelID: p.in.ModelID, Replicas: target},
	}).Get(ctx, nil); err != nil {
		return p.fail(ctx, err)
	}
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, updateActivity), a.ScaleDeployment,
		activities.DeploymentUpdateInput{
			WorkflowID: candWF, UpdateName: UpdateScale, UpdateID: p.in.PromotionID + ":scale-candidate",
			Request: ScaleRequest{Replicas: target},
		}).Get(ctx, nil); err != nil {
		return p.fail(ctx, err)
	}
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, readyActivity), a.WaitDeploymentReady,
		activities.WaitDeploymentReadyInput{
			WorkflowID: candWF, QueryName: QueryStatus, Target: target,
			FailedStatuses: failedDeploymentStatuses, PollInterval: DeploymentPollInterval,
		}).Get(ctx, nil); err != nil {
		return p.fail(ctx, err)
	}

	if err := workflow.ExecuteActivity(ctx, a.SwitchEnvironment, activities.SwitchEnvironmentInput{
		PromotionID: p.in.PromotionID, ModelID: p.in.ModelID, Environment: p.in.Environment,
		CandidateDeploymentID: cand.DeploymentID,
	}).Get(ctx, nil); err != nil {
		return p.fail(ctx, err)
	}
	p.setStatus(ctx, store.PromotionSucceeded)
	p.demote(ctx, begin)
	return p.res, nil
}

// demote applies the cleanup strategy to the previous deployment. The switch is done by
// then, so a failure here is logged and the promotion stays SUCCEEDED.
func (p *promotion) demote(ctx workflow.Context, begin activities.BeginPromotionResult) {
	prev := begin.PreviousDeploymentID
	if prev == "" || prev == p.res.CandidateDeploymentID || !p.in.ScaleDownPrevious {
		return
	}
	var a *activities.Activities
	ctx = workflow.WithActivityOptions(ctx, updateActivity)
	in := activities.DeploymentUpdateInput{WorkflowID: DeploymentWorkflowID(prev)}
	var f workflow.Future
	switch begin.Settings.PromotionCleanupStrategy {
	case CleanupKeep:
		return
	case CleanupDeactivate:
		in.UpdateName, in.UpdateID = UpdateDeactivate, p.in.PromotionID+":deactivate-previous"
		f = workflow.ExecuteActivity(ctx, a.DeactivateDeployment, in)
	default: // SCALE_TO_ZERO, the default strategy
		in.UpdateName, in.UpdateID = UpdateScale, p.in.PromotionID+":scale-previous"
		in.Request = ScaleRequest{Replicas: 0}
		f = workflow.ExecuteActivity(ctx, a.ScaleDeployment, in)
	}
	if err := f.Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("previous deployment not demoted", "model_id", p.in.ModelID,
			"environment", p.in.Environment, "deployment_id", prev, "err", err)
	}
}

// fail records why the promotion ended before the switch and ends the workflow with it. It
// runs on a disconnected context so that it also records a cancellation.
func (p *promotion) fail(ctx workflow.Context, cause error) (PromotionResult, error) {
	status := store.PromotionFailed
	if temporal.IsCanceledError(cause) {
		status = store.PromotionCanceled
	}
	reason := reasonOf(cause)
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	var a *activities.Activities
	if err := workflow.ExecuteActivity(dctx, a.FinishPromotion, activities.FinishPromotionInput{
		PromotionID: p.in.PromotionID, ModelID: p.in.ModelID, Environment: p.in.Environment,
		CandidateDeploymentID: p.res.CandidateDeploymentID, Status: status, ErrorMessage: reason,
	}).Get(dctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("promotion end not recorded", "model_id", p.in.ModelID,
			"environment", p.in.Environment, "err", err)
	}
	p.setStatus(dctx, status)
	workflow.GetLogger(ctx).Warn("promotion failed", "model_id", p.in.ModelID, "environment", p.in.Environment,
		"status", status, "reason", reason)
	if status == store.PromotionCanceled {
		return p.res, cause
	}
	return p.res, temporal.NewNonRetryableApplicationError(reason, ErrTypePromotionFailed, cause)
}

func (p *promotion) setStatus(ctx workflow.Context, status string) {
	p.res.Status = status
	_ = workflow.UpsertTypedSearchAttributes(ctx, PromotionStatusAttr.ValueSet(status))
}

// newDeploymentID draws a deployment ID once and replays it from history afterwards.
func newDeploymentID(ctx workflow.Context) string {
	var id string
	_ = workflow.SideEffect(ctx, func(workflow.Context) any { return store.NewID(8) }).Get(&id)
	return id
}

var (
	// Updates wait for the Deployment workflow's other work; deactivating drains replicas.
	// The activity heartbeats while it waits, so a lost worker is noticed in half a minute.
	updateActivity = workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5,
		},
	}
	// Loading a large model can take long; the heartbeat notices a lost worker.
	readyActivity = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Hour,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5,
		},
	}
)
