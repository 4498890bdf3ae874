package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// getQuotas answers the key's workspace's quotas and what it holds now. Any key may read
// them; only the operator sets them (modelplane quotas set).
func (s *Server) getQuotas(c echo.Context) error {
	ctx := c.Request().Context()
	p := principal(c)
	ws, err := store.WorkspaceByID(ctx, s.deps.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	q, err := store.WorkspaceQuotas(ctx, s.deps.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	u, err := store.WorkspaceUsage(ctx, s.deps.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.QuotasV1{
		TeamName: ws.Name,
		Limits:   apiv1.QuotaFiguresV1{Replicas: q.Replicas, GPUs: q.GPUs, AsyncRequests: q.AsyncRequests, ArchiveBytes: q.ArchiveBytes},
		Usage:    apiv1.QuotaFiguresV1{Replicas: u.Replicas, GPUs: u.GPUs, AsyncRequests: u.AsyncRequests, ArchiveBytes: u.ArchiveBytes},
	})
}

// checkScaleQuota refuses, with 422 naming the field (prefix is the settings object's path),
// autoscaling settings the workspace's quotas can never honour: a max_replica above the
// replicas quota, a max_replica whose replicas would hold more GPUs than the GPU quota, or a
// min_replica that does not fit what the workspace's other deployments already run. The
// autoscaler enforces the quotas at run time as well (a scale-up is held at what is left);
// this answers at once a setting that could never be met.
func checkScaleQuota(ctx context.Context, db sqlx.QueryerContext, workspaceID, deploymentID, prefix string, as settings.AutoscalingSettings, gpusPerReplica int) error {
	q, err := store.WorkspaceQuotas(ctx, db, workspaceID)
	if err != nil {
		return err
	}
	field := func(name string) string {
		if prefix == "" {
			return name
		}
		return prefix + "." + name
	}
	if as.MaxReplica > q.Replicas {
		return Errorf(http.StatusUnprocessableEntity, "%s: %d is above the workspace's replicas quota of %d",
			field("max_replica"), as.MaxReplica, q.Replicas)
	}
	if gpusPerReplica > 0 && as.MaxReplica*gpusPerReplica > q.GPUs {
		return Errorf(http.StatusUnprocessableEntity, "%s: %d replicas of %d GPUs each are %d GPUs, above the workspace's gpus quota of %d",
			field("max_replica"), as.MaxReplica, gpusPerReplica, as.MaxReplica*gpusPerReplica, q.GPUs)
	}
	if as.MinReplica == 0 {
		return nil
	}
	others, err := store.WorkspaceUsageExcept(ctx, db, workspaceID, deploymentID)
	if err != nil {
		return err
	}
	if others.Replicas+as.MinReplica > q.Replicas {
		return Errorf(http.StatusUnprocessableEntity, "%s: %d does not fit the workspace's replicas quota of %d: its other deployments run %d",
			field("min_replica"), as.MinReplica, q.Replicas, others.Replicas)
	}
	if others.GPUs+as.MinReplica*gpusPerReplica > q.GPUs {
		return Errorf(http.StatusUnprocessableEntity, "%s: %d replicas of %d GPUs each do not fit the workspace's gpus quota of %d: its other deployments hold %d",
			field("min_replica"), as.MinReplica, gpusPerReplica, q.GPUs, others.GPUs)
	}
	return nil
}

// quotaError turns a *store.QuotaExceeded into a 422 that says msg and the quota's figures.
func quotaError(err error, msg string) error {
	var qe *store.QuotaExceeded
	if errors.As(err, &qe) {
		return Errorf(http.StatusUnprocessableEntity, "%s: %v", msg, qe)
	}
	return err
}

// checkStartRoom refuses with 422, before anything changes, a request whose workflow would
// start replicas (each of gpus GPUs) that the workspace's quotas have no room for: a new
// deployment's first replica, an activation's or a retry's, a promotion's candidate brought
// to the count of the deployment it replaces. Replicas of deployment except (the development
// deployment a new one replaces) do not count. The autoscaler holds its own scale-ups at the
// quotas; this covers the replicas workflows start themselves.
func checkStartRoom(ctx context.Context, db sqlx.QueryerContext, workspaceID, except, what string, replicas, gpus int) error {
	if replicas <= 0 {
		return nil
	}
	q, err := store.WorkspaceQuotas(ctx, db, workspaceID)
	if err != nil {
		return err
	}
	var u store.Usage
	if except != "" {
		u, err = store.WorkspaceUsageExcept(ctx, db, workspaceID, except)
	} else {
		u, err = store.WorkspaceUsage(ctx, db, workspaceID)
	}
	if err != nil {
		return err
	}
	const free = "scale down or deactivate another deployment, or ask the operator to raise the quota (modelplane quotas set)"
	if u.Replicas+replicas > q.Replicas {
		return Errorf(http.StatusUnprocessableEntity, "%s starts %d replica(s), and the workspace runs %d of its replicas quota of %d: %s",
			what, replicas, u.Replicas, q.Replicas, free)
	}
	if u.GPUs+replicas*gpus > q.GPUs {
		return Errorf(http.StatusUnprocessableEntity, "%s starts %d replica(s) of %d GPUs each, and the workspace's replicas hold %d of its gpus quota of %d: %s",
			what, replicas, gpus, u.GPUs, q.GPUs, free)
	}
	return nil
}

// liveReplicas counts a deployment's live replicas; none for "".
func liveReplicas(ctx context.Context, db sqlx.QueryerContext, deploymentID string) (int, error) {
	if deploymentID == "" {
		return 0, nil
	}
	rs, err := store.ListLiveReplicas(ctx, db, deploymentID)
	return len(rs), err
}

// checkRestartRoom is checkStartRoom for activating or retrying d: its workflow starts one
// replica when it has none.
func (s *Server) checkRestartRoom(ctx context.Context, m store.Model, d store.Deployment, what string) error {
	have, err := liveReplicas(ctx, s.deps.DB, d.ID)
	if err != nil {
		return err
	}
	return checkStartRoom(ctx, s.deps.DB, m.WorkspaceID, "", what, 1-have, d.GPUsPerReplica)
}

// servedReplicas counts the live replicas of the deployment env serves, unless that is
// candidateID.
func (s *Server) servedReplicas(ctx context.Context, env store.Environment, candidateID string) (int, error) {
	if env.CurrentDeploymentID == nil || *env.CurrentDeploymentID == candidateID {
		return 0, nil
	}
	return liveReplicas(ctx, s.deps.DB, *env.CurrentDeploymentID)
}

// checkPromotionRoom is checkStartRoom for promoting candidate into env: the candidate is
// brought to the live replicas of the deployment env serves (at least one) while that one
// keeps serving.
func (s *Server) checkPromotionRoom(ctx context.Context, workspaceID string, env store.Environment, candidate store.Deployment) error {
	target, err := s.servedReplicas(ctx, env, candidate.ID)
	if err != nil {
		return err
	}
	have, err := liveReplicas(ctx, s.deps.DB, candidate.ID)
	if err != nil {
		return err
	}
	return checkStartRoom(ctx, s.deps.DB, workspaceID, "", fmt.Sprintf("promoting deployment %s to %s", candidate.ID, env.Name),
		max(target, 1)-have, candidate.GPUsPerReplica)
}
