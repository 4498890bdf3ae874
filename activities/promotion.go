package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

func refused(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), contract.ErrTypePromotionRefused, nil)
}

// BeginPromotion checks that the promotion may run and records it in status RELEASING. An
// inactive (or deleted) published source, a source that already serves the environment and
// a second running promotion of the environment are refused non-retryably.
func (a *Activities) BeginPromotion(ctx context.Context, in contract.BeginPromotionInput) (contract.BeginPromotionResult, error) {
	p, err := store.PromotionByID(ctx, a.DB, in.PromotionID)
	switch {
	case err == nil:
		// An earlier attempt recorded it; the previous deployment is the one it saw.
		return a.promotionCourse(ctx, in, p.Settings, p.PreviousDeploymentID)
	case !errors.Is(err, store.ErrNotFound):
		return contract.BeginPromotionResult{}, err
	}

	env, err := store.EnvironmentByName(ctx, a.DB, in.ModelID, in.Environment)
	if errors.Is(err, store.ErrNotFound) {
		return contract.BeginPromotionResult{}, refused("environment %s of model %s does not exist", in.Environment, in.ModelID)
	}
	if err != nil {
		return contract.BeginPromotionResult{}, err
	}
	src, err := store.DeploymentByID(ctx, a.DB, in.ModelID, in.SourceDeploymentID)
	if errors.Is(err, store.ErrNotFound) {
		return contract.BeginPromotionResult{}, refused("deployment %s of model %s does not exist", in.SourceDeploymentID, in.ModelID)
	}
	if err != nil {
		return contract.BeginPromotionResult{}, err
	}
	if !src.IsDevelopment && src.Status == modelplane.DeploymentInactive {
		return contract.BeginPromotionResult{}, refused("deployment %s is INACTIVE; activate it first", src.ID)
	}
	if !src.IsDevelopment && !env.PromotionSettings.RedeployOnPromotion &&
		env.CurrentDeploymentID != nil && *env.CurrentDeploymentID == src.ID {
		return contract.BeginPromotionResult{}, refused("deployment %s already serves environment %s", src.ID, in.Environment)
	}
	_, err = store.CreatePromotion(ctx, a.DB, store.NewPromotion{
		ID: in.PromotionID, ModelID: in.ModelID, Environment: in.Environment,
		SourceDeploymentID: src.ID, PreviousDeploymentID: env.CurrentDeploymentID,
		Settings: env.PromotionSettings, WorkflowID: in.WorkflowID,
	})
	if errors.Is(err, store.ErrConflict) {
		return contract.BeginPromotionResult{}, refused("another promotion of environment %s is running", in.Environment)
	}
	if err != nil {
		return contract.BeginPromotionResult{}, err
	}
	activity.GetLogger(ctx).Info("promotion begun", "model_id", in.ModelID, "environment", in.Environment,
		"deployment_id", src.ID)
	return a.promotionCourse(ctx, in, env.PromotionSettings, env.CurrentDeploymentID)
}

// promotionCourse gathers what the workflow needs about the source and previous deployments.
func (a *Activities) promotionCourse(ctx context.Context, in contract.BeginPromotionInput, ps settings.PromotionSettings, previousID *string) (contract.BeginPromotionResult, error) {
	out := contract.BeginPromotionResult{Settings: ps}
	src, err := store.DeploymentByID(ctx, a.DB, in.ModelID, in.SourceDeploymentID)
	if errors.Is(err, store.ErrNotFound) {
		return out, refused("deployment %s of model %s does not exist", in.SourceDeploymentID, in.ModelID)
	}
	if err != nil {
		return out, err
	}
	out.SourceIsDevelopment = src.IsDevelopment
	if previousID == nil {
		return out, nil
	}
	prev, err := store.DeploymentViewByRef(ctx, a.DB, in.ModelID, *previousID)
	if errors.Is(err, store.ErrNotFound) {
		// A deleted previous deployment serves nothing: the promotion goes on as if there were none.
		return out, nil
	}
	if err != nil {
		return out, err
	}
	as := prev.AutoscalingSettings
	out.PreviousDeploymentID, out.PreviousAutoscaling, out.PreviousReady = prev.ID, &as, prev.ActiveReplicaCount
	return out, nil
}

