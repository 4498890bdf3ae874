package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

const (
	// promotionControlTimeout bounds the wait for the workflow's answer to a control; the
	// request's own deadline wins when it is sooner. The workflow answers at once, so a
	// control that takes this long finds the workflow stuck.
	promotionControlTimeout = 15 * time.Second
	// forceCancelTimeout bounds what the API does itself to end a stuck promotion:
	// terminating its workflow and recording the end.
	forceCancelTimeout = 15 * time.Second
	// forceCancelScaleTimeout bounds the best-effort scale-down of a force-cancelled candidate.
	forceCancelScaleTimeout = 10 * time.Second
)

// errNoAnswer marks a control that the workflow did not answer in time.
var errNoAnswer = errors.New("the promotion workflow did not answer in time")

func (s *Server) cancelPromotion(c echo.Context) error {
	t, err := s.runningPromotion(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	res, err := s.sendControl(ctx, t, contract.UpdatePromotionCancel)
	if err != nil {
		return controlError(t, contract.UpdatePromotionCancel, err)
	}
	if !res.Success {
		return Errorf(http.StatusConflict, "%s", orDefault(res.Message, "the promotion of "+t.env+" cannot be cancelled now"))
	}
	if err := s.auditControl(c, t, "promotion.cancel", res); err != nil {
		return err
	}
	if res.Status.Ended() {
		// The workflow answers the control before it records the end; the answer waits for
		// the record, so that the environment a client reads next shows no promotion.
		s.awaitPromotionEnd(ctx, t.promotion.ID)
	}
	return c.JSON(http.StatusOK, apiv1.CancelPromotionV1{Status: res.Status, Message: res.Message})
}

func (s *Server) pausePromotion(c echo.Context) error {
	return s.promotionControl(c, contract.UpdatePromotionPause, "promotion.pause")
}

func (s *Server) resumePromotion(c echo.Context) error {
	return s.promotionControl(c, contract.UpdatePromotionResume, "promotion.resume")
}

func (s *Server) forceRollForwardPromotion(c echo.Context) error {
	return s.promotionControl(c, contract.UpdatePromotionForceRollForward, "promotion.force_roll_forward")
}

// promotionControl sends a control to the environment's running promotion and answers
// whether the workflow took it.
func (s *Server) promotionControl(c echo.Context, update, action string) error {
	t, err := s.runningPromotion(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	res, err := s.sendControl(ctx, t, update)
	if err != nil {
		return controlError(t, update, err)
	}
	if res.Success {
		if err := s.auditControl(c, t, action, res); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, apiv1.SuccessV1{Success: res.Success, Message: res.Message})
}

// forceCancelPromotion cancels the environment's running promotion, also when its workflow
// is stuck: when the workflow does not answer in time, or is gone while the database still
// shows the promotion running, the API terminates the workflow, records the promotion
// CANCELED, clears the environment's candidate and scales the candidate to zero itself.
func (s *Server) forceCancelPromotion(c echo.Context) error {
	t, err := s.runningPromotion(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	res, err := s.sendControl(ctx, t, contract.UpdatePromotionForceCancel)
	var notFound *serviceerror.NotFound
	var reason string
	switch {
	case err == nil:
		if !res.Success {
			return c.JSON(http.StatusOK, apiv1.SuccessV1{Success: false, Message: res.Message})
		}
		if err := s.auditControl(c, t, "promotion.force_cancel", res); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, apiv1.SuccessV1{Success: true, Message: res.Message})
	case errors.Is(err, errNoAnswer):
		reason = "its workflow did not answer in time"
	case errors.As(err, &notFound):
		reason = "its workflow is no longer running"
	default:
		return controlError(t, contract.UpdatePromotionForceCancel, err)
	}
	// From here the API ends the promotion itself, to the end even if the caller goes away.
	return s.forceCancelStuck(context.WithoutCancel(ctx), c, t, reason)
}

// forceCancelStuck ends a promotion whose workflow is stuck or gone, for reason. The
// workflow is terminated first, so that it cannot go on after the promotion is recorded
// CANCELED; when that fails nothing is changed.
func (s *Server) forceCancelStuck(ctx context.Context, c echo.Context, t promotionTarget, reason string) error {
	ctx, cancel := context.WithTimeout(ctx, forceCancelTimeout)
	defer cancel()
	s.log.WarnContext(ctx, "force-cancelling a stuck promotion", "model_id", t.model.ID, "environment", t.env,
		"promotion_id", t.promotion.ID, "reason", reason)
	err := s.deps.Temporal.TerminateWorkflow(ctx, t.workflowID, "", "force_cancel_promotion: "+reason)
	var notFound *serviceerror.NotFound
	if err != nil && !errors.As(err, &notFound) {
		return Errorf(http.StatusServiceUnavailable,
			"the promotion of %s is stuck (%s) and its workflow could not be terminated: %v; nothing was changed", t.env, reason, err)
	}
	p, err := store.ForceCancelPromotion(ctx, s.deps.DB, t.model.ID, t.env, "force-cancelled: "+reason)
	if errors.Is(err, store.ErrNotFound) {
		// The workflow finished the promotion after all, before it was terminated.
		ended, err := store.PromotionByID(ctx, s.deps.DB, t.promotion.ID)
		if err != nil {
			return err
		}
		if ended.Status == modelplane.PromotionCanceled {
			return c.JSON(http.StatusOK, apiv1.SuccessV1{Success: true, Message: "the promotion of " + t.env + " was cancelled"})
		}
		return Errorf(http.StatusConflict, "no promotion of environment %s is running: it ended %s", t.env, ended.Status)
	}
	if err != nil {
		return err
	}
	msg := "promotion force-cancelled; " + reason + ", so the API ended it: all traffic is back on the current deployment"
	details := store.JSONMap{"promotion_id": p.ID, "forced": true, "reason": reason}
	if cand, scale, err := s.candidateToScaleDown(ctx, p); err != nil {
		s.log.ErrorContext(ctx, "force-cancelled promotion: candidate not checked", "promotion_id", p.ID, "err", err)
		msg += "; the candidate was not scaled down"
	} else if cand != "" {
		details["candidate_deployment_id"] = cand
		if !scale {
			msg += fmt.Sprintf("; candidate deployment %s is kept as it is", cand)
		} else if err := s.scaleCandidateToZero(ctx, cand); err != nil {
			s.log.ErrorContext(ctx, "force-cancelled promotion: candidate not scaled to zero", "promotion_id", p.ID,
				"deployment_id", cand, "err", err)
			msg += fmt.Sprintf("; scaling candidate deployment %s to zero failed (%v): scale it down yourself", cand, err)
		} else {
			msg += fmt.Sprintf("; candidate deployment %s is scaled to zero", cand)
		}
	}
	if err := audit(ctx, s.deps.DB, c, t.model.ID, "promotion.force_cancel", t.env, details); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.SuccessV1{Success: true, Message: msg})
}

// candidateToScaleDown says which candidate a force-cancelled promotion leaves and whether
// the API scales it to zero: as the workflow's own cancel does, any candidate but the
// previous deployment and one that an environment serves.
func (s *Server) candidateToScaleDown(ctx context.Context, p store.Promotion) (string, bool, error) {
	if p.CandidateDeploymentID == nil || *p.CandidateDeploymentID == "" {
		return "", false, nil
	}
	cand := *p.CandidateDeploymentID
	if p.PreviousDeploymentID != nil && cand == *p.PreviousDeploymentID {
		return cand, false, nil
	}
	serves, err := store.DeploymentServes(ctx, s.deps.DB, p.ModelID, cand)
	return cand, !serves, err
}

// scaleCandidateToZero asks the candidate's Deployment workflow for zero replicas, waiting
// at most forceCancelScaleTimeout.
func (s *Server) scaleCandidateToZero(ctx context.Context, deploymentID string) error {
	ctx, cancel := context.WithTimeout(ctx, forceCancelScaleTimeout)
	defer cancel()
	return s.updateDeployment(ctx, deploymentID, contract.UpdateScale, contract.ScaleRequest{Replicas: 0})
}

// promotionTarget is the running promotion a control route acts on.
type promotionTarget struct {
	model      store.Model
	env        string
	promotion  store.Promotion
	workflowID string
}

// runningPromotion loads the route's own model, its environment (404) and the promotion
// running there (409 when none); Temporal must be connected (503).
func (s *Server) runningPromotion(c echo.Context) (promotionTarget, error) {
	m, err := s.ownModel(c)
	if err != nil {
		return promotionTarget{}, err
	}
	env := c.Param("env")
	if _, err := s.environment(c, m.ID, env); err != nil {
		return promotionTarget{}, err
	}
	if s.deps.Temporal == nil {
		return promotionTarget{}, Errorf(http.StatusServiceUnavailable, "Temporal is not connected")
	}
	p, err := store.RunningPromotion(c.Request().Context(), s.deps.DB, m.ID, env)
	if errors.Is(err, store.ErrNotFound) {
		return promotionTarget{}, Errorf(http.StatusConflict, "no promotion of environment %s is running", env)
	}
	if err != nil {
		return promotionTarget{}, err
	}
	return promotionTarget{model: m, env: env, promotion: p, workflowID: contract.PromotionWorkflowID(m.ID, env)}, nil
}

// sendControl sends a control to the promotion's workflow and waits for its answer, at
// most promotionControlTimeout. A control not answered by then is errNoAnswer.
func (s *Server) sendControl(parent context.Context, t promotionTarget, update string) (contract.PromotionControlResult, error) {
	ctx, cancel := context.WithTimeout(parent, promotionControlTimeout)
	defer cancel()
	var res contract.PromotionControlResult
	h, err := s.deps.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: t.workflowID, UpdateName: update,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &res)
	}
	// Out of time, ours or the request's; or Temporal's own long poll ran out while the
	// caller is still there.
	var timedOut *client.WorkflowUpdateServiceTimeoutOrCanceledError
	if err != nil && (errors.Is(ctx.Err(), context.DeadlineExceeded) || (errors.As(err, &timedOut) && parent.Err() == nil)) {
		err = fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	return res, err
}

