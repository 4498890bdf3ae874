package activities

import (
	"context"
	"errors"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
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

// StartUnstartedAsyncInput says which requests' workflows to start and how.
type StartUnstartedAsyncInput struct {
	// Before: only requests recorded before it, which their gateway had time to start.
	Before           time.Time
	WorkflowType     string
	TaskQueue        string
	WorkflowIDPrefix string
	// Limit bounds how many are started in one run; zero means 100.
	Limit int
}

// StartUnstartedAsyncResult says how many workflows were started.
type StartUnstartedAsyncResult struct {
	Started int
}

// StartUnstartedAsync starts the workflows of queued requests whose gateway recorded them but
// did not start their workflow (it died, or Temporal refused). A request's workflow marks it
// started in its first step, so one still unmarked has no workflow running under its ID
// (a running one is left alone) and none that did anything.
func (a *Activities) StartUnstartedAsync(ctx context.Context, in StartUnstartedAsyncInput) (StartUnstartedAsyncResult, error) {
	var out StartUnstartedAsyncResult
	limit := in.Limit
	if limit <= 0 {
		limit = 100
	}
	ids, err := store.UnstartedAsyncRequests(ctx, a.DB, in.Before, limit)
	if err != nil {
		return out, err
	}
	if len(ids) > 0 && a.Temporal == nil {
		return out, errors.New("no Temporal client to start async request workflows with")
	}
	for _, id := range ids {
		_, err := a.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID:        in.WorkflowIDPrefix + id,
			TaskQueue: in.TaskQueue,
			// A request whose workflow never marked it started may have had one that was
			// terminated before its first step: another run is what it needs. A running one is
			// left alone (already started).
			WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
			WorkflowExecutionErrorWhenAlreadyStarted: true,
		}, in.WorkflowType, contract.AsyncRequestInput{RequestID: id})
		switch {
		case err == nil:
			out.Started++
			activity.GetLogger(ctx).Info("started the workflow of an async request", "request_id", id)
		case temporal.IsWorkflowExecutionAlreadyStartedError(err):
		default:
			return out, err
		}
	}
	return out, nil
}

// PurgeAsyncInput says what is old enough to go.
type PurgeAsyncInput struct {
	// Now: outputs kept until before it go.
	Now time.Time
	// FinishedBefore: requests that ended before it go, with their attempts.
	FinishedBefore time.Time
}

// PurgeAsyncResult says how much went.
type PurgeAsyncResult struct {
	Outputs, Requests int64
}

// PurgeAsync drops outputs kept past their time and deletes requests that ended long ago.
func (a *Activities) PurgeAsync(ctx context.Context, in PurgeAsyncInput) (PurgeAsyncResult, error) {
	outputs, requests, err := store.PurgeAsyncOutputs(ctx, a.DB, in.Now, in.FinishedBefore)
	return PurgeAsyncResult{Outputs: outputs, Requests: requests}, err
}
