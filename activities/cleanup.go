package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// StopUnwantedReplicas stops replicas whose deployment is deleted or inactive but which are
// still running, for instance because a workflow was terminated by hand.
func (a *Activities) StopUnwantedReplicas(ctx context.Context, in contract.StopUnwantedReplicasInput) (contract.StopUnwantedReplicasResult, error) {
	rs, err := store.UnwantedReplicas(ctx, a.DB, in.QuietFor)
	if err != nil {
		return contract.StopUnwantedReplicasResult{}, err
	}
	stopped := 0
	for _, r := range rs {
		if err := a.StopReplica(ctx, contract.StopReplicaInput{ReplicaID: r.ID, Grace: in.Grace}); err != nil {
			activity.GetLogger(ctx).Warn("stopping an unwanted replica", "replica_id", r.ID, "err", err)
			continue
		}
		stopped++
		activity.RecordHeartbeat(ctx, stopped)
	}
	return contract.StopUnwantedReplicasResult{Stopped: stopped}, nil
}

// PruneArchives removes archives that no live deployment runs and that were uploaded before
// in.Before, and their blobs when no other workspace holds the same bytes.
func (a *Activities) PruneArchives(ctx context.Context, in contract.PruneArchivesInput) (contract.PruneArchivesResult, error) {
	var res contract.PruneArchivesResult
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

// orphanBatch is how many blobs PruneOrphanBlobs looks up in one query.
const orphanBatch = 500

// PruneOrphanBlobs removes the blobs last stored before in.Before that no archive of any
// workspace and no upload key refers to: those of uploads that failed after storing them.
// The grace period keeps an upload's blob while its row is being written; a blob stored
// again since it was listed (Put touches it) stays.
func (a *Activities) PruneOrphanBlobs(ctx context.Context, in contract.PruneOrphanBlobsInput) (contract.PruneOrphanBlobsResult, error) {
	var res contract.PruneOrphanBlobsResult
	if a.Blobs == nil {
		return res, nil
	}
	if err := a.pruneUploads(ctx); err != nil {
		return res, err
	}
	digests, err := a.Blobs.Older(ctx, in.Before)
	if err != nil {
		return res, err
	}
	for start := 0; start < len(digests); start += orphanBatch {
		batch := digests[start:min(start+orphanBatch, len(digests))]
		referenced, err := store.ReferencedBlobs(ctx, a.DB, batch)
		if err != nil {
			return res, err
		}
		for _, d := range batch {
			if referenced[d] {
				continue
			}
			deleted, err := a.Blobs.DeleteIfOlder(ctx, d, in.Before)
			if err != nil {
				return res, err
			}
			if deleted {
				res.Blobs++
				activity.GetLogger(ctx).Info("removed a blob nothing refers to", "digest", d)
			}
		}
		activity.RecordHeartbeat(ctx, start+len(batch))
	}
	return res, nil
}

// PruneGatewayReports deletes the reports of gateways that have not reported since
// in.Before, dead gateways that did not shut down cleanly.
func (a *Activities) PruneGatewayReports(ctx context.Context, in contract.PruneGatewayReportsInput) (contract.PruneGatewayReportsResult, error) {
	n, err := store.DeleteGatewayReportsBefore(ctx, a.DB, in.Before)
	return contract.PruneGatewayReportsResult{Deleted: n}, err
}

// StartUnstartedAsync starts the workflows of requests that want one and did not get it (the
// gateway or sweep that asked died, or Temporal refused). A request's workflow marks it
// started in its first step, so one still unmarked has no workflow running under its ID
// (a running one is left alone) and none that did anything.
func (a *Activities) StartUnstartedAsync(ctx context.Context, in contract.StartUnstartedAsyncInput) (contract.StartUnstartedAsyncResult, error) {
	var out contract.StartUnstartedAsyncResult
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
		started, err := contract.StartAsyncRequest(ctx, a.Temporal, id)
		if err != nil {
			return out, err
		}
		if started {
			out.Started++
			activity.GetLogger(ctx).Info("started the workflow of an async request", "request_id", id)
		}
	}
	return out, nil
}

// PurgeAsync drops outputs kept past their time and deletes requests that ended long ago.
func (a *Activities) PurgeAsync(ctx context.Context, in contract.PurgeAsyncInput) (contract.PurgeAsyncResult, error) {
	outputs, requests, err := store.PurgeAsyncOutputs(ctx, a.DB, in.Now, in.FinishedBefore)
	return contract.PurgeAsyncResult{Outputs: outputs, Requests: requests}, err
}

// pruneUploads removes what clients PUT to presigned upload URLs (an S3 store's) and no
// create took: an upload written before its key's lifetime ago belongs to a key that has
// expired, since the key was made before it.
func (a *Activities) pruneUploads(ctx context.Context) error {
	up, ok := a.Blobs.(blob.Uploads)
	if !ok {
		return nil
	}
	n, err := up.DeleteUploadsOlder(ctx, time.Now().Add(-store.UploadTTL))
	if n > 0 {
		activity.GetLogger(ctx).Info("removed uploads no create took", "uploads", n)
	}
	return err
}
