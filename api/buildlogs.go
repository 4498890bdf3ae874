package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
)

// buildLogs answers the output of a deployment's build: what the nodes printed while they
// installed its requirements, and whether they reused an environment they had. modelplane's
// own route; Baseten shows build logs in its UI only.
func (s *Server) buildLogs(c echo.Context) error {
	_, d, err := s.ownDeployment(c)
	if err != nil {
		return err
	}
	lines, err := store.BuildLogLines(c.Request().Context(), s.deps.DB, d.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.BuildLogsV1{DeploymentID: d.ID, Status: d.Status, StatusReason: d.StatusReason, Lines: lines})
}
