package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/workflows/contract"
)

// DeploymentPollInterval is how often a promotion asks its candidate how many replicas are
// ready.
const DeploymentPollInterval = 5 * time.Second

// Promotion moves an environment to a new deployment: it records the promotion, makes the
// candidate deployment when one is needed, brings it to the previous deployment's ready
// replica count, switches the environment to it at once, then demotes the previous
// deployment per the cleanup strategy. A failure before the switch leaves the environment
// on its previous deployment and the promotion FAILED with the reason.
//
// With ramp_up_while_promoting the candidate takes 10%, 20%, ... 100% of the traffic in
// contract.RampStages equal stages over ramp_up_duration_seconds before the switch; controls
// (cancel, pause, resume, force_roll_forward, force_cancel) arrive as Updates.
func Promotion(ctx workflow.Context, in contract.PromotionInput) (contract.PromotionResult, error) {
	p := &promotion{in: in, res: contract.PromotionResult{Status: modelplane.PromotionReleasing}, stages: contract.RampStages}
	if err := p.controls(ctx); err != nil {
		return p.res, err
	}
	return p.run(ctx)
}

type promotion struct {
	in  contract.PromotionInput
	res contract.PromotionResult
	// percent is the candidate's share of the traffic while ramping.
	percent int
	// control is the control received and not acted on yet.
	control string
	// switched is set once the environment serves the candidate; no control applies then.
	switched bool
	// stopRelease cancels the work before the ramp (a cancel while the candidate starts).
	stopRelease workflow.CancelFunc
	// stages is how many steps the traffic takes: contract.RampStages for the canary ramp,
	// the replica batches of a rolling deploy.
	stages int
	// rolling is set while a rolling deploy replaces the previous deployment's replicas.
	rolling bool
}

// controls registers the control Updates.
func (p *promotion) controls(ctx workflow.Context) error {
	for _, name := range []string{contract.UpdatePromotionCancel, contract.UpdatePromotionPause, contract.UpdatePromotionResume,
		contract.UpdatePromotionForceRollForward, contract.UpdatePromotionForceCancel} {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, name,
			func(ctx workflow.Context) (contract.PromotionControlResult, error) { return p.receive(name), nil },
			workflow.UpdateHandlerOptions{Validator: func() error { return p.validateControl(name) }},
		); err != nil {
			return err
		}
	}
	return nil
}

// validateControl refuses a control that does not apply in the promotion's current state.
func (p *promotion) validateControl(name string) error {
	status := p.res.Status
	if p.switched || (status != modelplane.PromotionReleasing && status != modelplane.PromotionRampingUp && status != modelplane.PromotionPaused) {
		return fmt.Errorf("no promotion in flight: it is %s", status)
	}
	if p.control != "" {
		return fmt.Errorf("a %s is being carried out", p.control)
	}
	switch name {
	case contract.UpdatePromotionPause:
		if status != modelplane.PromotionRampingUp {
			return fmt.Errorf("only a ramping promotion can be paused; it is %s", status)
		}
	case contract.UpdatePromotionResume:
		if status != modelplane.PromotionPaused {
			return fmt.Errorf("only a paused promotion can be resumed; it is %s", status)
		}
	case contract.UpdatePromotionForceRollForward:
		if status == modelplane.PromotionReleasing {
			return errors.New("the candidate is not ready yet: nothing to roll forward to")
		}
	}
	return nil
}