// controlError maps a control's failure: no workflow (or a finished one) and a refusal by
// the workflow's validator are 409; a workflow that does not answer, or Temporal down, 503.
func controlError(t promotionTarget, update string, err error) error {
	var notFound *serviceerror.NotFound
	var appErr *temporal.ApplicationError
	switch {
	case errors.As(err, &notFound):
		return Errorf(http.StatusConflict,
			"no promotion of environment %s is running: its workflow has ended (force_cancel_promotion clears a promotion still shown running)", t.env)
	case errors.As(err, &appErr):
		return Errorf(http.StatusConflict, "%s", appErr.Message())
	case errors.Is(err, errNoAnswer):
		return Errorf(http.StatusServiceUnavailable,
			"the promotion of %s did not answer %s in time; retry, or use force_cancel_promotion", t.env, update)
	}
	return Errorf(http.StatusServiceUnavailable, "sending %s to the promotion of %s: %v", update, t.env, err)
}

// auditControl records a control the workflow took.
func (s *Server) auditControl(c echo.Context, t promotionTarget, action string, res contract.PromotionControlResult) error {
	return audit(c.Request().Context(), s.deps.DB, c, t.model.ID, action, t.env, store.JSONMap{
		"promotion_id": t.promotion.ID, "status": res.Status, "percent_traffic_to_new_version": res.Percent,
	})
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// awaitPromotionEnd waits, at most promotionControlTimeout, until the promotion's record
// shows it ended.
func (s *Server) awaitPromotionEnd(parent context.Context, id string) {
	ctx, cancel := context.WithTimeout(parent, promotionControlTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if p, err := store.PromotionByID(ctx, s.deps.DB, id); err != nil || p.Status.Ended() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
