package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// DeploymentV1 is API.md's deployment object.
type DeploymentV1 struct {
	ID                  string                       `json:"id"`
	CreatedAt           time.Time                    `json:"created_at"`
	Name                string                       `json:"name"`
	ModelID             string                       `json:"model_id"`
	IsProduction        bool                         `json:"is_production"`
	IsDevelopment       bool                         `json:"is_development"`
	Status              string                       `json:"status"`
	ActiveReplicaCount  int                          `json:"active_replica_count"`
	AutoscalingSettings settings.AutoscalingSettings `json:"autoscaling_settings"`
	InstanceTypeName    string                       `json:"instance_type_name"`
	Environment         *string                      `json:"environment"`
	Labels              store.JSONMap                `json:"labels"`
}

func deploymentV1(v store.DeploymentView) DeploymentV1 {
	labels := v.Labels
	if labels == nil {
		labels = store.JSONMap{}
	}
	return DeploymentV1{
		ID: v.ID, CreatedAt: v.CreatedAt.UTC(), Name: v.Name, ModelID: v.ModelID,
		IsProduction: v.IsProduction, IsDevelopment: v.IsDevelopment, Status: v.Status,
		ActiveReplicaCount: v.ActiveReplicaCount, AutoscalingSettings: v.AutoscalingSettings,
		InstanceTypeName: v.InstanceTypeName, Environment: v.EnvironmentName, Labels: labels,
	}
}

// PromotionV1 is an environment's promotion in flight.
type PromotionV1 struct {
	Status                     string `json:"status"`
	PercentTrafficToNewVersion int    `json:"percent_traffic_to_new_version"`
	ErrorMessage               string `json:"error_message"`
}

// EnvironmentV1 is API.md's environment object.
type EnvironmentV1 struct {
	Name                string                       `json:"name"`
	CreatedAt           time.Time                    `json:"created_at"`
	ModelID             string                       `json:"model_id"`
	CurrentDeployment   *DeploymentV1                `json:"current_deployment"`
	CandidateDeployment *DeploymentV1                `json:"candidate_deployment"`
	InProgressPromotion *PromotionV1                 `json:"in_progress_promotion"`
	AutoscalingSettings settings.AutoscalingSettings `json:"autoscaling_settings"`
	PromotionSettings   settings.PromotionSettings   `json:"promotion_settings"`
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
	out := make([]DeploymentV1, 0, len(views))
	for _, v := range views {
		out = append(out, deploymentV1(v))
	}
	return c.JSON(http.StatusOK, map[string]any{"deployments": out})
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
func (s *Server) environmentV1(c echo.Context, e store.Environment) (EnvironmentV1, error) {
	ctx := c.Request().Context()
	out := EnvironmentV1{
		Name: e.Name, CreatedAt: e.CreatedAt.UTC(), ModelID: e.ModelID,
		AutoscalingSettings: e.AutoscalingSettings, PromotionSettings: e.PromotionSettings,
	}
	for _, ref := range []struct {
		id  *string
		dst **DeploymentV1
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
	}
	p, err := store.RunningPromotion(ctx, s.deps.DB, e.ModelID, e.Name)
	switch {
	case err == nil:
		out.InProgressPromotion = &PromotionV1{Status: p.Status, PercentTrafficToNewVersion: p.PercentTrafficToNew, ErrorMessage: p.ErrorMessage}
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
	out := make([]EnvironmentV1, 0, len(envs))
	for _, e := range envs {
		v, err := s.environmentV1(c, e)
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	return c.JSON(http.StatusOK, map[string]any{"environments": out})
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