// receive takes a control for the main loop to act on and says what will happen.
func (p *promotion) receive(name string) contract.PromotionControlResult {
	p.control = name
	out := contract.PromotionControlResult{Success: true, Status: p.res.Status, Percent: p.percent}
	switch name {
	case contract.UpdatePromotionCancel, contract.UpdatePromotionForceCancel:
		out.Status, out.Percent, out.Message = modelplane.PromotionCanceled, 0, "traffic goes back to the current deployment"
		if p.stopRelease != nil && p.res.Status == modelplane.PromotionReleasing {
			p.stopRelease()
		}
	case contract.UpdatePromotionPause:
		out.Status, out.Message = modelplane.PromotionPaused, fmt.Sprintf("paused at %d%%", p.percent)
	case contract.UpdatePromotionResume:
		out.Status, out.Message = modelplane.PromotionRampingUp, fmt.Sprintf("resumed at %d%%", p.percent)
	case contract.UpdatePromotionForceRollForward:
		out.Status, out.Percent, out.Message = modelplane.PromotionRampingUp, 100, "all traffic goes to the candidate"
	}
	return out
}

// candidatePlan is how a promotion gets its candidate.
type candidatePlan struct {
	// Copy: a new deployment from the source's archive and config; else the source itself.
	Copy        bool
	Autoscaling settings.AutoscalingSettings
}

// planCandidate decides the candidate: always a new deployment from development, a new one
// from a published deployment only when the environment redeploys on promotion. A new one
// takes the previous deployment's autoscaling settings, or the defaults when there is none.
func planCandidate(b contract.BeginPromotionResult) candidatePlan {
	plan := candidatePlan{Copy: b.SourceIsDevelopment || b.Settings.RedeployOnPromotion}
	if b.PreviousAutoscaling != nil {
		plan.Autoscaling = *b.PreviousAutoscaling
	} else {
		plan.Autoscaling = settings.DefaultAutoscalingSettings()
	}
	return plan
}

// targetReplicas is how many replicas the candidate must have ready before the switch.
func targetReplicas(previousReady int) int { return max(1, previousReady) }

func (p *promotion) run(ctx workflow.Context) (contract.PromotionResult, error) {
	ctx = workflow.WithActivityOptions(ctx, shortActivity)
	ctx, p.stopRelease = workflow.WithCancel(ctx)
	p.setStatus(ctx, modelplane.PromotionReleasing)
	_ = workflow.UpsertTypedSearchAttributes(ctx,
		contract.ModelIDAttr.ValueSet(p.in.ModelID), contract.EnvironmentAttr.ValueSet(p.in.Environment))

	var begin contract.BeginPromotionResult
	if err := workflow.ExecuteActivity(ctx, contract.ActivityBeginPromotion, contract.BeginPromotionInput{
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
	var cand contract.CreateCandidateDeploymentResult
	if err := workflow.ExecuteActivity(ctx, contract.ActivityCreateCandidateDeployment, contract.CreateCandidateDeploymentInput{
		PromotionID: p.in.PromotionID, ModelID: p.in.ModelID, WorkspaceID: p.in.WorkspaceID,
		SourceDeploymentID: p.in.SourceDeploymentID, Copy: plan.Copy, CandidateID: candidateID,
		AutoscalingSettings: plan.Autoscaling,
	}).Get(ctx, &cand); err != nil {
		return p.fail(ctx, err)
	}
	p.res.CandidateDeploymentID = cand.DeploymentID
	// From here a cancel also takes the candidate back to zero.
	_ = workflow.UpsertTypedSearchAttributes(ctx, contract.DeploymentIDAttr.ValueSet(cand.DeploymentID))
	workflow.GetLogger(ctx).Info("promotion candidate", "model_id", p.in.ModelID, "environment", p.in.Environment,
		"deployment_id", cand.DeploymentID, "new", plan.Copy, "target", target)

	candWF := contract.DeploymentWorkflowID(cand.DeploymentID)
	// Promotions begun before rolling deploys were acted on ignored rolling_deploy.
	rolling := begin.Settings.RollingDeploy && begin.PreviousReady > 0 && begin.PreviousDeploymentID != cand.DeploymentID &&
		workflow.GetVersion(ctx, "rolling-deploy", workflow.DefaultVersion, 1) >= 1
	start := target
	if rolling {
		start = 0 // the steps bring it up, replica batch by replica batch
	}
	if err := workflow.ExecuteActivity(ctx, contract.ActivityStartDeploymentWorkflow, contract.StartDeploymentWorkflowInput{
		WorkflowID: candWF, WorkflowType: contract.DeploymentWorkflowType, TaskQueue: contract.TaskQueue,
		Input: contract.DeploymentInput{DeploymentID: cand.DeploymentID, ModelID: p.in.ModelID, Replicas: start},
	}).Get(ctx, nil); err != nil {
		return p.fail(ctx, err)
	}
	if rolling {
		return p.roll(ctx, begin, target)
	}
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, updateActivity), contract.ActivityScaleDeployment,
		contract.DeploymentUpdateInput{
			WorkflowID: candWF, UpdateName: contract.UpdateScale, UpdateID: p.in.PromotionID + ":scale-candidate",
			Request: contract.ScaleRequest{Replicas: target},
		}).Get(ctx, nil); err != nil {
		return p.fail(ctx, err)
	}
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, readyActivity), contract.ActivityWaitDeploymentReady,
		contract.WaitDeploymentReadyInput{
			WorkflowID: candWF, QueryName: contract.QueryStatus, Target: target,
			PollInterval: DeploymentPollInterval,
		}).Get(ctx, nil); err != nil {
		return p.fail(ctx, err)
	}

	if begin.Settings.RampUpWhilePromoting && begin.PreviousDeploymentID != "" && begin.PreviousDeploymentID != cand.DeploymentID {
		if p.control == "" {
			switch end, reason := p.ramp(ctx, begin.Settings, begin.PreviousDeploymentID); end {
			case rampCanceled:
				return p.cancel(ctx)
			case rampFailed:
				return p.rollBack(ctx, modelplane.PromotionFailed, reason)
			}
		}
	}
	if p.control == contract.UpdatePromotionCancel || p.control == contract.UpdatePromotionForceCancel {
		return p.cancel(ctx)
	}
	return p.switchOver(ctx, begin)
}

