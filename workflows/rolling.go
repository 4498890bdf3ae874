package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/workflows/contract"
)

// rollingStep is one batch of a rolling deploy: the previous deployment is first brought
// down to previousBefore replicas (when max_unavailable_percent allows fewer than it has),
// the candidate up to candidate ready replicas, the candidate's share of the traffic to
// candidate/n, and the previous deployment down to previousAfter.
type rollingStep struct {
	previousBefore, candidate, previousAfter int
}

// rollingSteps paces a rolling deploy of n replicas: every step adds up to surge +
// unavailable candidate replicas, where surge is max_surge_percent of n rounded up and
// unavailable is max_unavailable_percent of n rounded down. The replicas of both
// deployments together never exceed n + surge, and the ready ones never fall below
// n - unavailable. When both round to zero, one replica of surge is allowed, so that the
// deploy can make progress.
func rollingSteps(n int, c settings.RollingDeployConfig) []rollingStep {
	surge := (n*c.MaxSurgePercent + 99) / 100
	unavailable := n * c.MaxUnavailablePercent / 100
	if surge+unavailable == 0 {
		surge = 1
	}
	var steps []rollingStep
	for cand := 0; cand < n; {
		next := min(n, cand+surge+unavailable)
		steps = append(steps, rollingStep{
			previousBefore: max(0, min(n-cand, n+surge-next)),
			candidate:      next,
			previousAfter:  n - next,
		})
		cand = next
	}
	return steps
}

// roll carries out a rolling deploy (promotion_settings.rolling_deploy): the candidate,
// started at zero, replaces the previous deployment's n ready replicas step by step
// (rollingSteps), each step waiting for the candidate's new replicas to be ready, moving
// the candidate's share of the traffic to match its replicas, and holding
// stabilization_time_seconds before the previous deployment gives its replicas up. The
// autoscaler leaves both deployments alone meanwhile (store.RollingDeployments). Controls act as
// during a canary ramp: pause holds between steps, cancel brings the previous deployment back
// to n ready replicas before the traffic goes back to it (force_cancel does not wait for
// them), force_roll_forward brings the candidate to n at once and switches.
func (p *promotion) roll(ctx workflow.Context, begin contract.BeginPromotionResult, n int) (contract.PromotionResult, error) {
	p.rolling = true
	rc := begin.Settings.RollingDeployConfig
	steps := rollingSteps(n, rc)
	p.stages = len(steps)
	prev := begin.PreviousDeploymentID
	previous := n // replicas the previous deployment was last asked for
	// shrinkPrevious asks the previous deployment for to replicas when that is fewer than it
	// was last asked for.
	shrinkPrevious := func(to int, update string) error {
		if to >= previous {
			return nil
		}
		if err := p.scaleTo(ctx, prev, to, update); err != nil {
			return err
		}
		previous = to
		return nil
	}
	workflow.GetLogger(ctx).Info("rolling deploy", "model_id", p.in.ModelID, "environment", p.in.Environment,
		"deployment_id", p.res.CandidateDeploymentID, "previous_deployment_id", prev, "replicas", n, "steps", len(steps))
	p.progress(ctx, modelplane.PromotionRampingUp, 0, 0, "promotion.rolling_start")
	stabilize := time.Duration(rc.StabilizationTimeSeconds) * time.Second
	for i, step := range steps {
		if p.stopping() {
			break
		}
		if err := shrinkPrevious(step.previousBefore, fmt.Sprintf("rolling-%d-previous-before", i+1)); err != nil {
			return p.rollBackRolling(ctx, begin, n, err)
		}
		if err := p.scaleTo(ctx, p.res.CandidateDeploymentID, step.candidate, fmt.Sprintf("rolling-%d-candidate", i+1)); err != nil {
			return p.rollBackRolling(ctx, begin, n, err)
		}
		if ok, err := p.candidateReady(ctx, step.candidate); err != nil {
			return p.rollBackRolling(ctx, begin, n, err)
		} else if !ok {
			break // a control came first
		}
		p.progress(ctx, modelplane.PromotionRampingUp, step.candidate*100/n, i+1, "promotion.stage")
		if stabilize > 0 && step.candidate < n {
			if p.hold(ctx, i+1, stabilize) == holdCanceled && !p.stopping() {
				return p.rollBackRolling(ctx, begin, n, nil)
			}
		}
		// A pause that came while replicas started holds here, between two steps.
		if p.control == contract.UpdatePromotionPause && !p.pause(ctx, i+1) {
			return p.rollBackRolling(ctx, begin, n, nil)
		}
		if p.stopping() {
			break
		}
		if err := shrinkPrevious(step.previousAfter, fmt.Sprintf("rolling-%d-previous-after", i+1)); err != nil {
			return p.rollBackRolling(ctx, begin, n, err)
		}
	}
	switch p.control {
	case contract.UpdatePromotionCancel, contract.UpdatePromotionForceCancel:
		return p.rollBackRolling(ctx, begin, n, nil)
	case contract.UpdatePromotionForceRollForward:
		p.control = ""
		if err := p.scaleTo(ctx, p.res.CandidateDeploymentID, n, "rolling-forced-candidate"); err != nil {
			return p.rollBackRolling(ctx, begin, n, err)
		}
		if ok, err := p.candidateReady(ctx, n); err != nil {
			return p.rollBackRolling(ctx, begin, n, err)
		} else if !ok {
			return p.rollBackRolling(ctx, begin, n, nil)
		}
		p.progress(ctx, modelplane.PromotionRampingUp, 100, len(steps), "promotion.force_roll_forward")
	}
	return p.switchOver(ctx, begin)
}

