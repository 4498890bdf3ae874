package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// deploymentOf is the deployment in Baseten's shape, running on the instance type of ID
// instanceTypeName (Server.servedInstanceTypes).
func deploymentOf(v store.DeploymentView, instanceTypeName string) apiv1.DeploymentV1 {
	labels := v.Labels
	if labels == nil {
		labels = store.JSONMap{}
	}
	out := apiv1.DeploymentV1{
		ID: v.ID, CreatedAt: v.CreatedAt.UTC(), Name: v.Name, ModelID: v.ModelID,
		IsProduction: v.IsProduction, IsDevelopment: v.IsDevelopment, Status: modelplane.DeploymentStatus(v.Status),
		ActiveReplicaCount: v.ActiveReplicaCount, AutoscalingSettings: v.AutoscalingSettings,
		InstanceTypeName: instanceTypeName, Environment: v.EnvironmentName, Labels: labels,
		RequestBackpressureSettings: v.RequestBackpressureSettings,
		// No node reports a region (docs/API.md).
		Region: nil,
	}
	if v.StatusReason != "" {
		out.StatusReason = &v.StatusReason
	}
	return out
}

// deploymentsV1 are the deployments in Baseten's shape, each with the instance type it runs
// on, in their order; a few queries whatever their number.
func (s *Server) deploymentsV1(ctx context.Context, views []store.DeploymentView) ([]apiv1.DeploymentV1, error) {
	types, err := s.servedInstanceTypes(ctx, views)
	if err != nil {
		return nil, err
	}
	out := make([]apiv1.DeploymentV1, 0, len(views))
	for _, v := range views {
		out = append(out, deploymentOf(v, types[v.ID].ID))
	}
	return out, nil
}

// deploymentV1 is one deployment in Baseten's shape (deploymentsV1).
func (s *Server) deploymentV1(ctx context.Context, v store.DeploymentView) (apiv1.DeploymentV1, error) {
	out, err := s.deploymentsV1(ctx, []store.DeploymentView{v})
	if err != nil {
		return apiv1.DeploymentV1{}, err
	}
	return out[0], nil
}

// deploymentJSON answers 200 with the deployment (deploymentV1).
func (s *Server) deploymentJSON(c echo.Context, v store.DeploymentView) error {
	out, err := s.deploymentV1(c.Request().Context(), v)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
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
	deployments, err := s.deploymentsV1(c.Request().Context(), views)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.DeploymentListV1{Deployments: deployments})
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
	return s.deploymentJSON(c, v)
}

// environmentV1 assembles an environment with its deployments and promotion.
func (s *Server) environmentV1(c echo.Context, e store.Environment) (apiv1.EnvironmentV1, error) {
	ctx := c.Request().Context()
	out := apiv1.EnvironmentV1{
		Name: e.Name, CreatedAt: e.CreatedAt.UTC(), ModelID: e.ModelID,
		AutoscalingSettings: e.AutoscalingSettings, PromotionSettings: e.PromotionSettings,
		RequestBackpressureSettings: e.RequestBackpressureSettings, ShadowSettings: e.ShadowSettings,
	}
	var views []store.DeploymentView
	var dsts []**apiv1.DeploymentV1
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
		views, dsts = append(views, v), append(dsts, ref.dst)
		if ref.dst == &out.CurrentDeployment {
			served = &v
		}
	}
	types, err := s.servedInstanceTypes(ctx, views)
	if err != nil {
		return out, err
	}
	for i, v := range views {
		d := deploymentOf(v, types[v.ID].ID)
		*dsts[i] = &d
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
		// What the autoscaler applies to it now: the settings of the schedule in force (that
		// of this environment or of another the deployment serves), or its own.
		inForce, err := store.SchedulesInForce(ctx, s.deps.DB, time.Now(), served.ID)
		if err != nil {
			return out, err
		}
		sched := inForce[served.ID]
		schedules.AppliedState = &apiv1.AutoscalingScheduleStateV1{
			AutoscalingSettings: settings.Applied(served.AutoscalingSettings, sched)}
		if sched != nil {
			schedules.AppliedState.ScheduleID = &sched.ID
		}
		out.InstanceType = types[served.ID]
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
