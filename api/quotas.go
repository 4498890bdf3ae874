package api

import (
	"context"
	"errors"
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