// switchOver points the environment at the candidate for good and demotes the previous
// deployment.
func (p *promotion) switchOver(ctx workflow.Context, begin contract.BeginPromotionResult) (contract.PromotionResult, error) {
	p.switched = true
	if err := workflow.ExecuteActivity(ctx, contract.ActivitySwitchEnvironment, contract.SwitchEnvironmentInput{
		PromotionID: p.in.PromotionID, ModelID: p.in.ModelID, Environment: p.in.Environment,
		CandidateDeploymentID: p.res.CandidateDeploymentID,
	}).Get(ctx, nil); err != nil {
		return p.fail(ctx, err)
	}
	p.setStatus(ctx, modelplane.PromotionSucceeded)
	p.demote(ctx, begin)
	return p.res, nil
}

// demote applies the cleanup strategy to the previous deployment. The switch is done by
// then, so a failure here is logged and the promotion stays SUCCEEDED.
func (p *promotion) demote(ctx workflow.Context, begin contract.BeginPromotionResult) {
	prev := begin.PreviousDeploymentID
	if prev == "" || prev == p.res.CandidateDeploymentID || !p.in.ScaleDownPrevious {
		return
	}
	ctx = workflow.WithActivityOptions(ctx, updateActivity)
	// The previous deployment's own workflow carries the demotion out once it accepted it: the
	// promotion ends then, so that draining the previous replicas (up to the drain timeout)
	// does not hold the environment's next promotion off with a 409.
	in := contract.DeploymentUpdateInput{WorkflowID: contract.DeploymentWorkflowID(prev), AcceptedOnly: true}
	var f workflow.Future
	switch begin.Settings.PromotionCleanupStrategy {
	case modelplane.CleanupKeep:
		return
	case modelplane.CleanupDeactivate:
		in.UpdateName, in.UpdateID = contract.UpdateDeactivate, p.in.PromotionID+":deactivate-previous"
		f = workflow.ExecuteActivity(ctx, contract.ActivityDeactivateDeployment, in)
	default: // SCALE_TO_ZERO, the default strategy
		in.UpdateName, in.UpdateID = contract.UpdateScale, p.in.PromotionID+":scale-previous"
		in.Request = contract.ScaleRequest{Replicas: 0}
		in.DropFloorOf = prev
		f = workflow.ExecuteActivity(ctx, contract.ActivityScaleDeployment, in)
	}
	if err := f.Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("previous deployment not demoted", "model_id", p.in.ModelID,
			"environment", p.in.Environment, "deployment_id", prev, "err", err)
	}
}

