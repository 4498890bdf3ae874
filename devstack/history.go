package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/jmoiron/sqlx"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane/store"
)

// ErrOtherHistory is the refusal to run on a database that holds the state of another
// Temporal history than the one dev has now: the models would be listed, but none of their
// workflows would exist, so every change to them would fail.
var ErrOtherHistory = errors.New("the database belongs to another Temporal history")

// checkHistory holds the database and the Temporal history together. The history's identity
// is its namespace's ID, which a new Temporal store (a new data directory's temporal.db)
// draws afresh. The database records the one whose workflows carry its rows; dev refuses to
// start when that is another and the database holds rows a workflow carries, unless adopt
// says to take the database over (the reconcile pass then restarts what it can).
func checkHistory(ctx context.Context, db *sqlx.DB, tc client.Client, namespace, where, dataDir string, adopt bool, log *slog.Logger) error {
	desc, err := tc.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("describe Temporal namespace %s: %w", namespace, err)
	}
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	now := store.TemporalHistory{Namespace: namespace, NamespaceID: desc.GetNamespaceInfo().GetId(), RecordedBy: dataDir}
	rec, err := store.RecordedTemporalHistory(ctx, db)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// A database from before the record, or a new one: this history takes it, and the
		// reconcile pass restarts whatever it holds that has no workflow here.
		return store.RecordTemporalHistory(ctx, db, now)
	case err != nil:
		return err
	case rec.NamespaceID == now.NamespaceID:
		return nil
	}
	holds, err := store.HoldsWorkflowState(ctx, db)
	if err != nil {
		return err
	}
	if holds && !adopt {
		return fmt.Errorf(`%w.
The database's deployments, promotions and async requests are run by the Temporal namespace %q
with ID %s, recorded by the data directory %s on %s; the Temporal history dev has now
(%s) is another one, namespace ID %s, in which none of their workflows exist. The models
would be listed, but every change to them would fail.
Either:
  - start dev with the data directory that goes with this database: --data-dir %s
  - or give this data directory a database of its own: create one (createdb another_name)
    and name it with --database-url (DATABASE_URL), for instance
    postgres://postgres@127.0.0.1:5432/another_name?sslmode=disable
  - or take the database over into this history: --adopt-database (deployments are restarted
    on the replicas they have, promotions in flight are canceled with traffic left where it
    was, async requests are restarted). The model packages are in the other data directory's
    blobs/ and the secrets' key in its secrets-key: copy them here first, or the deployments
    fail to start with the reason`,
			ErrOtherHistory, rec.Namespace, rec.NamespaceID, rec.RecordedBy, rec.RecordedAt.Format(time.RFC3339),
			where, now.NamespaceID, rec.RecordedBy)
	}
	log.Warn("the database goes with another Temporal history; this one takes it over",
		"recorded_namespace_id", rec.NamespaceID, "recorded_by", rec.RecordedBy, "namespace_id", now.NamespaceID,
		"adopt", adopt, "holds_workflow_state", holds)
	return store.RecordTemporalHistory(ctx, db, now)
}
