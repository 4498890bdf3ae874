package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/store"
)

// ModelV1 is API.md's model object.
type ModelV1 struct {
	ID                      string    `json:"id"`
	CreatedAt               time.Time `json:"created_at"`
	Name                    string    `json:"name"`
	DeploymentsCount        int       `json:"deployments_count"`
	ProductionDeploymentID  *string   `json:"production_deployment_id"`
	DevelopmentDeploymentID *string   `json:"development_deployment_id"`
	InstanceTypeName        string    `json:"instance_type_name"`
}

func modelV1(m store.Model) ModelV1 {
	return ModelV1{
		ID: m.ID, CreatedAt: m.CreatedAt.UTC(), Name: m.Name, DeploymentsCount: m.DeploymentsCount,
		ProductionDeploymentID: m.ProductionDeploymentID, DevelopmentDeploymentID: m.DevelopmentDeploymentID,
		InstanceTypeName: m.InstanceTypeName,
	}
}

func (s *Server) listModels(c echo.Context) error {
	models, err := store.ListModels(c.Request().Context(), s.deps.DB, principal(c).WorkspaceID)
	if err != nil {
		return err
	}
	out := make([]ModelV1, 0, len(models))
	for _, m := range models {
		out = append(out, modelV1(m))
	}
	return c.JSON(http.StatusOK, map[string]any{"models": out})
}

func (s *Server) getModel(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, modelV1(m))
}