// fail records why the promotion ended before the switch and ends the workflow with it. It
// runs on a disconnected context so that it also records a cancellation.
func (p *promotion) fail(ctx workflow.Context, cause error) (contract.PromotionResult, error) {
	if p.control == contract.UpdatePromotionCancel || p.control == contract.UpdatePromotionForceCancel {
		return p.cancel(ctx)
	}
	status := modelplane.PromotionFailed
	if temporal.IsCanceledError(cause) {
		status = modelplane.PromotionCanceled
	}
	reason := reasonOf(cause)
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if err := workflow.ExecuteActivity(dctx, contract.ActivityFinishPromotion, contract.FinishPromotionInput{
		PromotionID: p.in.PromotionID, ModelID: p.in.ModelID, Environment: p.in.Environment,
		CandidateDeploymentID: p.res.CandidateDeploymentID, Status: status, ErrorMessage: reason,
	}).Get(dctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("promotion end not recorded", "model_id", p.in.ModelID,
			"environment", p.in.Environment, "err", err)
	}
	p.setStatus(dctx, status)
	workflow.GetLogger(ctx).Warn("promotion failed", "model_id", p.in.ModelID, "environment", p.in.Environment,
		"status", status, "reason", reason)
	if status == modelplane.PromotionCanceled {
		return p.res, cause
	}
	return p.res, temporal.NewNonRetryableApplicationError(reason, contract.ErrTypePromotionFailed, cause)
}

// rampEnd says how a ramp ended: with all traffic on the candidate, cancelled, or rolled
// back by the canary analysis.
type rampEnd int

const (
	rampDone rampEnd = iota
	rampCanceled
	rampFailed
)

// ramp moves the candidate's share of the traffic up in contract.RampStages stages, each held for an
// equal part of the duration: a timer raced against the controls. With canary analysis on,
// each stage ends with the candidate's figures judged against the current deployment's; a
// breach rolls the promotion back (the reason is returned).
func (p *promotion) ramp(ctx workflow.Context, ps settings.PromotionSettings, currentID string) (rampEnd, string) {
	stageLen := time.Duration(ps.RampUpDurationSeconds) * time.Second / contract.RampStages
	for stage := 1; stage <= contract.RampStages; stage++ {
		p.progress(ctx, modelplane.PromotionRampingUp, stage*100/contract.RampStages, stage, "promotion.stage")
		if stage == contract.RampStages {
			return rampDone, ""
		}
		began := workflow.Now(ctx)
		switch end := p.hold(ctx, stage, stageLen); end {
		case holdCanceled:
			return rampCanceled, ""
		case holdForced:
			return rampDone, ""
		}
		if !ps.CanaryAnalysis.Enabled {
			continue
		}
		verdict, err := p.analyze(ctx, ps.CanaryAnalysis, currentID, began)
		if err == nil && !verdict.Enough {
			// Too few requests to judge: the stage waits up to one more stage length for more.
			switch p.hold(ctx, stage, stageLen) {
			case holdCanceled:
				return rampCanceled, ""
			case holdForced:
				return rampDone, ""
			}
			verdict, err = p.analyze(ctx, ps.CanaryAnalysis, currentID, began)
		}
		if err != nil {
			workflow.GetLogger(ctx).Error("canary analysis failed; the ramp goes on", "model_id", p.in.ModelID,
				"environment", p.in.Environment, "stage", stage, "err", err)
			continue
		}
		if verdict.Breach {
			return rampFailed, fmt.Sprintf("canary analysis at stage %d (%d%%): %s", stage, p.percent, verdict.Reason)
		}
	}
	return rampDone, ""
}

