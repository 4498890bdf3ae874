package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

var modelName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,255}$`)

// source is the model_archive source of a create request.
type source struct {
	Name       string
	ArchiveID  string
	Deployment string // the deployment's name; empty takes deployment-N
}

// readSource reads and checks `source`; needName says whether source.name is required (a new
// model) or refused (a model that exists).
func readSource(raw json.RawMessage, needName bool) (source, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return source{}, Errorf(http.StatusBadRequest, "source: must be an object")
	}
	var src source
	for k, v := range obj {
		switch k {
		case "kind":
			var kind string
			if json.Unmarshal(v, &kind) != nil || kind != apiv1.SourceKindModelArchive {
				return src, Errorf(http.StatusBadRequest, `source.kind: must be "model_archive"`)
			}
		case "name":
			if !needName {
				return src, Errorf(http.StatusBadRequest, "source.name: the model exists; a deployment takes no model name")
			}
			if json.Unmarshal(v, &src.Name) != nil || !modelName.MatchString(src.Name) {
				return src, Errorf(http.StatusBadRequest, "source.name: use 1-255 of letters, digits, '.', '_' or '-'")
			}
		case "archive_id":
			if json.Unmarshal(v, &src.ArchiveID) != nil || src.ArchiveID == "" {
				return src, Errorf(http.StatusBadRequest, "source.archive_id: must be the id POST /v1/archives returned")
			}
		case "deployment":
			var d map[string]json.RawMessage
			if json.Unmarshal(v, &d) != nil {
				return src, Errorf(http.StatusBadRequest, "source.deployment: must be an object")
			}
			for dk, dv := range d {
				switch dk {
				case "name":
					if json.Unmarshal(dv, &src.Deployment) != nil || !deploymentName.MatchString(src.Deployment) {
						return src, Errorf(http.StatusBadRequest, "source.deployment.name: use 1-255 of letters, digits, '.', '_' or '-'")
					}
				case "config":
					var cfg map[string]any
					if json.Unmarshal(dv, &cfg) != nil {
						return src, Errorf(http.StatusBadRequest, "source.deployment.config: must be an object")
					}
					if len(cfg) > 0 {
						return src, Errorf(http.StatusUnprocessableEntity, "source.deployment.config: overriding config.yaml at deploy time is not supported; change config.yaml and upload the package again")
					}
				default:
					return src, Errorf(http.StatusBadRequest, "source.deployment.%s: unknown field", dk)
				}
			}
		default:
			return src, Errorf(http.StatusBadRequest, "source.%s: unknown field", k)
		}
	}
	switch {
	case needName && src.Name == "":
		return src, Errorf(http.StatusBadRequest, "source.name: required")
	case src.ArchiveID == "":
		return src, Errorf(http.StatusBadRequest, "source.archive_id: required")
	}
	return src, nil
}

// createRequest is the part of both create routes after `source`.
type createRequest struct {
	source      source
	development bool
	environment string // deploy straight to it: a promotion of the new deployment
}

func readCreate(c echo.Context, needName bool) (createRequest, error) {
	obj, err := readObject(c, "source", "development", "environment")
	if err != nil {
		return createRequest{}, err
	}
	var req createRequest
	raw, ok := obj["source"]
	if !ok {
		return req, Errorf(http.StatusBadRequest, "source: required")
	}
	if req.source, err = readSource(raw, needName); err != nil {
		return req, err
	}
	if v, ok := obj["development"]; ok && json.Unmarshal(v, &req.development) != nil {
		return req, Errorf(http.StatusBadRequest, "development: must be true or false")
	}
	if v, ok := obj["environment"]; ok && string(v) != "null" {
		if json.Unmarshal(v, &req.environment) != nil || !environmentName.MatchString(req.environment) {
			return req, Errorf(http.StatusBadRequest, "environment: must be an environment name")
		}
	}
	if req.development && req.environment != "" {
		return req, Errorf(http.StatusBadRequest, "environment: the development deployment is not deployed to an environment; promote it instead")
	}
	if req.development && req.source.Deployment != "" {
		return req, Errorf(http.StatusBadRequest, "source.deployment.name: the development deployment is always named development")
	}
	return req, nil
}

// createModel makes a model, its production environment and its first deployment, and starts
// the deployment's workflow; the body is an apiv1.CreateModelRequest.
func (s *Server) createModel(c echo.Context) error {
	req, err := readCreate(c, true)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	p := principal(c)
	if req.environment != "" && req.environment != modelplane.ProductionEnvironment {
		return Errorf(http.StatusNotFound, "environment %q not found: a new model has only production", req.environment)
	}
	if err := s.requireArchive(ctx, p.WorkspaceID, req.source.ArchiveID); err != nil {
		return err
	}
	var m store.Model
	var d store.Deployment
	err = store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		var err error
		if m, err = store.CreateModel(ctx, tx, p.WorkspaceID, req.source.Name); err != nil {
			return err
		}
		if d, err = s.insertDeployment(ctx, tx, m, req); err != nil {
			return err
		}
		return audit(ctx, tx, c, m.ID, "model.create", m.ID, store.JSONMap{"deployment_id": d.ID, "archive_id": req.source.ArchiveID})
	})
	if err != nil {
		return err
	}
	if err := s.startDeployment(ctx, d); err != nil {
		// Nothing may be left half made: without its workflow the deployment would never run.
		_ = store.DeleteModel(context.WithoutCancel(ctx), s.deps.DB, p.WorkspaceID, m.ID)
		return err
	}
	if req.environment != "" {
		// The promotion waits for the deployment to be ready before it switches traffic.
		if err := s.startPromotion(c, m, req.environment, d.ID, true); err != nil {
			return err
		}
	}
	return s.created(c, m.ID, d.ID)
}

// createDeployment adds a deployment to a model: a published one, or the development
// deployment (replacing the one there is); the body is an apiv1.CreateDeploymentRequest.
func (s *Server) createDeployment(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	req, err := readCreate(c, false)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.requireArchive(ctx, m.WorkspaceID, req.source.ArchiveID); err != nil {
		return err
	}
	if req.environment != "" {
		// Refused before anything is made: the environment must exist and be free.
		if _, err := s.environment(c, m.ID, req.environment); err != nil {
			return err
		}
		if _, err := store.RunningPromotion(ctx, s.deps.DB, m.ID, req.environment); err == nil {
			return Errorf(http.StatusConflict, "a promotion of %s is already running", req.environment)
		}
	}
	if req.development {
		old, err := store.DeploymentViewByRef(ctx, s.deps.DB, m.ID, modelplane.DevelopmentName)
		switch {
		case err == nil:
			// Replacing the development deployment may fail requests in flight; that is
			// allowed for development only.
			if err := s.updateDeployment(ctx, old.ID, contract.UpdateDelete, nil); err != nil {
				return err
			}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	var d store.Deployment
	err = store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		var err error
		if d, err = s.insertDeployment(ctx, tx, m, req); err != nil {
			return err
		}
		return audit(ctx, tx, c, m.ID, "deployment.create", d.ID, store.JSONMap{"archive_id": req.source.ArchiveID, "development": req.development})
	})
	if errors.Is(err, store.ErrConflict) {
		return Errorf(http.StatusConflict, "model %s already has a deployment named %q", m.ID, req.source.Deployment)
	}
	if err != nil {
		return err
	}
	if err := s.startDeployment(ctx, d); err != nil {
		_ = store.MarkDeploymentDeleted(context.WithoutCancel(ctx), s.deps.DB, m.ID, d.ID)
		return err
	}
	if req.environment != "" {
		if err := s.startPromotion(c, m, req.environment, d.ID, true); err != nil {
			return err
		}
	}
	return s.created(c, m.ID, d.ID)
}

// requireArchive checks that the workspace uploaded the archive a create request names.
func (s *Server) requireArchive(ctx context.Context, workspaceID, id string) error {
	_, err := store.ArchiveByID(ctx, s.deps.DB, workspaceID, id)
	if errors.Is(err, store.ErrNotFound) {
		return Errorf(http.StatusBadRequest, "source.archive_id: no archive %q in this workspace; upload it with POST /v1/archives", id)
	}
	return err
}

// insertDeployment writes the deployment row. Autoscaling starts from the defaults (the
// development deployment's capped at one replica).
func (s *Server) insertDeployment(ctx context.Context, tx *sqlx.Tx, m store.Model, req createRequest) (store.Deployment, error) {
	as := settings.DefaultAutoscalingSettings()
	if req.development {
		as = settings.ForDevelopment(as)
	}
	archive := req.source.ArchiveID
	return store.CreateDeployment(ctx, tx, store.NewDeployment{
		ModelID: m.ID, WorkspaceID: m.WorkspaceID, Name: req.source.Deployment,
		IsDevelopment: req.development, ArchiveID: &archive, AutoscalingSettings: as,
	})
}

// startDeployment starts the deployment's workflow with one replica.
func (s *Server) startDeployment(ctx context.Context, d store.Deployment) error {
	if s.deps.Temporal == nil {
		return Errorf(http.StatusServiceUnavailable, "Temporal is not connected")
	}
	_, err := s.deps.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: contract.DeploymentWorkflowID(d.ID), TaskQueue: contract.TaskQueue,
		TypedSearchAttributes: temporalAttrs(d),
	}, contract.DeploymentWorkflowType, contract.DeploymentInput{DeploymentID: d.ID, ModelID: d.ModelID, Replicas: 1})
	if err != nil {
		return Errorf(http.StatusServiceUnavailable, "starting the deployment's workflow: %v", err)
	}
	return nil
}

func (s *Server) created(c echo.Context, modelID, deploymentID string) error {
	ctx := c.Request().Context()
	m, err := store.ModelByID(ctx, s.deps.DB, principal(c).WorkspaceID, modelID)
	if err != nil {
		return err
	}
	v, err := store.DeploymentViewByRef(ctx, s.deps.DB, modelID, deploymentID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, apiv1.CreatedV1{Model: modelV1(m), Deployment: deploymentV1(v)})
}

// updateDeployment sends an Update to a deployment's workflow and waits for its outcome. A
// validator's refusal is 422 with its reason.
func (s *Server) updateDeployment(ctx context.Context, deploymentID, name string, arg any) error {
	var st contract.DeploymentStatus
	return s.updateDeploymentInto(ctx, deploymentID, name, arg, &st)
}

// updateDeploymentInto is updateDeployment decoding the update's result into out.
func (s *Server) updateDeploymentInto(ctx context.Context, deploymentID, name string, arg, out any) error {
	if s.deps.Temporal == nil {
		return Errorf(http.StatusServiceUnavailable, "Temporal is not connected")
	}
	args := []any{}
	if arg != nil {
		args = append(args, arg)
	}
	h, err := s.deps.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: contract.DeploymentWorkflowID(deploymentID), UpdateName: name, Args: args,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, out)
	}
	var notFound *serviceerror.NotFound
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &notFound):
		return Errorf(http.StatusServiceUnavailable, "deployment %s has no running workflow", deploymentID)
	case errors.As(err, &appErr):
		// The workflow refused the change (its validator or handler said why).
		return Errorf(http.StatusUnprocessableEntity, "%s", appErr.Message())
	}
	return fmt.Errorf("%s of deployment %s: %w", name, deploymentID, err)
}

func (s *Server) activateDeployment(c echo.Context) error {
	return s.lifecycle(c, contract.UpdateActivate, "deployment.activate")
}

func (s *Server) deactivateDeployment(c echo.Context) error {
	return s.lifecycle(c, contract.UpdateDeactivate, "deployment.deactivate")
}

// lifecycle activates or deactivates a deployment. Any deployment may be deactivated, the one
// serving production included: its environments then answer 404 until it is activated again
// or another deployment is promoted.
func (s *Server) lifecycle(c echo.Context, update, action string) error {
	m, d, err := s.ownDeployment(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.updateDeployment(ctx, d.ID, update, nil); err != nil {
		return err
	}
	if err := audit(ctx, s.deps.DB, c, m.ID, action, d.ID, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.SuccessV1{Success: true})
}

// deleteDeployment stops a deployment and removes it; the one serving production is refused.
func (s *Server) deleteDeployment(c echo.Context) error {
	m, d, err := s.ownDeployment(c)
	if err != nil {
		return err
	}
	if d.IsProduction {
		return Errorf(http.StatusUnprocessableEntity, "deployment %s serves production and cannot be deleted; promote another deployment first", d.ID)
	}
	ctx := c.Request().Context()
	if err := s.updateDeployment(ctx, d.ID, contract.UpdateDelete, nil); err != nil {
		return err
	}
	if err := audit(ctx, s.deps.DB, c, m.ID, "deployment.delete", d.ID, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.DeletedDeploymentV1{ID: d.ID, Deleted: true, ModelID: m.ID})
}

// deleteModel stops every deployment of the model and removes it with its environments.
func (s *Server) deleteModel(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	views, err := store.ListDeploymentViews(ctx, s.deps.DB, m.ID)
	if err != nil {
		return err
	}
	for _, v := range views {
		if err := s.updateDeployment(ctx, v.ID, contract.UpdateDelete, nil); err != nil {
			return err
		}
	}
	if err := store.DeleteModel(ctx, s.deps.DB, m.WorkspaceID, m.ID); err != nil {
		return err
	}
	// The audit log outlives the model: it keeps the model's ID, not a reference to it, and
	// its name, which names the model in the log once it is gone.
	if err := audit(ctx, s.deps.DB, c, m.ID, "model.delete", m.ID, store.JSONMap{"model_name": m.Name}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.DeletedModelV1{ID: m.ID, Deleted: true})
}

// temporalAttrs are the search attributes a deployment's workflow starts with, so the
// Temporal UI finds it by model and deployment.
func temporalAttrs(d store.Deployment) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		contract.ModelIDAttr.ValueSet(d.ModelID),
		contract.DeploymentIDAttr.ValueSet(d.ID),
		contract.DeploymentStatusAttr.ValueSet(string(modelplane.DeploymentBuilding)),
	)
}
