package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
)

func modelV1(m store.Model) apiv1.ModelV1 {
	return apiv1.ModelV1{
		ID: m.ID, CreatedAt: m.CreatedAt.UTC(), Name: m.Name, DeploymentsCount: m.DeploymentsCount,
		ProductionDeploymentID: m.ProductionDeploymentID, DevelopmentDeploymentID: m.DevelopmentDeploymentID,
		InstanceTypeName: m.InstanceTypeName, TeamName: m.TeamName,
	}
}

func (s *Server) listModels(c echo.Context) error {
	models, err := store.ListModels(c.Request().Context(), s.deps.DB, principal(c).WorkspaceID)
	if err != nil {
		return err
	}
	out := apiv1.ModelListV1{Models: make([]apiv1.ModelV1, 0, len(models))}
	for _, m := range models {
		out.Models = append(out.Models, modelV1(m))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getModel(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, modelV1(m))
}