// holdEnd says how holding a stage ended.
type holdEnd int

const (
	holdElapsed holdEnd = iota
	holdCanceled
	holdForced
)

// hold keeps the current stage for d, acting on controls meanwhile: a pause stops the clock
// until resume, a cancel ends the ramp, a forced roll forward moves all traffic at once.
func (p *promotion) hold(ctx workflow.Context, stage int, d time.Duration) holdEnd {
	remaining := d
	for remaining > 0 {
		began := workflow.Now(ctx)
		got, err := workflow.AwaitWithTimeout(ctx, remaining, func() bool { return p.control != "" })
		if err != nil {
			return holdCanceled
		}
		if !got {
			return holdElapsed
		}
		remaining -= workflow.Now(ctx).Sub(began)
		switch p.control {
		case contract.UpdatePromotionCancel, contract.UpdatePromotionForceCancel:
			return holdCanceled
		case contract.UpdatePromotionForceRollForward:
			if p.rolling {
				return holdForced // the rest of the candidate's replicas come first
			}
			p.control = ""
			p.progress(ctx, modelplane.PromotionRampingUp, 100, contract.RampStages, "promotion.force_roll_forward")
			return holdForced
		case contract.UpdatePromotionPause:
			if !p.pause(ctx, stage) {
				return holdCanceled
			}
			// Any other control is handled on the next turn, with the time left.
		}
	}
	return holdElapsed
}

// pause acts on a pause control: the promotion stays PAUSED at its percentage until the next
// control, which a resume consumes and any other leaves for the caller. It reports false when
// the workflow was cancelled meanwhile.
func (p *promotion) pause(ctx workflow.Context, stage int) bool {
	p.control = ""
	p.progress(ctx, modelplane.PromotionPaused, p.percent, stage, "promotion.pause")
	if err := workflow.Await(ctx, func() bool { return p.control != "" }); err != nil {
		return false
	}
	if p.control == contract.UpdatePromotionResume {
		p.control = ""
		p.progress(ctx, modelplane.PromotionRampingUp, p.percent, stage, "promotion.resume")
	}
	return true
}

// analyze judges the stage that began at from.
func (p *promotion) analyze(ctx workflow.Context, c settings.CanaryAnalysis, currentID string, from time.Time) (contract.AnalyzeStageResult, error) {
	var res contract.AnalyzeStageResult
	err := workflow.ExecuteActivity(ctx, contract.ActivityAnalyzeStage, contract.AnalyzeStageInput{
		CandidateID: p.res.CandidateDeploymentID, CurrentID: currentID, From: from, To: workflow.Now(ctx), Analysis: c,
	}).Get(ctx, &res)
	return res, err
}

// progress records the ramp's state: in the database (gateways follow it), in the workflow's
// status and current details.
func (p *promotion) progress(ctx workflow.Context, status modelplane.PromotionStatus, percent, stage int, event string) {
	p.percent = percent
	p.setStatus(ctx, status)
	_ = workflow.UpsertTypedSearchAttributes(ctx, contract.PromotionPercentAttr.ValueSet(int64(percent)))
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("%s: stage %d of %d, %d%% of %s's traffic to deployment %s",
		status, stage, p.stages, percent, p.in.Environment, p.res.CandidateDeploymentID))
	if err := workflow.ExecuteActivity(ctx, contract.ActivitySetPromotionProgress, contract.SetPromotionProgressInput{
		PromotionID: p.in.PromotionID, WorkspaceID: p.in.WorkspaceID, ModelID: p.in.ModelID,
		Environment: p.in.Environment, Status: status, Percent: percent, Stage: stage, Event: event,
	}).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("promotion progress not recorded", "model_id", p.in.ModelID,
			"environment", p.in.Environment, "percent", percent, "err", err)
	}
}