// CreateCandidateDeployment makes the candidate deployment when the promotion needs a new
// one, and records the candidate on the promotion and its environment. A retry finds the
// deployment the first attempt made.
func (a *Activities) CreateCandidateDeployment(ctx context.Context, in contract.CreateCandidateDeploymentInput) (contract.CreateCandidateDeploymentResult, error) {
	var out contract.CreateCandidateDeploymentResult
	// A copy of the development deployment is of what it runs, synced patches included; the
	// archive for that is made before the transaction, which it would hold up.
	var patched *string
	if in.Copy {
		src, err := store.DeploymentByID(ctx, a.DB, in.ModelID, in.SourceDeploymentID)
		if err == nil && src.IsDevelopment && src.ArchiveID != nil && *src.ArchiveID != "" {
			id, withConfig, err := a.patchedArchive(ctx, src)
			if err != nil {
				return out, err
			}
			if withConfig {
				patched = &id
			}
		}
	}
	err := store.WithTx(ctx, a.DB, func(tx *sqlx.Tx) error {
		src, err := store.DeploymentByID(ctx, tx, in.ModelID, in.SourceDeploymentID)
		if errors.Is(err, store.ErrNotFound) && in.Copy {
			// The source may have gone after an earlier attempt made the copy.
			src, err = store.DeploymentByID(ctx, tx, in.ModelID, in.CandidateID)
			if err == nil {
				out = contract.CreateCandidateDeploymentResult{DeploymentID: src.ID, Name: src.Name}
				return store.SetPromotionCandidate(ctx, tx, in.PromotionID, src.ID)
			}
		}
		if errors.Is(err, store.ErrNotFound) {
			return refused("deployment %s of model %s does not exist", in.SourceDeploymentID, in.ModelID)
		}
		if err != nil {
			return err
		}
		cand := src
		if in.Copy {
			if src.ArchiveID == nil || *src.ArchiveID == "" {
				return refused("deployment %s has no model archive to promote", src.ID)
			}
			// The copy runs what the source runs: its archive and the config its create
			// request gave, or the archive made of its synced patches, whose config.yaml is
			// the one they led to.
			nd := store.NewDeployment{
				ModelID: in.ModelID, WorkspaceID: src.WorkspaceID, ArchiveID: src.ArchiveID,
				Config: src.Config, RawConfig: src.RawConfig, AutoscalingSettings: in.AutoscalingSettings,
				DeployTimeoutMinutes: src.DeployTimeoutMinutes, GPUsPerReplica: src.GPUsPerReplica,
			}
			if patched != nil {
				nd.ArchiveID, nd.Config, nd.RawConfig = patched, nil, nil
			}
			cand, err = store.CreateDeploymentWithID(ctx, tx, in.CandidateID, nd)
			if err != nil {
				return err
			}
		}
		out = contract.CreateCandidateDeploymentResult{DeploymentID: cand.ID, Name: cand.Name}
		return store.SetPromotionCandidate(ctx, tx, in.PromotionID, cand.ID)
	})
	return out, err
}

// StartDeploymentWorkflow starts a deployment's workflow on its own, so it outlives the
// promotion that started it. One already running is left as it is.
func (a *Activities) StartDeploymentWorkflow(ctx context.Context, in contract.StartDeploymentWorkflowInput) error {
	_, err := a.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       in.WorkflowID,
		TaskQueue:                in.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, in.WorkflowType, in.Input)
	return err
}

// ScaleDeployment sends a scale update to a Deployment workflow and waits until it is done.
func (a *Activities) ScaleDeployment(ctx context.Context, in contract.DeploymentUpdateInput) error {
	if in.DropFloorOf != "" {
		if err := store.DropMinReplica(ctx, a.DB, in.DropFloorOf); err != nil {
			return fmt.Errorf("setting min_replica of deployment %s to 0: %w", in.DropFloorOf, err)
		}
	}
	return a.updateDeployment(ctx, in)
}

// DeactivateDeployment sends a deactivate update to a Deployment workflow and waits until it
// is done.
func (a *Activities) DeactivateDeployment(ctx context.Context, in contract.DeploymentUpdateInput) error {
	return a.updateDeployment(ctx, in)
}

func (a *Activities) updateDeployment(ctx context.Context, in contract.DeploymentUpdateInput) error {
	var args []any
	if in.Request != nil {
		args = []any{in.Request}
	}
	// An update may wait minutes for the deployment's other work; heartbeats while it waits
	// let a lost worker be noticed in seconds rather than at the start-to-close limit.
	stop := heartbeatEvery(ctx, 5*time.Second)
	defer stop()
	stage := client.WorkflowUpdateStageCompleted
	if in.AcceptedOnly {
		stage = client.WorkflowUpdateStageAccepted
	}
	h, err := a.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		UpdateID:     in.UpdateID,
		WorkflowID:   in.WorkflowID,
		UpdateName:   in.UpdateName,
		Args:         args,
		WaitForStage: stage,
	})
	switch {
	case err != nil:
	case in.AcceptedOnly:
		// A refused update comes back completed with the validator's error. Get on an expired
		// context answers at once: that error, nil when the update is already done, or a
		// timeout when it is accepted and still running, which is what was asked for.
		expired, cancel := context.WithCancel(context.Background())
		cancel()
		var pending *client.WorkflowUpdateServiceTimeoutOrCanceledError
		if err = h.Get(expired, nil); errors.As(err, &pending) {
			err = nil
		}
	default:
		err = h.Get(ctx, nil)
	}
	return deploymentError(in.WorkflowID, in.UpdateName, err)
}

