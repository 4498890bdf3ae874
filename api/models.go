package api

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
)

// modelsV1 are the models in Baseten's shape, in their order. A model's instance_type_name
// is the instance type its production deployment runs on (as that deployment's is), "" while
// production serves none; a few queries whatever the number of models.
func (s *Server) modelsV1(ctx context.Context, models []store.Model) ([]apiv1.ModelV1, error) {
	var ids []string
	for _, m := range models {
		if m.ProductionDeploymentID != nil {
			ids = append(ids, *m.ProductionDeploymentID)
		}
	}
	types := map[string]apiv1.InstanceTypeV1{}
	if len(ids) > 0 {
		views, err := store.DeploymentViewsByID(ctx, s.deps.DB, ids)
		if err != nil {
			return nil, err
		}
		if types, err = s.servedInstanceTypes(ctx, views); err != nil {
			return nil, err
		}
	}
	out := make([]apiv1.ModelV1, 0, len(models))
	for _, m := range models {
		v := apiv1.ModelV1{
			ID: m.ID, CreatedAt: m.CreatedAt.UTC(), Name: m.Name, DeploymentsCount: m.DeploymentsCount,
			ProductionDeploymentID: m.ProductionDeploymentID, DevelopmentDeploymentID: m.DevelopmentDeploymentID,
			TeamName: m.TeamName,
		}
		if m.ProductionDeploymentID != nil {
			v.InstanceTypeName = types[*m.ProductionDeploymentID].ID
		}
		out = append(out, v)
	}
	return out, nil
}

// modelV1 is one model in Baseten's shape (modelsV1).
func (s *Server) modelV1(ctx context.Context, m store.Model) (apiv1.ModelV1, error) {
	out, err := s.modelsV1(ctx, []store.Model{m})
	if err != nil {
		return apiv1.ModelV1{}, err
	}
	return out[0], nil
}

func (s *Server) listModels(c echo.Context) error {
	models, err := store.ListModels(c.Request().Context(), s.deps.DB, principal(c).WorkspaceID)
	if err != nil {
		return err
	}
	out, err := s.modelsV1(c.Request().Context(), models)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.ModelListV1{Models: out})
}

func (s *Server) getModel(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	out, err := s.modelV1(c.Request().Context(), m)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}
