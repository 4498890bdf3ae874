package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// source is the model_archive source of a create request.
type source struct {
	Name      string // the new model's; empty for a deployment of a model that exists
	ArchiveID string // source.archive_id (modelplane's)
	S3Key     string // source.s3_key: an upload key of prepare_model_upload, or an archive ID
	// DisableArchiveDownload is the new model's disable_archive_download.
	DisableArchiveDownload bool
	Deployment             payload
}

// readSource reads and checks `source`; needName says whether it is a new model's
// (ModelArchiveSourceV1: name required, disable_archive_download allowed) or a new
// deployment's (DeploymentArchiveSourceV1: neither).
func readSource(raw json.RawMessage, needName bool) (source, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return source{}, Errorf(http.StatusBadRequest, "source: must be an object")
	}
	src := source{Deployment: payload{at: "source.deployment"}}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		v := obj[k]
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
			if json.Unmarshal(v, &src.Name) != nil {
				return src, Errorf(http.StatusBadRequest, "source.name: must be a string")
			}
			if err := modelpkg.ValidateModelName(src.Name); err != nil {
				return src, Errorf(http.StatusBadRequest, "source.name: %v", err)
			}
		case "archive_id":
			if string(v) == "null" {
				continue
			}
			if json.Unmarshal(v, &src.ArchiveID) != nil || src.ArchiveID == "" {
				return src, Errorf(http.StatusBadRequest, "source.archive_id: must be the id POST /v1/archives returned")
			}
		case "s3_key":
			if string(v) == "null" {
				continue
			}
			if json.Unmarshal(v, &src.S3Key) != nil || src.S3Key == "" {
				return src, Errorf(http.StatusBadRequest, "source.s3_key: must be the s3_key POST /v1/prepare_model_upload returned, or the id POST /v1/archives returned")
			}
		case "disable_archive_download":
			if string(v) == "null" {
				continue
			}
			if !needName {
				return src, Errorf(http.StatusBadRequest, "source.disable_archive_download: set when the model is created; its deployments keep what it says")
			}
			var err error
			if src.DisableArchiveDownload, err = boolValue(v, "source.disable_archive_download"); err != nil {
				return src, err
			}
		case "deployment":
			if string(v) == "null" {
				continue
			}
			p, err := readPayload(v, "source.deployment")
			if err != nil {
				return src, err
			}
			src.Deployment = p
		default:
			return src, Errorf(http.StatusBadRequest, "source.%s: unknown field", k)
		}
	}
	switch {
	case needName && src.Name == "":
		return src, Errorf(http.StatusBadRequest, "source.name: required")
	case src.ArchiveID == "" && src.S3Key == "":
		return src, Errorf(http.StatusBadRequest, "source.s3_key: required: the s3_key POST /v1/prepare_model_upload returned, or the id POST /v1/archives returned")
	case src.ArchiveID != "" && src.S3Key != "" && src.ArchiveID != src.S3Key:
		return src, Errorf(http.StatusBadRequest, "source.s3_key %q and source.archive_id %q name different archives; send one of them", src.S3Key, src.ArchiveID)
	}
	return src, nil
}