// heartbeatEvery records an activity heartbeat every interval until the returned function is
// called.
func heartbeatEvery(ctx context.Context, interval time.Duration) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}

// deploymentError makes the failures that retrying cannot fix (the workflow is gone, the
// update was refused or failed) non-retryable.
func deploymentError(workflowID, what string, err error) error {
	if err == nil {
		return nil
	}
	var notFound *serviceerror.NotFound
	var appErr *temporal.ApplicationError
	switch {
	case errors.As(err, &notFound):
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s: workflow %s not found", what, workflowID), contract.ErrTypeDeploymentRefused, err)
	case errors.As(err, &appErr):
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s of %s: %s", what, workflowID, appErr.Message()), contract.ErrTypeDeploymentRefused, err)
	}
	return err
}

// defaultPollInterval is how often WaitDeploymentReady asks when the input does not say.
const defaultPollInterval = 2 * time.Second

// WaitDeploymentReady polls the Deployment workflow's status, heartbeating, until Target
// replicas are READY. A status it will not get past by itself (modelplane.DeploymentStatus.Stuck)
// ends it non-retryably with contract.ErrTypeDeploymentFailed.
func (a *Activities) WaitDeploymentReady(ctx context.Context, in contract.WaitDeploymentReadyInput) (contract.WaitDeploymentReadyResult, error) {
	interval := in.PollInterval
	if interval <= 0 {
		interval = defaultPollInterval
	}
	for {
		var st contract.WaitDeploymentReadyResult
		v, err := a.Temporal.QueryWorkflow(ctx, in.WorkflowID, "", in.QueryName)
		if err == nil {
			err = v.Get(&st)
		}
		if err != nil {
			var appErr *temporal.ApplicationError
			if derr := deploymentError(in.WorkflowID, "status", err); errors.As(derr, &appErr) && appErr.NonRetryable() {
				return st, derr
			}
			activity.GetLogger(ctx).Warn("polling deployment", "workflow_id", in.WorkflowID, "err", err)
		} else {
			activity.RecordHeartbeat(ctx, st)
			if st.Ready >= in.Target {
				return st, nil
			}
			if st.Status.Stuck() {
				msg := fmt.Sprintf("candidate deployment is %s", st.Status)
				if st.Reason != "" {
					msg += ": " + st.Reason
				}
				return st, temporal.NewNonRetryableApplicationError(msg, contract.ErrTypeDeploymentFailed, nil)
			}
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// SwitchEnvironment gives the candidate the environment's autoscaling and request
// backpressure settings, points the environment at it, marks the promotion SUCCEEDED with all
// traffic on the candidate, and tells gateways, all in one transaction. A repeat after
// success changes nothing.
func (a *Activities) SwitchEnvironment(ctx context.Context, in contract.SwitchEnvironmentInput) error {
	return store.WithTx(ctx, a.DB, func(tx *sqlx.Tx) error {
		p, err := store.PromotionByID(ctx, tx, in.PromotionID)
		if err != nil {
			return err
		}
		if p.Status == modelplane.PromotionSucceeded {
			return nil
		}
		if p.FinishedAt != nil {
			return refused("promotion %s is %s already", p.ID, p.Status)
		}
		// The new deployment takes the settings the environment has: the previous
		// deployment's, or the environment's own when it served none.
		err = store.GiveEnvironmentSettings(ctx, tx, in.ModelID, in.Environment, in.CandidateDeploymentID)
		if err == nil {
			err = store.SwitchEnvironmentDeployment(ctx, tx, in.ModelID, in.Environment, in.CandidateDeploymentID)
		}
		if errors.Is(err, store.ErrNotFound) {
			return refused("environment %s or deployment %s is gone", in.Environment, in.CandidateDeploymentID)
		}
		if err != nil {
			return err
		}
		if err := store.SetPromotionStatus(ctx, tx, in.PromotionID, modelplane.PromotionSucceeded, 100, "", true); err != nil {
			return err
		}
		return store.NotifyRoutes(ctx, tx, "environment:"+in.ModelID+":"+in.Environment)
	})
}

// FinishPromotion records the promotion's end (normally FAILED with the reason) and clears
// the environment's candidate; the environment keeps its current deployment. A promotion
// never recorded, or already finished, is left as it is.
func (a *Activities) FinishPromotion(ctx context.Context, in contract.FinishPromotionInput) error {
	return store.WithTx(ctx, a.DB, func(tx *sqlx.Tx) error {
		p, err := store.PromotionByID(ctx, tx, in.PromotionID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if p.FinishedAt != nil {
			return nil
		}
		if err := store.SetPromotionStatus(ctx, tx, in.PromotionID, in.Status, 0, in.ErrorMessage, true); err != nil {
			return err
		}
		// The row knows the candidate even when the workflow never learnt it.
		cand := in.CandidateDeploymentID
		if p.CandidateDeploymentID != nil {
			cand = *p.CandidateDeploymentID
		}
		if cand == "" {
			return nil
		}
		return store.ClearEnvironmentCandidate(ctx, tx, p.ModelID, p.Environment, cand)
	})
}

// SetPromotionProgress records the promotion's status and the traffic share of its candidate,
// which gateways apply on the notification, and an audit event saying so. A promotion
// already finished is left as it is.
func (a *Activities) SetPromotionProgress(ctx context.Context, in contract.SetPromotionProgressInput) error {
	return store.WithTx(ctx, a.DB, func(tx *sqlx.Tx) error {
		p, err := store.PromotionByID(ctx, tx, in.PromotionID)
		if err != nil {
			return err
		}
		if p.FinishedAt != nil {
			return nil
		}
		if err := store.SetPromotionStatus(ctx, tx, in.PromotionID, in.Status, in.Percent, "", false); err != nil {
			return err
		}
		return store.RecordAudit(ctx, tx, store.AuditEvent{
			WorkspaceID: in.WorkspaceID, ModelID: in.ModelID, Actor: "promotion:" + in.PromotionID,
			Action: in.Event, Target: in.Environment,
			Details: store.JSONMap{"status": in.Status, "percent_traffic_to_new_version": in.Percent, "stage": in.Stage},
		})
	})
}

// sampleLag is how long after a second its load samples are surely written: gateways write
// the second that ended at each wall-clock second.
const sampleLag = 1500 * time.Millisecond

// AnalyzeStage compares the candidate's and the current deployment's error rate and p99
// latency over the stage, from the gateways' load samples. It waits until the samples of
// the stage's last second are written.
func (a *Activities) AnalyzeStage(ctx context.Context, in contract.AnalyzeStageInput) (contract.AnalyzeStageResult, error) {
	if wait := time.Until(in.To.Add(sampleLag)); wait > 0 {
		select {
		case <-ctx.Done():
			return contract.AnalyzeStageResult{}, ctx.Err()
		case <-time.After(wait):
		}
	}
	var out contract.AnalyzeStageResult
	var err error
	if out.Candidate, err = store.DeploymentFigures(ctx, a.DB, in.CandidateID, in.From, in.To); err != nil {
		return out, err
	}
	if out.Current, err = store.DeploymentFigures(ctx, a.DB, in.CurrentID, in.From, in.To); err != nil {
		return out, err
	}
	out.Breach, out.Reason = JudgeStage(in.Analysis, out.Candidate, out.Current)
	out.Enough = out.Candidate.Completed >= in.Analysis.MinRequestsPerStage && out.Current.Completed >= in.Analysis.MinRequestsPerStage
	if !out.Enough {
		out.Breach = false
	}
	return out, nil
}

// JudgeStage says whether the candidate did worse than the analysis allows, and how.
func JudgeStage(c settings.CanaryAnalysis, cand, cur modelplane.Figures) (bool, string) {
	figures := fmt.Sprintf("candidate %d requests, %.1f%% errors, p99 %s; current %d requests, %.1f%% errors, p99 %s",
		cand.Completed, 100*cand.ErrorRate(), cand.P99, cur.Completed, 100*cur.ErrorRate(), cur.P99)
	if inc := cand.ErrorRate() - cur.ErrorRate(); inc > c.MaxErrorRateIncrease {
		return true, fmt.Sprintf("error rate up %.1f points (allowed %.1f): %s", 100*inc, 100*c.MaxErrorRateIncrease, figures)
	}
	if cur.P99 > 0 && c.MaxP99LatencyRatio > 0 && float64(cand.P99) > float64(cur.P99)*c.MaxP99LatencyRatio {
		return true, fmt.Sprintf("p99 latency %.2fx the current deployment's (allowed %.2fx): %s",
			float64(cand.P99)/float64(cur.P99), c.MaxP99LatencyRatio, figures)
	}
	return false, figures
}

// ScaleDownCandidate scales a rolled-back candidate to zero (it is kept), unless it serves an
// environment of its own: a deployment promoted as it is may be another environment's.
func (a *Activities) ScaleDownCandidate(ctx context.Context, in contract.ScaleDownCandidateInput) error {
	serves, err := store.DeploymentServes(ctx, a.DB, in.ModelID, in.DeploymentID)
	if err != nil {
		return err
	}
	if serves {
		activity.GetLogger(ctx).Info("rolled-back candidate serves an environment; left running", "deployment_id", in.DeploymentID)
		return nil
	}
	return a.ScaleDeployment(ctx, in.DeploymentUpdateInput)
}
