package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// terminateGrace is how long a replica terminated through the API has between SIGTERM and
// SIGKILL; the request waits for it at most that long.
const terminateGrace = 30 * time.Second

// retryDeployment tries a failed deployment again (BUILD_FAILED, DEPLOY_FAILED, UNHEALTHY, and
// the other statuses it does not leave by itself): the Deployment workflow's activate update,
// which builds it again when its build failed and starts new replicas in place of the failed
// ones. A deployment that has not failed answers retried false with the reason, as the spec's
// RetryDeploymentResponseV1 does.
func (s *Server) retryDeployment(c echo.Context) error {
	m, d, err := s.ownDeployment(c)
	if err != nil {
		return err
	}
	if !d.Status.Stuck() {
		reason := fmt.Sprintf("deployment %s is %s and has not failed; only a failed deployment (%s) is retried",
			d.ID, d.Status, joinStatuses(append(modelplane.FailedDeploymentStatuses(), modelplane.DeploymentUnhealthy)))
		if d.Status.Deactivated() {
			reason += "; activate it instead"
		}
		dep, err := s.deploymentV1(c.Request().Context(), d)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, apiv1.RetryDeploymentV1{Retried: false, Reason: &reason, Deployment: dep})
	}
	ctx := c.Request().Context()
	if err := s.checkRestartRoom(ctx, m, d.Deployment, "retrying deployment "+d.ID); err != nil {
		return err
	}
	if err := s.updateDeployment(ctx, d.ID, contract.UpdateActivate, nil); err != nil {
		return err
	}
	if err := audit(ctx, s.deps.DB, c, m.ID, "deployment.retry", d.ID, store.JSONMap{"status": d.Status}); err != nil {
		return err
	}
	v, err := store.DeploymentViewByRef(ctx, s.deps.DB, m.ID, d.ID)
	if err != nil {
		return err
	}
	dep, err := s.deploymentV1(ctx, v)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.RetryDeploymentV1{Retried: true, Deployment: dep})
}

// joinStatuses lists statuses for a message: "A, B, C".
func joinStatuses(ss []modelplane.DeploymentStatus) string {
	names := make([]string, len(ss))
	for i, st := range ss {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}

// terminateReplica stops one replica of the deployment at once. The replica leaves the
// gateways' routes first (its row goes to STOPPING), is stopped through its node's agent, and
// is recorded STOPPED; the deployment's workflow, which watches its replicas, then starts
// another in its place, as it does for a replica that dies. Requests in flight on it fail.
func (s *Server) terminateReplica(c echo.Context) error {
	m, d, err := s.ownDeployment(c)
	if err != nil {
		return err
	}
	id := c.Param("replica_id")
	ctx := c.Request().Context()
	r, err := store.ReplicaByID(ctx, s.deps.DB, id)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && r.DeploymentID != d.ID):
		return Errorf(http.StatusNotFound, "replica %q of deployment %s not found", id, d.ID)
	case err != nil:
		return err
	case r.State.Ended():
		return Errorf(http.StatusNotFound, "replica %s of deployment %s has already ended (%s)", id, d.ID, r.State)
	case r.AgentURL == "":
		return Errorf(http.StatusConflict, "replica %s is still being placed on a node; terminate it once it runs", id)
	}
	agent, err := s.agents().Client(ctx, *r.NodeID, r.AgentURL)
	if err != nil {
		return Errorf(http.StatusServiceUnavailable, "this API cannot reach the replica's agent: %v", err)
	}
	const why = "terminated through the API"
	if err := store.SetReplicaState(ctx, s.deps.DB, id, modelplane.ReplicaStopping, "", why); err != nil {
		return err
	}
	_, err = agent.StopReplica(ctx, id, terminateGrace)
	if err != nil && !errors.Is(err, agentproto.ErrUnknownReplica) {
		// The row stays STOPPING: no gateway routes to it, and the workflow's watch, or
		// Cleanup, finishes the stop.
		return Errorf(http.StatusServiceUnavailable, "stopping replica %s on its node: %v", id, err)
	}
	if err := store.SetReplicaState(ctx, s.deps.DB, id, modelplane.ReplicaStopped, "", why); err != nil {
		return err
	}
	if err := audit(ctx, s.deps.DB, c, m.ID, "replica.terminate", id, store.JSONMap{"deployment_id": d.ID}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.TerminateReplicaV1{Success: true})
}
