package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/modelplane/modelplane/workflows/contract"
)

// AsyncStartGrace is how long a gateway has to start the workflow of an async request it
// recorded before Cleanup starts it instead.
const AsyncStartGrace = 30 * time.Second

// orphanBlobSweepChange versions the step that sweeps blobs nothing refers to.
const orphanBlobSweepChange = "sweep-orphan-blobs"

// Cleanup removes data that nothing needs any more. It runs on a schedule; each step is an
// idempotent activity, so an overlapping or repeated run does no harm.
func Cleanup(ctx workflow.Context, in contract.CleanupInput) (contract.CleanupResult, error) {
	def := contract.DefaultCleanupInput()
	if in.LoadSampleRetention <= 0 {
		in.LoadSampleRetention = def.LoadSampleRetention
	}
	if in.ArchiveRetention <= 0 {
		in.ArchiveRetention = def.ArchiveRetention
	}
	if in.ReplicaQuietPeriod <= 0 {
		in.ReplicaQuietPeriod = def.ReplicaQuietPeriod
	}
	if in.AsyncRequestRetention <= 0 {
		in.AsyncRequestRetention = def.AsyncRequestRetention
	}
	if in.OrphanBlobGrace <= 0 {
		in.OrphanBlobGrace = def.OrphanBlobGrace
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second,
			MaximumInterval: 30 * time.Second,
			MaximumAttempts: 5,
		},
	})
	var out contract.CleanupResult
	now := workflow.Now(ctx)
	var pruned contract.PruneLoadSamplesResult
	if err := workflow.ExecuteActivity(ctx, contract.ActivityPruneLoadSamples,
		contract.PruneLoadSamplesInput{Before: now.Add(-in.LoadSampleRetention)}).Get(ctx, &pruned); err != nil {
		return out, err
	}
	out.LoadSamplesDeleted = pruned.Deleted
	// Stopping replicas waits out their grace periods: a longer bound, kept alive by heartbeats.
	stopCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Minute, HeartbeatTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 3},
	})
	var stopped contract.StopUnwantedReplicasResult
	if err := workflow.ExecuteActivity(stopCtx, contract.ActivityStopUnwantedReplicas, contract.StopUnwantedReplicasInput{
		QuietFor: in.ReplicaQuietPeriod, Grace: 30 * time.Second}).Get(ctx, &stopped); err != nil {
		return out, err
	}
	out.ReplicasStopped = stopped.Stopped
	var archives contract.PruneArchivesResult
	if err := workflow.ExecuteActivity(ctx, contract.ActivityPruneArchives,
		contract.PruneArchivesInput{Before: now.Add(-in.ArchiveRetention)}).Get(ctx, &archives); err != nil {
		return out, err
	}
	out.ArchivesDeleted, out.BlobsDeleted = archives.Archives, archives.Blobs
	// Last, so that a run begun before this step existed replays unchanged.
	var reports contract.PruneGatewayReportsResult
	if err := workflow.ExecuteActivity(ctx, contract.ActivityPruneGatewayReports,
		contract.PruneGatewayReportsInput{Before: now.Add(-contract.GatewayReportRetention)}).Get(ctx, &reports); err != nil {
		return out, err
	}
	out.GatewayReportsDeleted = reports.Deleted
	// The async steps come after the older ones, for the same reason.
	var started contract.StartUnstartedAsyncResult
	if err := workflow.ExecuteActivity(ctx, contract.ActivityStartUnstartedAsync, contract.StartUnstartedAsyncInput{
		Before: now.Add(-AsyncStartGrace),
	}).Get(ctx, &started); err != nil {
		return out, err
	}
	out.AsyncWorkflowsStarted = started.Started
	var purged contract.PurgeAsyncResult
	if err := workflow.ExecuteActivity(ctx, contract.ActivityPurgeAsync, contract.PurgeAsyncInput{
		Now: now, FinishedBefore: now.Add(-in.AsyncRequestRetention),
	}).Get(ctx, &purged); err != nil {
		return out, err
	}
	out.AsyncOutputsPurged, out.AsyncRequestsDeleted = purged.Outputs, purged.Requests
	// Last of all, behind a version, so that runs from before the sweep existed replay
	// unchanged. A sweep of a large store reports progress.
	if workflow.GetVersion(ctx, orphanBlobSweepChange, workflow.DefaultVersion, 1) == 1 {
		sweepCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: 15 * time.Minute, HeartbeatTimeout: 2 * time.Minute,
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 3},
		})
		var orphans contract.PruneOrphanBlobsResult
		if err := workflow.ExecuteActivity(sweepCtx, contract.ActivityPruneOrphanBlobs, contract.PruneOrphanBlobsInput{
			Before: now.Add(-in.OrphanBlobGrace),
		}).Get(ctx, &orphans); err != nil {
			return out, err
		}
		out.OrphanBlobsDeleted = orphans.Blobs
	}
	workflow.GetLogger(ctx).Info("cleanup done", "load_samples_deleted", out.LoadSamplesDeleted,
		"replicas_stopped", out.ReplicasStopped, "archives_deleted", out.ArchivesDeleted,
		"gateway_reports_deleted", out.GatewayReportsDeleted, "async_workflows_started", out.AsyncWorkflowsStarted,
		"async_outputs_purged", out.AsyncOutputsPurged, "async_requests_deleted", out.AsyncRequestsDeleted,
		"orphan_blobs_deleted", out.OrphanBlobsDeleted)
	return out, nil
}