// createRequest is a checked body of either create route.
type createRequest struct {
	source source
	target
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
	var topDev *bool
	if v, ok := obj["development"]; ok && string(v) != "null" {
		b, err := boolValue(v, "development")
		if err != nil {
			return req, err
		}
		topDev = &b
	}
	var topEnv *string
	if v, ok := obj["environment"]; ok && string(v) != "null" {
		var e string
		if json.Unmarshal(v, &e) != nil || !environmentName.MatchString(e) {
			return req, Errorf(http.StatusBadRequest, "environment: must be an environment name")
		}
		topEnv = &e
	}
	req.target, err = resolveTarget(req.source.Deployment, topDev, topEnv)
	return req, err
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
	nd, err := s.newDeployment(c, p.WorkspaceID, req)
	if err != nil {
		return err
	}
	if err := checkStartRoom(ctx, s.deps.DB, p.WorkspaceID, "", "a new deployment", 1, nd.GPUsPerReplica); err != nil {
		return err
	}
	var m store.Model
	var d store.Deployment
	err = store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		var err error
		if m, err = store.CreateModel(ctx, tx, p.WorkspaceID, req.source.Name); err != nil {
			return err
		}
		if req.source.DisableArchiveDownload {
			if err := store.DisableArchiveDownload(ctx, tx, m.ID); err != nil {
				return err
			}
		}
		nd.ModelID, nd.WorkspaceID = m.ID, m.WorkspaceID
		if d, err = store.CreateDeployment(ctx, tx, nd); err != nil {
			return err
		}
		return audit(ctx, tx, c, m.ID, "model.create", m.ID, store.JSONMap{"deployment_id": d.ID, "archive_id": *nd.ArchiveID})
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
	nd, err := s.newDeployment(c, m.WorkspaceID, req)
	if err != nil {
		return err
	}
	nd.ModelID, nd.WorkspaceID = m.ID, m.WorkspaceID
	target, err := s.checkTargetEnvironment(c, m, req.environment)
	if err != nil {
		return err
	}
	// The development deployment a new one replaces; its replicas make room for the new one's.
	var oldDev string
	if req.development {
		old, err := store.DeploymentViewByRef(ctx, s.deps.DB, m.ID, modelplane.DevelopmentName)
		switch {
		case err == nil:
			oldDev = old.ID
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	// A push straight to an environment brings the new deployment to what the environment
	// serves now.
	starts := 1
	if target != nil {
		served, err := s.servedReplicas(ctx, *target, "")
		if err != nil {
			return err
		}
		starts = max(starts, served)
	}
	if err := checkStartRoom(ctx, s.deps.DB, m.WorkspaceID, oldDev, "a new deployment", starts, nd.GPUsPerReplica); err != nil {
		return err
	}
	if oldDev != "" {
		// Replacing the development deployment may fail requests in flight; that is allowed
		// for development only.
		if err := s.updateDeployment(ctx, oldDev, contract.UpdateDelete, nil); err != nil {
			return err
		}
	}
	var d store.Deployment
	err = store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		var err error
		if d, err = store.CreateDeployment(ctx, tx, nd); err != nil {
			return err
		}
		return audit(ctx, tx, c, m.ID, "deployment.create", d.ID, store.JSONMap{"archive_id": *nd.ArchiveID, "development": req.development})
	})
	if errors.Is(err, store.ErrConflict) {
		return Errorf(http.StatusConflict, "model %s already has a deployment named %q", m.ID, nd.Name)
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

// checkTargetEnvironment refuses, before anything is made, a push straight to an
// environment of the model that does not exist or is being promoted to, and answers the
// environment (nil when env is empty).
func (s *Server) checkTargetEnvironment(c echo.Context, m store.Model, env string) (*store.Environment, error) {
	if env == "" {
		return nil, nil
	}
	e, err := s.environment(c, m.ID, env)
	if err != nil {
		return nil, err
	}
	if _, err := store.RunningPromotion(c.Request().Context(), s.deps.DB, m.ID, env); err == nil {
		return nil, Errorf(http.StatusConflict, "a promotion of %s is already running", env)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return &e, nil
}

// sourceArchive finds the workspace's archive a source names: by archive_id, or by s3_key,
// which is an upload key of prepare_model_upload or an archive ID. Another workspace's
// archive or key is not found, as an unknown one is.
func (s *Server) sourceArchive(ctx context.Context, workspaceID string, src source) (store.Archive, error) {
	field, ref := "source.archive_id", src.ArchiveID
	if src.S3Key != "" {
		field, ref = "source.s3_key", src.S3Key
	}
	if isUploadKey(ref) {
		u, err := store.UploadByKey(ctx, s.deps.DB, workspaceID, ref)
		if errors.Is(err, store.ErrNotFound) {
			return store.Archive{}, Errorf(http.StatusBadRequest, "%s: no upload %q in this workspace; POST /v1/prepare_model_upload makes one", field, ref)
		}
		if err != nil {
			return store.Archive{}, err
		}
		switch up, direct := s.deps.Blobs.(blob.Uploads); {
		case u.ArchiveID != nil:
			ref = *u.ArchiveID
		case direct:
			if ref, err = s.takeUpload(ctx, up, u, field); err != nil {
				return store.Archive{}, err
			}
		default:
			return store.Archive{}, Errorf(http.StatusConflict, "%s: nothing was uploaded to %q yet; PUT the archive to the upload_url prepare_model_upload answered", field, ref)
		}
	}
	a, err := store.ArchiveByID(ctx, s.deps.DB, workspaceID, ref)
	if errors.Is(err, store.ErrNotFound) {
		return a, Errorf(http.StatusBadRequest, "%s: no archive %q in this workspace; upload it with POST /v1/archives or POST /v1/prepare_model_upload", field, ref)
	}
	return a, err
}

// newDeployment is the deployment row a create request makes, less its model: its archive,
// the config it runs when the request's differs from the package's, and what else the
// payload says. Autoscaling starts from the defaults (the development deployment's capped
// at one replica).
func (s *Server) newDeployment(c echo.Context, workspaceID string, req createRequest) (store.NewDeployment, error) {
	a, err := s.sourceArchive(c.Request().Context(), workspaceID, req.source)
	if err != nil {
		return store.NewDeployment{}, err
	}
	override, raw, dropped, gpus, err := req.source.Deployment.deploymentConfig(a.Config)
	if err != nil {
		return store.NewDeployment{}, err
	}
	if dropped != "" {
		s.log.WarnContext(c.Request().Context(), "raw_config dropped", "archive_id", a.ID, "reason", dropped,
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
	}
	as := settings.DefaultAutoscalingSettings()
	if req.development {
		as = settings.ForDevelopment(as)
	}
	archive := a.ID
	return req.source.Deployment.newDeployment(store.NewDeployment{
		IsDevelopment: req.development, ArchiveID: &archive, Config: override, RawConfig: raw,
		AutoscalingSettings: as, GPUsPerReplica: gpus,
	}), nil
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
	model, err := s.modelV1(ctx, m)
	if err != nil {
		return err
	}
	dep, err := s.deploymentV1(ctx, v)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.CreatedV1{Model: model, Deployment: dep})
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
	if update == contract.UpdateActivate {
		if err := s.checkRestartRoom(ctx, m, d.Deployment, "activating deployment "+d.ID); err != nil {
			return err
		}
	}
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
	if err := requireAdmin(c, "deleting a model"); err != nil {
		return err
	}
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
