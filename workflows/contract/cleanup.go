package contract

import "time"

// CleanupScheduleID is the Temporal schedule that runs Cleanup.
const CleanupScheduleID = "modelplane-cleanup"

// CleanupInterval is how often the schedule runs Cleanup.
const CleanupInterval = time.Minute

// CleanupInput says what Cleanup keeps.
type CleanupInput struct {
	// LoadSampleRetention is how long load samples are kept; the autoscaler reads at most
	// an hour back (the longest autoscaling window).
	LoadSampleRetention time.Duration
	// ArchiveRetention is how long an archive no deployment runs is kept, so that an upload
	// followed by a deployment a while later still finds it.
	ArchiveRetention time.Duration
	// ReplicaQuietPeriod is how long a replica of a deleted or inactive deployment must have
	// been left alone before Cleanup stops it, rather than racing its workflow doing so.
	ReplicaQuietPeriod time.Duration
	// AsyncRequestRetention is how long a finished async request stays readable, without its
	// output once that has expired.
	AsyncRequestRetention time.Duration
	// OrphanBlobGrace is how long a blob no archive or upload refers to is kept after it was
	// last stored: longer than any upload takes between storing its blob and writing its row.
	OrphanBlobGrace time.Duration
}

// DefaultCleanupInput keeps load samples for two hours (twice the longest window), unused
// archives for a day and finished async requests for a week; leftover replicas are stopped
// after two quiet minutes; blobs nothing refers to go an hour after they were last stored.
func DefaultCleanupInput() CleanupInput {
	return CleanupInput{
		LoadSampleRetention: 2 * time.Hour, ArchiveRetention: 24 * time.Hour, ReplicaQuietPeriod: 2 * time.Minute,
		AsyncRequestRetention: 7 * 24 * time.Hour, OrphanBlobGrace: time.Hour,
	}
}

// CleanupResult reports what one run removed.
type CleanupResult struct {
	LoadSamplesDeleted int64
	ReplicasStopped    int
	ArchivesDeleted    int
	BlobsDeleted       int
	// GatewayReportsDeleted counts reports of gateways that died without removing theirs.
	GatewayReportsDeleted int64
	// AsyncWorkflowsStarted counts async requests whose workflow their gateway did not start.
	AsyncWorkflowsStarted int
	// AsyncOutputsPurged counts outputs dropped at their expiry; AsyncRequestsDeleted the
	// requests deleted after AsyncRequestRetention.
	AsyncOutputsPurged   int64
	AsyncRequestsDeleted int64
	// OrphanBlobsDeleted counts blobs no archive or upload referred to, left by uploads that
	// failed after storing them.
	OrphanBlobsDeleted int
}
