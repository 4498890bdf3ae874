// Package activities implements modelplane's Temporal activities: methods on one struct that
// holds the dependencies. Every activity is idempotent, taking the IDs it acts on from its
// input, so a retry after a crash repeats nothing.
package activities

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"time"

	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/nodeauth"

	"github.com/jmoiron/sqlx"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/secretbox"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/webhook"
	"github.com/modelplane/modelplane/workflows/contract"
)

// Activities holds what activities need.
type Activities struct {
	DB *sqlx.DB
	// NodeToken is the cluster's shared node token, presented to the agents of nodes that
	// report with it; a node with a token of its own is sent that token, made again with
	// SecretsKey (package nodeauth).
	NodeToken string
	// AgentTLS is what calls to agents at https:// URLs trust; nil means the system's
	// certificate authorities.
	AgentTLS *tls.Config
	// ArchiveBaseURL is the control plane's URL as agents reach it; they download archives
	// from ArchiveBaseURL + agentproto.ArchivePath + the archive's ID.
	ArchiveBaseURL string
	// Temporal is the client through which promotion activities start Deployment workflows
	// and send them updates.
	Temporal client.Client
	// Blobs holds uploaded archives, for pruning the ones nothing uses.
	Blobs blob.Store
	// DatabaseURL is where RunAsyncAttempt listens for finished attempts; empty means it
	// notices them by polling alone.
	DatabaseURL string
	// AsyncOutputRetention is how long a finished async request's output is kept for reading
	// with its status; zero means store.DefaultAsyncOutputRetention (24 hours).
	AsyncOutputRetention time.Duration
	// WebhookAllowPrivate lets webhooks reach loopback, private and link-local addresses,
	// which are refused otherwise.
	WebhookAllowPrivate bool
	// SecretsKey opens workspace secrets for the agents' start requests; nil means a
	// deployment whose config names secrets cannot start.
	SecretsKey *secretbox.Key

	senderOnce sync.Once
	sender     *webhook.Sender
	hubMu      sync.Mutex
	hub        *asyncHub
}

// agent is a client of the agent of node nodeID at url, presenting the credential that node
// reports with (nodeauth.Agents.Token).
func (a *Activities) agent(ctx context.Context, nodeID *string, url string) (*agentproto.Client, error) {
	if nodeID == nil {
		return nil, errors.New("the replica is on no node")
	}
	return nodeauth.Agents{DB: a.DB, Shared: a.NodeToken, Key: a.SecretsKey, TLS: a.AgentTLS}.Client(ctx, *nodeID, url)
}

// PruneLoadSamples deletes load samples older than in.Before.
func (a *Activities) PruneLoadSamples(ctx context.Context, in contract.PruneLoadSamplesInput) (contract.PruneLoadSamplesResult, error) {
	n, err := store.DeleteLoadSamplesBefore(ctx, a.DB, in.Before)
	return contract.PruneLoadSamplesResult{Deleted: n}, err
}