// stopping reports whether a control that ends the steps early arrived: a cancel or a forced
// roll forward.
func (p *promotion) stopping() bool {
	switch p.control {
	case contract.UpdatePromotionCancel, contract.UpdatePromotionForceCancel, contract.UpdatePromotionForceRollForward:
		return true
	}
	return false
}

// scaleTo asks deployment id's workflow for replicas; step names the update so that a retried
// activity is one update.
func (p *promotion) scaleTo(ctx workflow.Context, id string, replicas int, step string) error {
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, updateActivity), contract.ActivityScaleDeployment,
		contract.DeploymentUpdateInput{
			WorkflowID: contract.DeploymentWorkflowID(id), UpdateName: contract.UpdateScale,
			UpdateID: p.in.PromotionID + ":" + step, Request: contract.ScaleRequest{Replicas: replicas},
		}).Get(ctx, nil)
}

// candidateReady waits until the candidate has target ready replicas; ok is false when a
// cancel or a forced roll forward came first, which stops the wait.
func (p *promotion) candidateReady(ctx workflow.Context, target int) (ok bool, err error) {
	wctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	f := workflow.ExecuteActivity(workflow.WithActivityOptions(wctx, readyActivity), contract.ActivityWaitDeploymentReady,
		contract.WaitDeploymentReadyInput{
			WorkflowID: contract.DeploymentWorkflowID(p.res.CandidateDeploymentID), QueryName: contract.QueryStatus,
			Target: target, PollInterval: DeploymentPollInterval,
		})
	if err := workflow.Await(ctx, func() bool { return f.IsReady() || p.stopping() }); err != nil {
		return false, err
	}
	if !f.IsReady() {
		return false, nil
	}
	return true, f.Get(ctx, nil)
}

// rollBackRolling ends a rolling deploy that was cancelled (cause nil) or failed: the
// previous deployment is asked for its n replicas again and, unless the cancel was forced,
// waited for before the traffic goes back to it; then rollBack takes the candidate down.
func (p *promotion) rollBackRolling(ctx workflow.Context, begin contract.BeginPromotionResult, n int, cause error) (contract.PromotionResult, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	prev := begin.PreviousDeploymentID
	if err := p.scaleTo(dctx, prev, n, "rolling-previous-restore"); err != nil {
		workflow.GetLogger(ctx).Error("previous deployment not scaled back up", "deployment_id", prev, "err", err)
	} else if p.control != contract.UpdatePromotionForceCancel {
		if err := workflow.ExecuteActivity(workflow.WithActivityOptions(dctx, readyActivity), contract.ActivityWaitDeploymentReady,
			contract.WaitDeploymentReadyInput{
				WorkflowID: contract.DeploymentWorkflowID(prev), QueryName: contract.QueryStatus, Target: n,
				PollInterval: DeploymentPollInterval,
			}).Get(dctx, nil); err != nil {
			workflow.GetLogger(ctx).Error("previous deployment not ready again", "deployment_id", prev, "err", err)
		}
	}
	canceled := p.control == contract.UpdatePromotionCancel || p.control == contract.UpdatePromotionForceCancel
	if cause != nil && !canceled {
		return p.rollBack(ctx, modelplane.PromotionFailed, reasonOf(cause))
	}
	return p.cancel(ctx)
}
