package api

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// promoteDeployment promotes a deployment to production; the body is an
// apiv1.PromoteDeploymentRequest.
func (s *Server) promoteDeployment(c echo.Context) error {
	return s.promote(c, modelplane.ProductionEnvironment, "scale_down_previous_production", "")
}

// promoteToEnvironment promotes a deployment to the route's environment; the body is an
// apiv1.PromoteRequest.
func (s *Server) promoteToEnvironment(c echo.Context) error {
	return s.promote(c, c.Param("env"), "scale_down_previous_deployment", "deployment_id")
}

// promote starts the environment's Promotion workflow. Its ID is per environment with
// conflict policy FAIL, so a second promotion of the same environment is 409. The answer is
// the deployment being promoted; from development, the promotion makes a new deployment,
// which the environment lists as its candidate.
func (s *Server) promote(c echo.Context, env, scaleField, idField string) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	known := []string{scaleField, "preserve_env_instance_type"}
	if idField != "" {
		known = append(known, idField)
	}
	obj, err := readObject(c, known...)
	if err != nil {
		return err
	}
	// null, like leaving a field out, takes the spec's default (true for both).
	scaleDown, err := boolField(obj, scaleField, true)
	if err != nil {
		return err
	}
	preserve, err := boolField(obj, "preserve_env_instance_type", true)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	target, err := s.environment(c, m.ID, env)
	if err != nil {
		return err
	}
	var d store.DeploymentView
	if idField == "" {
		if d, err = s.deploymentRef(c, m.ID); err != nil {
			return err
		}
	} else {
		ref, given, err := stringField(obj, idField)
		if err != nil {
			return err
		}
		if !given || ref == "" {
			return Errorf(http.StatusBadRequest, "%s: required", idField)
		}
		d, err = store.DeploymentViewByRef(ctx, s.deps.DB, m.ID, ref)
		if errors.Is(err, store.ErrNotFound) {
			return Errorf(http.StatusNotFound, "deployment %q of model %s not found", ref, m.ID)
		}
		if err != nil {
			return err
		}
	}
	if d.Status == modelplane.DeploymentInactive {
		return Errorf(http.StatusUnprocessableEntity, "deployment %s is INACTIVE: activate it first", d.ID)
	}
	if err := checkShadowAgreement(ctx, s.deps.DB, target, d.ID); err != nil {
		return err
	}
	if err := s.checkPromotionRoom(ctx, m.WorkspaceID, target, d.Deployment); err != nil {
		return err
	}
	// preserve_env_instance_type is kept in the audit log but not acted on: a deployment runs
	// on what its own config.yaml asks for (docs/API.md).
	if err := s.startPromotionRecording(c, m, env, d.ID, scaleDown,
		store.JSONMap{"preserve_env_instance_type": preserve}); err != nil {
		return err
	}
	return s.deploymentJSON(c, d)
}

// checkShadowAgreement refuses (409) to promote an environment's shadow deployment into it
// while its promotion_settings.shadow_min_agreement is set and the shadow copies compared
// since the shadow settings last changed are fewer than shadow_min_copies, or agreed with
// the serving deployment's answers less often than that: equal / (equal + different +
// errors). Promoting any other deployment is not gated.
func checkShadowAgreement(ctx context.Context, db sqlx.QueryerContext, e store.Environment, deploymentID string) error {
	ps, sh := e.PromotionSettings, e.ShadowSettings
	minAgreement, gated := ps.ShadowMinAgreement.Get()
	if !gated || sh.DeploymentID == nil || *sh.DeploymentID != deploymentID {
		return nil
	}
	f, err := store.SumShadowStats(ctx, db, e.ModelID, e.Name, e.ShadowChangedAt)
	if err != nil {
		return err
	}
	measured := fmt.Sprintf("%.2f%% agreement over %d compared shadow copies (%d equal, %d different, %d errors) since %s",
		f.Agreement(), f.Compared(), f.Equal, f.Different, f.Errors, e.ShadowChangedAt.UTC().Format(time.RFC3339))
	switch {
	case f.Compared() < int64(ps.ShadowMinCopies):
		return Errorf(http.StatusConflict, "deployment %s is the shadow of %s and has %s: promotion_settings.shadow_min_copies asks for at least %d",
			deploymentID, e.Name, measured, ps.ShadowMinCopies)
	case f.Agreement() < minAgreement:
		return Errorf(http.StatusConflict, "deployment %s is the shadow of %s and has %s: promotion_settings.shadow_min_agreement asks for at least %g%%",
			deploymentID, e.Name, measured, minAgreement)
	}
	return nil
}

