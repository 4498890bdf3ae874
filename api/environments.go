package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
	"go.temporal.io/api/serviceerror"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// deleteEnvironment removes a custom environment: its running promotion is cancelled and its
// deployment, unless another environment serves it too, is scaled to zero.
func (s *Server) deleteEnvironment(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	name := c.Param("env")
	if name == modelplane.ProductionEnvironment {
		return Errorf(http.StatusUnprocessableEntity, "production cannot be deleted")
	}
	ctx := c.Request().Context()
	e, err := s.environment(c, m.ID, name)
	if err != nil {
		return err
	}
	if s.deps.Temporal == nil {
		return Errorf(http.StatusServiceUnavailable, "Temporal is not connected")
	}
	if _, err := store.RunningPromotion(ctx, s.deps.DB, m.ID, name); err == nil {
		err := s.deps.Temporal.CancelWorkflow(ctx, contract.PromotionWorkflowID(m.ID, name), "")
		var notFound *serviceerror.NotFound
		if err != nil && !errors.As(err, &notFound) {
			return Errorf(http.StatusServiceUnavailable, "cancelling the promotion of %s: %v", name, err)
		}
	}
	if e.CurrentDeploymentID != nil {
		shared, err := servedElsewhere(c, s, m.ID, name, *e.CurrentDeploymentID)
		if err != nil {
			return err
		}
		if !shared {
			if err := s.updateDeployment(ctx, *e.CurrentDeploymentID, contract.UpdateScale, contract.ScaleRequest{Replicas: 0}); err != nil {
				return err
			}
		}
	}
	if err := store.DeleteEnvironment(ctx, s.deps.DB, m.ID, name); err != nil {
		return err
	}
	if err := audit(ctx, s.deps.DB, c, m.ID, "environment.delete", name, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.DeletedEnvironmentV1{Name: name, ModelID: m.ID, Deleted: true})
}

// servedElsewhere reports whether another environment of the model points at the deployment.
func servedElsewhere(c echo.Context, s *Server, modelID, env, deploymentID string) (bool, error) {
	envs, err := store.ListEnvironments(c.Request().Context(), s.deps.DB, modelID)
	if err != nil {
		return false, err
	}
	for _, o := range envs {
		if o.Name != env && o.CurrentDeploymentID != nil && *o.CurrentDeploymentID == deploymentID {
			return true, nil
		}
	}
	return false, nil
}

func (s *Server) activateEnvironment(c echo.Context) error {
	return s.environmentLifecycle(c, contract.UpdateActivate, "environment.activate")
}

func (s *Server) deactivateEnvironment(c echo.Context) error {
	return s.environmentLifecycle(c, contract.UpdateDeactivate, "environment.deactivate")
}

// environmentLifecycle activates or deactivates the deployment an environment points at,
// production's included: the environment then answers 404 until it is activated again or
// another deployment is promoted.
func (s *Server) environmentLifecycle(c echo.Context, update, action string) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	name := c.Param("env")
	ctx := c.Request().Context()
	e, err := s.environment(c, m.ID, name)
	if err != nil {
		return err
	}
	if e.CurrentDeploymentID == nil {
		return Errorf(http.StatusUnprocessableEntity, "environment %s has no deployment yet; promote one first", name)
	}
	if err := s.updateDeployment(ctx, *e.CurrentDeploymentID, update, nil); err != nil {
		return err
	}
	if err := audit(ctx, s.deps.DB, c, m.ID, action, name, store.JSONMap{"deployment_id": *e.CurrentDeploymentID}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.SuccessV1{Success: true})
}
