package contract

import "time"

// PruneLoadSamplesInput says which samples to drop.
type PruneLoadSamplesInput struct {
	Before time.Time
}

// PruneLoadSamplesResult says how many went.
type PruneLoadSamplesResult struct {
	Deleted int64
}

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

// PruneArchivesInput says how old an unused archive must be to go.
type PruneArchivesInput struct {
	Before time.Time
}

// PruneArchivesResult says how many archives and blobs went.
type PruneArchivesResult struct {
	Archives, Blobs int
}

// PruneOrphanBlobsInput says how long ago a blob must have been last stored for a sweep to
// remove it when nothing refers to it.
type PruneOrphanBlobsInput struct {
	Before time.Time
}

// PruneOrphanBlobsResult says how many blobs went.
type PruneOrphanBlobsResult struct {
	Blobs int
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

// StartUnstartedAsyncInput says which requests' workflows to start and how.
type StartUnstartedAsyncInput struct {
	// Before: only requests that wanted their workflow before it, which whoever asked had
	// time to start.
	Before time.Time
	// Limit bounds how many are started in one run; zero means 100.
	Limit int
}

// StartUnstartedAsyncResult says how many workflows were started.
type StartUnstartedAsyncResult struct {
	Started int
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