// startPromotion starts the environment's Promotion workflow for a deployment and records
// it in the audit log. A promotion of the environment already running is 409.
func (s *Server) startPromotion(c echo.Context, m store.Model, env, deploymentID string, scaleDown bool) error {
	return s.startPromotionRecording(c, m, env, deploymentID, scaleDown, nil)
}

// startPromotionRecording is startPromotion with more of the request recorded in the audit
// event's details.
func (s *Server) startPromotionRecording(c echo.Context, m store.Model, env, deploymentID string, scaleDown bool, extra store.JSONMap) error {
	ctx := c.Request().Context()
	if s.deps.Temporal == nil {
		return Errorf(http.StatusServiceUnavailable, "Temporal is not connected")
	}
	id := modelplane.NewID(8)
	opts := client.StartWorkflowOptions{
		ID: contract.PromotionWorkflowID(m.ID, env), TaskQueue: contract.TaskQueue,
		Memo:                                     map[string]any{contract.PromotionIDMemo: id},
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			contract.ModelIDAttr.ValueSet(m.ID), contract.EnvironmentAttr.ValueSet(env),
			contract.DeploymentIDAttr.ValueSet(deploymentID)),
	}
	in := contract.PromotionInput{
		PromotionID: id, ModelID: m.ID, WorkspaceID: m.WorkspaceID, Environment: env,
		SourceDeploymentID: deploymentID, ScaleDownPrevious: scaleDown,
	}
	_, err := s.deps.Temporal.ExecuteWorkflow(ctx, opts, contract.PromotionWorkflowType, in)
	if alreadyStarted(err) {
		if !s.promotionEnding(ctx, opts.ID) {
			return Errorf(http.StatusConflict, "a promotion of %s is already running", env)
		}
		// The previous promotion has ended (the environment shows none) and its workflow is
		// only tidying up, scaling down what it left behind: wait a little for it rather than
		// refuse a promotion the user was just shown is possible.
		wctx, cancel := context.WithTimeout(ctx, endingPromotionWait)
		_ = s.deps.Temporal.GetWorkflow(wctx, opts.ID, "").Get(wctx, nil)
		cancel()
		_, err = s.deps.Temporal.ExecuteWorkflow(ctx, opts, contract.PromotionWorkflowType, in)
		if alreadyStarted(err) {
			c.Response().Header().Set(echo.HeaderRetryAfter, "5")
			return Errorf(http.StatusConflict, "the previous promotion of %s has ended and is still scaling down what it replaced; try again shortly", env)
		}
	}
	if err != nil {
		return Errorf(http.StatusServiceUnavailable, "starting the promotion: %v", err)
	}
	details := store.JSONMap{"deployment_id": deploymentID}
	maps.Copy(details, extra)
	return audit(ctx, s.deps.DB, c, m.ID, "promotion.start", env, details)
}

// endingPromotionWait bounds how long a promotion waits for the environment's previous one,
// already ended, to finish tidying up.
const endingPromotionWait = 15 * time.Second

func alreadyStarted(err error) bool {
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	return errors.As(err, &started) || temporal.IsWorkflowExecutionAlreadyStartedError(err)
}

// promotionEnding reports whether the environment's running promotion workflow is one whose
// promotion has already ended in the record: it is only scaling down what it left behind.
// One that has not written its record yet, or started without the memo, is still running.
func (s *Server) promotionEnding(ctx context.Context, workflowID string) bool {
	desc, err := s.deps.Temporal.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return false
	}
	payload := desc.GetWorkflowExecutionInfo().GetMemo().GetFields()[contract.PromotionIDMemo]
	var id string
	if payload == nil || converter.GetDefaultDataConverter().FromPayload(payload, &id) != nil {
		return false
	}
	p, err := store.PromotionByID(ctx, s.deps.DB, id)
	return err == nil && p.Status.Ended()
}
