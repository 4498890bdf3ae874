// Package activities implements modelplane's Temporal activities: methods on one struct that
// holds the dependencies. Every activity is idempotent, taking the IDs it acts on from its
// input, so a retry after a crash repeats nothing.
package activities

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/store"
)

// Activities holds what activities need.
type Activities struct {
	DB *sqlx.DB
	// NodeToken is the secret the control plane presents to node agents.
	NodeToken string
	// ArchiveBaseURL is the control plane's URL as agents reach it; they download archives
	// from ArchiveBaseURL + ArchivePath + the archive's ID.
	ArchiveBaseURL string
	// Temporal is the client through which promotion activities start Deployment workflows
	// and send them updates.
	Temporal client.Client
	// Blobs holds uploaded archives, for pruning the ones nothing uses.
	Blobs blob.Store
}

// PruneLoadSamplesInput says which samples to drop.
type PruneLoadSamplesInput struct {
	Before time.Time
}

// PruneLoadSamplesResult says how many went.
type PruneLoadSamplesResult struct {
	Deleted int64
}

// PruneLoadSamples deletes load samples older than in.Before.
func (a *Activities) PruneLoadSamples(ctx context.Context, in PruneLoadSamplesInput) (PruneLoadSamplesResult, error) {
	n, err := store.DeleteLoadSamplesBefore(ctx, a.DB, in.Before)
	return PruneLoadSamplesResult{Deleted: n}, err
}