// cancel ends the promotion CANCELED (see rollBack).
func (p *promotion) cancel(ctx workflow.Context) (contract.PromotionResult, error) {
	return p.rollBack(ctx, modelplane.PromotionCanceled, fmt.Sprintf("cancelled at %d%%", p.percent))
}

// rollBack ends the promotion with status (CANCELED, or FAILED by the canary analysis): all
// traffic back on the current deployment at once, then the candidate scaled to zero (kept,
// with its min_replica set to 0 so that the autoscaler leaves it there) unless it serves
// another environment, on a disconnected context so a cancelled workflow still cleans up.
func (p *promotion) rollBack(ctx workflow.Context, status modelplane.PromotionStatus, reason string) (contract.PromotionResult, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	dctx = workflow.WithActivityOptions(dctx, shortActivity)
	if err := workflow.ExecuteActivity(dctx, contract.ActivityFinishPromotion, contract.FinishPromotionInput{
		PromotionID: p.in.PromotionID, ModelID: p.in.ModelID, Environment: p.in.Environment,
		CandidateDeploymentID: p.res.CandidateDeploymentID, Status: status, ErrorMessage: reason,
	}).Get(dctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("promotion end not recorded", "model_id", p.in.ModelID,
			"environment", p.in.Environment, "err", err)
	}
	p.percent = 0
	p.setStatus(dctx, status)
	workflow.SetCurrentDetails(dctx, string(status)+": all traffic back on the current deployment; "+reason)
	if cand := p.res.CandidateDeploymentID; cand != "" && cand != p.res.PreviousDeploymentID {
		if err := workflow.ExecuteActivity(workflow.WithActivityOptions(dctx, updateActivity), contract.ActivityScaleDownCandidate,
			contract.ScaleDownCandidateInput{ModelID: p.in.ModelID, DeploymentID: cand,
				DeploymentUpdateInput: contract.DeploymentUpdateInput{
					WorkflowID: contract.DeploymentWorkflowID(cand), UpdateName: contract.UpdateScale, UpdateID: p.in.PromotionID + ":scale-candidate-down",
					Request: contract.ScaleRequest{Replicas: 0}, DropFloorOf: cand,
				}}).Get(dctx, nil); err != nil {
			workflow.GetLogger(ctx).Error("candidate not scaled to zero", "deployment_id", cand, "err", err)
		}
	}
	workflow.GetLogger(ctx).Info("promotion rolled back", "model_id", p.in.ModelID, "environment", p.in.Environment,
		"status", status, "reason", reason)
	if status == modelplane.PromotionFailed {
		return p.res, temporal.NewNonRetryableApplicationError(reason, contract.ErrTypePromotionFailed, nil)
	}
	return p.res, nil
}

func (p *promotion) setStatus(ctx workflow.Context, status modelplane.PromotionStatus) {
	p.res.Status = status
	_ = workflow.UpsertTypedSearchAttributes(ctx, contract.PromotionStatusAttr.ValueSet(string(status)))
}

// newDeploymentID draws a deployment ID once and replays it from history afterwards.
func newDeploymentID(ctx workflow.Context) string {
	var id string
	_ = workflow.SideEffect(ctx, func(workflow.Context) any { return modelplane.NewID(8) }).Get(&id)
	return id
}

var (
	// Updates wait for the Deployment workflow's other work; deactivating drains replicas.
	// The activity heartbeats while it waits, so a lost worker is noticed in half a minute.
	updateActivity = workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         activityRetry,
	}
	// Loading a large model can take long; the heartbeat notices a lost worker.
	readyActivity = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Hour,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         activityRetry,
	}
)
