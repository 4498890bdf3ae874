package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/modelplane/modelplane/store"
)

// StopUnwantedReplicasInput says how long a replica must have been left alone before
// Cleanup takes it over from its deployment's workflow.
type StopUnwantedReplicasInput struct {
	QuietFor time.Duration
	Grace    time.Duration
}

// StopUnwantedReplicasResult says how many replicas were stopped.
type StopUnwantedReplicasResult struct {
	Stopped int
}

// StopUnwantedReplicas stops replicas whose deployment is deleted or inactive but which are
// still running, for instance because a workflow was terminated by hand.
func (a *Activities) StopUnwantedReplicas(ctx context.Context, in StopUnwantedReplicasInput) (StopUnwantedReplicasResult, error) {
	rs, err := store.UnwantedReplicas(ctx, a.DB, in.QuietFor)
	if err != nil {
		return StopUnwantedReplicasResult{}, err
	}
	stopped := 0
	for _, r := range rs {
		if err := a.StopReplica(ctx, StopReplicaInput{ReplicaID: r.ID, Grace: in.Grace}); err != nil {
			activity.GetLogger(ctx).Warn("stopping an unwanted replica", "replica_id", r.ID, "err", err)
			continue
		}
		stopped++
		activity.RecordHeartbeat(ctx, stopped)
	}
	return StopUnwantedReplicasResult{Stopped: stopped}, nil
}

// PruneArchivesInput says how old an unused archive must be to go.
type PruneArchivesInput struct {
	Before time.Time
}

// PruneArchivesResult says how many archives and blobs went.
type PruneArchivesResult struct {
	Archives, Blobs int
}

// PruneArchives removes archives that no live deployment runs and that were uploaded before
// in.Before, and their blobs when no other workspace holds the same bytes.
func (a *Activities) PruneArchives(ctx context.Context, in PruneArchivesInput) (PruneArchivesResult, error) {
	var res PruneArchivesResult
	archives, err := store.UnreferencedArchives(ctx, a.DB, in.Before)
	if err != nil {
		return res, err
	}
	for _, ar := range archives {
		shared, err := store.DeleteArchive(ctx, a.DB, ar.WorkspaceID, ar.ID)
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			continue // taken up again, or pruned by another run
		}
		if err != nil {
			return res, err
		}
		res.Archives++
		if !shared && a.Blobs != nil {
			if err := a.Blobs.Delete(ctx, ar.ID); err != nil {
				return res, err
			}
			res.Blobs++
		}
	}
	return res, nil
}

// GatewayReportRetention is how long the report of a gateway that stopped reporting is kept:
// drains ignore it after store.GatewayDownAfter already, so it only helps someone looking
// into what happened to that gateway.
const GatewayReportRetention = time.Hour

// PruneGatewayReportsInput says which gateway reports to drop: those last written before
// Before.
type PruneGatewayReportsInput struct {
	Before time.Time
}

// PruneGatewayReportsResult says how many went.
type PruneGatewayReportsResult struct {
	Deleted int64
}

// PruneGatewayReports deletes the reports of gateways that have not reported since
// in.Before, dead gateways that did not shut down cleanly.
func (a *Activities) PruneGatewayReports(ctx context.Context, in PruneGatewayReportsInput) (PruneGatewayReportsResult, error) {
	n, err := store.DeleteGatewayReportsBefore(ctx, a.DB, in.Before)
	return PruneGatewayReportsResult{Deleted: n}, err
}
