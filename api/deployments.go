package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

func deploymentV1(v store.DeploymentView) apiv1.DeploymentV1 {
	labels := v.Labels
	if labels == nil {
		labels = store.JSONMap{}
	}
	out := apiv1.DeploymentV1{
		ID: v.ID, CreatedAt: v.CreatedAt.UTC(), Name: v.Name, ModelID: v.ModelID,
		IsProduction: v.IsProduction, IsDevelopment: v.IsDevelopment, Status: modelplane.DeploymentStatus(v.Status),
		ActiveReplicaCount: v.ActiveReplicaCount, AutoscalingSettings: v.AutoscalingSettings,
		InstanceTypeName: v.InstanceTypeName, Environment: v.EnvironmentName, Labels: labels,
		RequestBackpressureSettings: v.RequestBackpressureSettings,
		// No node reports a region (docs/API.md).
		Region: nil,
	}
	if v.StatusReason != "" {
		out.StatusReason = &v.StatusReason
	}
	return out
}

// ownModel loads the request's model, answering 404 for another workspace's.
func (s *Server) ownModel(c echo.Context) (store.Model, error) {
	id := c.Param("model_id")
	m, err := store.ModelByID(c.Request().Context(), s.deps.DB, principal(c).WorkspaceID, id)
	if errors.Is(err, store.ErrNotFound) {
		return m, Errorf(http.StatusNotFound, "model %q not found", id)
	}
	return m, err
}

// environment loads one of the model's environments, answering 404 naming it.
func (s *Server) environment(c echo.Context, modelID, name string) (store.Environment, error) {
	e, err := store.EnvironmentByName(c.Request().Context(), s.deps.DB, modelID, name)
	if errors.Is(err, store.ErrNotFound) {
		return e, Errorf(http.StatusNotFound, "environment %q of model %s not found", name, modelID)
	}
	return e, err
}

func (s *Server) listDeployments(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	views, err := store.ListDeploymentViews(c.Request().Context(), s.deps.DB, m.ID)
	if err != nil {
		return err
	}
	out := apiv1.DeploymentListV1{Deployments: make([]apiv1.DeploymentV1, 0, len(views))}
	for _, v := range views {
		out.Deployments = append(out.Deployments, deploymentV1(v))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getDeployment(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	ref := c.Param("deployment_id")
	v, err := store.DeploymentViewByRef(c.Request().Context(), s.deps.DB, m.ID, ref)
	if errors.Is(err, store.ErrNotFound) {
		return Errorf(http.StatusNotFound, "deployment %q of model %s not found", ref, m.ID)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, deploymentV1(v))
}

// environmentV1 assembles an environment with its deployments and promotion.
func (s *Server) environmentV1(c echo.Context, e store.Environment) (apiv1.EnvironmentV1, error) {
	ctx := c.Request().Context()
	out := apiv1.EnvironmentV1{
		Name: e.Name, CreatedAt: e.CreatedAt.UTC(), ModelID: e.ModelID,
		AutoscalingSettings: e.AutoscalingSettings, PromotionSettings: e.PromotionSettings,
		RequestBackpressureSettings: e.RequestBackpressureSettings,
	}
	var served *store.DeploymentView
	for _, ref := range []struct {
		id  *string
		dst **apiv1.DeploymentV1
	}{{e.CurrentDeploymentID, &out.CurrentDeployment}, {e.CandidateDeploymentID, &out.CandidateDeployment}} {
		if ref.id == nil {
			continue
		}
		v, err := store.DeploymentViewByRef(ctx, s.deps.DB, e.ModelID, *ref.id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		d := deploymentV1(v)
		*ref.dst = &d
		if ref.dst == &out.CurrentDeployment {
			served = &v
		}
	}
	schedules := &apiv1.EnvironmentAutoscalingSchedulesV1{Timezone: e.AutoscalingSchedules.Timezone,
		Schedules: e.AutoscalingSchedules.Schedules}
	if schedules.Schedules == nil {
		schedules.Schedules = []settings.AutoscalingSchedule{}
	}
	out.AutoscalingSchedules = schedules
	// While the environment serves no deployment its instance type is the empty one
	// (docs/API.md): the spec requires the object, and nothing runs to name.
	if served != nil {
		// The settings of the deployment the environment serves are the environment's.
		out.AutoscalingSettings, out.RequestBackpressureSettings = served.AutoscalingSettings, served.RequestBackpressureSettings
		schedules.AppliedState = &apiv1.AutoscalingScheduleStateV1{AutoscalingSettings: served.AutoscalingSettings}
		req, err := s.deploymentGPURequest(ctx, *served)
		if err != nil {
			return out, err
		}
		held, err := store.DeploymentGPUs(ctx, s.deps.DB, served.ID)
		if err != nil {
			return out, err
		}
		out.InstanceType = servedInstanceType(req, held)
	}
	p, err := store.RunningPromotion(ctx, s.deps.DB, e.ModelID, e.Name)
	switch {
	case err == nil:
		out.InProgressPromotion = &apiv1.PromotionV1{Status: modelplane.PromotionStatus(p.Status),
			PercentTrafficToNewVersion: p.PercentTrafficToNew, ErrorMessage: p.ErrorMessage}
	case !errors.Is(err, store.ErrNotFound):
		return out, err
	}
	return out, nil
}

func (s *Server) listEnvironments(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	envs, err := store.ListEnvironments(c.Request().Context(), s.deps.DB, m.ID)
	if err != nil {
		return err
	}
	out := apiv1.EnvironmentListV1{Environments: make([]apiv1.EnvironmentV1, 0, len(envs))}
	for _, e := range envs {
		v, err := s.environmentV1(c, e)
		if err != nil {
			return err
		}
		out.Environments = append(out.Environments, v)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getEnvironment(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	e, err := s.environment(c, m.ID, c.Param("env"))
	if err != nil {
		return err
	}
	v, err := s.environmentV1(c, e)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}
